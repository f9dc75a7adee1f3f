"""A hostile-input corpus through the commands a user runs (issue 8).

Every input here is something a careless user or an attacker can hand the product: markup and
script in labels, file names and collection names, 1 MB strings, NaN and infinities, byte-order
marks, Latin-1 and UTF-16 files, unterminated quotes, duplicate rows. Each command must either
finish (exit 0) with a correct result or refuse with exit 2 and one line; never a traceback,
never unescaped markup in an HTML output.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import CIFAR_TEST

SCRIPT_LABEL = '<img src=x onerror="window.__pwned=1">'
SCRIPT_NAME = '"><svg onload="window.__pwned=2">'
HUGE = "x" * 1_000_000
MARKUP = ("<img src=x", "<svg onload", "<script>window")


def invoke(*args):
    """The command in this process, through the real Typer app (argument parsing and error handling)."""
    from typer.testing import CliRunner

    from iconograph.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean(result, allowed=(0, 2)):
    """Exit 0, or exit 2 with exactly one line; never an unexpected exception."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unexpected exception: {result.exception!r}") from result.exception
    assert result.exit_code in allowed, (result.exit_code, result.stderr)
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert "Traceback" not in result.stderr
    return result


def assert_no_markup(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for fragment in MARKUP:
        assert fragment not in text, f"unescaped {fragment!r} in {path.name}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    photos = root / "photos"
    photos.mkdir()
    images = []
    for n, source in enumerate(
        sorted((CIFAR_TEST / "cat").glob("*.jpg"))[:3] + sorted((CIFAR_TEST / "ship").glob("*.jpg"))[:3]
    ):
        target = photos / f"{SCRIPT_NAME}{n}.jpg"
        shutil.copy(source, target)
        images.append(target)
    (photos / "broken.jpg").write_bytes(b"not an image")
    (photos / "empty.png").write_bytes(b"")
    files = {"photos": photos}

    def table(name: str, rows, encoding="utf-8", prefix=""):
        path = root / name
        with path.open("w", newline="", encoding=encoding) as handle:
            handle.write(prefix)
            writer = csv.writer(handle)
            writer.writerow(["path", "labels"])
            writer.writerows(rows)
        files[name] = path

    labelled = [(str(p), "cat" if n < 3 else "ship") for n, p in enumerate(images)]
    table("truth.csv", labelled)
    table("truth-bom.csv", labelled, prefix="\ufeff")
    table("truth-html.csv", [(p, SCRIPT_LABEL if label == "cat" else label) for p, label in labelled])
    table("truth-latin1.csv", [(p, "chat noir é" if label == "cat" else label) for p, label in labelled], "latin-1")
    table("truth-utf16.csv", labelled, "utf-16")
    table("truth-huge.csv", [*labelled[:-1], (labelled[-1][0], HUGE)])
    table("truth-duplicates.csv", [*labelled, (labelled[0][0], "ship")])
    table("truth-empty.csv", [(p, "") for p, _ in labelled])
    unterminated = root / "truth-unterminated.csv"
    unterminated.write_text(
        "path,labels\n"
        + "".join(f"{p},{label}\n" for p, label in labelled[:2])
        + f'{labelled[2][0]},"cat\n'
        + "".join(f"{p},{label}\n" for p, label in labelled[3:]),
        encoding="utf-8",
    )
    files["truth-unterminated.csv"] = unterminated
    nested = root / "truth-nested.jsonl"
    nested.write_text("".join(json.dumps({"path": p, "labels": [[label]]}) + "\n" for p, label in labelled))
    files["truth-nested.jsonl"] = nested

    for name, text, encoding in [
        ("labels-bom.txt", "\ufeffcat\nship\n", "utf-8"),
        ("labels-html.txt", f"{SCRIPT_LABEL}\nship\n", "utf-8"),
        ("labels-latin1.txt", "chat é\nship\n", "latin-1"),
        ("labels-utf16.txt", "cat\nship\n", "utf-16"),
        ("labels-huge.txt", f"{HUGE}\nship\n", "utf-8"),
        ("thresholds-nan.csv", "label,threshold\ncat,nan\nship,0.5\n", "utf-8"),
        ("thresholds-two.csv", "label,threshold\ncat,2\nship,0.5\n", "utf-8"),
        ("thresholds-bom.csv", "\ufefflabel,threshold\ncat,0.3\nship,0.5\n", "utf-8"),
    ]:
        (root / name).write_text(text, encoding=encoding)
        files[name] = root / name
    return files


@pytest.fixture(scope="module")
def predictions(corpus, tiny_clip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("preds") / "preds.jsonl"
    with pytest.MonkeyPatch.context() as patch:  # the autouse isolation is per test; this runs once
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("ICONOGRAPH_HOME", str(out.parent / "home"))
        assert_clean(
            invoke(
                "classify",
                corpus["photos"],
                "--labels",
                "cat,ship",
                "--model",
                tiny_clip,
                "--out",
                out,
                "--store",
                out.parent / "store",
                "--workers",
                "0",
            ),  # fmt: skip
            allowed=(0,),
        )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 8 and sum(r["error"] is not None for r in records) == 2  # broken and empty
    return out


@pytest.mark.parametrize(
    "labels_file",
    ["labels-bom.txt", "labels-html.txt", "labels-latin1.txt", "labels-utf16.txt", "labels-huge.txt"],
)
def test_classify_with_hostile_label_files(corpus, tiny_clip, tmp_path, labels_file):
    out = tmp_path / "out.jsonl"
    result = assert_clean(
        invoke(
            "classify",
            corpus["photos"],
            "--labels-file",
            corpus[labels_file],
            "--model",
            tiny_clip,
            "--out",
            out,
            "--store",
            tmp_path / "store",
            "--workers",
            "0",
        )  # fmt: skip
    )
    if result.exit_code == 2:
        assert labels_file in result.stderr  # the one line names the file
        return
    labels = {ls["label"] for line in out.read_text().splitlines() for ls in json.loads(line)["labels"]}
    expected = {"labels-bom.txt": {"cat", "ship"}, "labels-html.txt": {SCRIPT_LABEL, "ship"}}
    assert labels == expected.get(labels_file, labels) and not any(label.startswith("\ufeff") for label in labels)


@pytest.mark.parametrize(
    "threshold", ["nan", "inf", "-1", "2", "thresholds-nan.csv", "thresholds-two.csv", "thresholds-bom.csv"]
)
def test_classify_thresholds_are_bounded(corpus, tiny_clip, tmp_path, threshold):
    value = corpus.get(threshold, threshold)
    result = assert_clean(
        invoke(
            "classify",
            corpus["photos"],
            "--labels",
            "cat,ship",
            "--multi-label",
            "--threshold",
            value,
            "--model",
            tiny_clip,
            "--out",
            tmp_path / "out.jsonl",
            "--store",
            tmp_path / "store",
            "--workers",
            "0",
        )  # fmt: skip
    )
    assert result.exit_code == (0 if threshold == "thresholds-bom.csv" else 2), result.stderr


@pytest.mark.parametrize(
    "truth",
    [
        "truth-bom.csv",
        "truth-html.csv",
        "truth-latin1.csv",
        "truth-utf16.csv",
        "truth-huge.csv",
        "truth-duplicates.csv",
        "truth-empty.csv",
        "truth-unterminated.csv",
        "truth-nested.jsonl",
    ],
)
def test_evaluate_with_hostile_truth(corpus, predictions, tmp_path, truth):
    report, metrics = tmp_path / "report.html", tmp_path / "metrics.json"
    result = assert_clean(
        invoke("evaluate", predictions, "--truth", corpus[truth], "--report", report, "--json", metrics)
    )
    must_refuse = {"truth-latin1.csv", "truth-huge.csv", "truth-duplicates.csv", "truth-empty.csv",
                   "truth-unterminated.csv", "truth-nested.jsonl"}  # fmt: skip
    if truth in must_refuse:
        assert result.exit_code == 2 and truth in result.stderr, result.stderr
        assert not report.exists()
        return
    assert result.exit_code == 0, result.stderr
    assert_no_markup(report)
    values = json.loads(metrics.read_text())
    assert values["counts"]["evaluated"] == 6  # the two unreadable images are not in the truth
    assert set(values["per_class"]) >= ({SCRIPT_LABEL} if truth == "truth-html.csv" else {"cat", "ship"})


def test_train_on_hostile_labels_and_duplicates(corpus, tiny_clip, tmp_path):
    rows = [(str(p), SCRIPT_LABEL if p.parent.name == "cat" else "ship")
            for c in ("cat", "ship") for p in sorted((CIFAR_TEST / c).glob("*.jpg"))[:12]]  # fmt: skip
    truth = tmp_path / "truth.csv"
    with truth.open("w", newline="") as handle:
        csv.writer(handle).writerows([("path", "labels"), *rows])
    report = tmp_path / "train.html"
    common = ["--backbone", tiny_clip, "--head", "logistic", "--workers", "0", "--store", tmp_path / "store"]
    trained = assert_clean(invoke("train", truth, *common, "--out", tmp_path / "m", "--report", report), (0,))
    assert "model ->" in trained.stderr
    assert_no_markup(report)
    labels = json.loads((tmp_path / "m" / "iconograph-model.json").read_text())["labels"]
    assert labels == sorted([SCRIPT_LABEL, "ship"])

    with truth.open("a", newline="") as handle:
        csv.writer(handle).writerow((rows[0][0], "ship"))  # the same image with another label
    refused = assert_clean(invoke("train", truth, *common, "--out", tmp_path / "m2"))
    assert refused.exit_code == 2 and "truth.csv" in refused.stderr
    assert not (tmp_path / "m2" / "iconograph-model.json").exists()


def test_index_with_hostile_collection_names_and_labels(corpus, tiny_clip, tmp_path):
    common = ["--model", tiny_clip, "--store", tmp_path / "store", "--workers", "0"]
    for name in ("<script>alert(1)</script>", "../outside", HUGE[:5000]):
        refused = assert_clean(invoke("index", corpus["photos"], "--collection", name, *common))
        assert refused.exit_code == 2
    assert not (tmp_path / "outside").exists()
    indexed = assert_clean(
        invoke("index", corpus["photos"], "--collection", "coins", "--labels", f"{SCRIPT_LABEL},ship", *common), (0,)
    )
    assert "6 added" in indexed.stderr and "2 failed" in indexed.stderr
    out = tmp_path / "corrected.jsonl"
    assert_clean(invoke("export", "--predictions", "--out", out, "--collection", "coins",
                        "--store", tmp_path / "store"), (0,))  # fmt: skip
    labels = {ls["label"] for line in out.read_text().splitlines() for ls in json.loads(line)["labels"]}
    assert labels == {SCRIPT_LABEL, "ship"}
    report = tmp_path / "report.html"
    assert_clean(invoke("report", out, "--truth", corpus["truth-html.csv"], "--out", report), (0,))
    assert_no_markup(report)
