"""The command-line contract of DESIGN.md, run as a user runs it."""

import json

import pytest

from tests.conftest import cifar_images, run_cli
from tests.core.images import write_bad_collection


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_bad_files_are_one_error_record_each_and_strict_exits_3(tmp_path, tiny_clip):
    folder = tmp_path / "bad"
    readable = write_bad_collection(folder)
    out = tmp_path / "out.jsonl"
    args = ["classify", folder, "--labels", "red,blue", "--model", tiny_clip, "--out", out]

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert [list(r) for r in records] == [["path", "labels", "error"]] * len(records)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in records}
    assert sorted(by_name) == sorted(readable)  # every file exactly once
    assert [r["path"] for r in records] == sorted(r["path"] for r in records)  # input (sorted walk) order
    for name, ok in readable.items():
        record = by_name[name]
        if ok:
            assert record["error"] is None and len(record["labels"]) == 2, name
            scores = [label["score"] for label in record["labels"]]
            assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-6
        else:
            assert record["labels"] == [] and record["error"] and "\n" not in record["error"], name
    failed = sum(not ok for ok in readable.values())
    assert f"{failed} failed" in result.stderr
    assert "Traceback" not in result.stderr

    strict = run_cli(*args, "--strict")
    assert strict.returncode == 3, strict.stderr
    assert "0 embeddings computed" in strict.stderr  # the second run is served by the cache


def test_top_k_multi_label_threshold_and_csv_output(tmp_path, tiny_clip):
    images = cifar_images(per_class=3)
    labels = "cat,dog,ship,truck,frog,horse,bird"
    out = tmp_path / "top2.jsonl"
    run_cli("classify", *images, "--labels", labels, "--model", tiny_clip, "--top-k", "2", "--out", out, check=True)
    assert all(len(r["labels"]) == 2 for r in read_jsonl(out))

    out = tmp_path / "tags.jsonl"
    run_cli(
        "classify",
        *images,
        "--labels",
        labels,
        "--model",
        tiny_clip,
        "--multi-label",
        "--threshold",
        "0.5",
        "--out",
        out,
        check=True,
    )
    for record in read_jsonl(out):
        assert all(label["score"] >= 0.5 for label in record["labels"])
        assert len(record["labels"]) <= 7

    thresholds = tmp_path / "thresholds.csv"
    thresholds.write_text("label,threshold\ncat,0.0\ndog,1.0\n")
    run_cli(
        "classify",
        *images,
        "--labels",
        labels,
        "--model",
        tiny_clip,
        "--multi-label",
        "--threshold",
        thresholds,
        "--out",
        out,
        check=True,
    )
    for record in read_jsonl(out):
        names = [label["label"] for label in record["labels"]]
        assert "cat" in names and "dog" not in names

    csv_out = tmp_path / "preds.csv"
    run_cli("classify", *images, "--labels", labels, "--model", tiny_clip, "--out", csv_out, check=True)
    assert csv_out.read_text().splitlines()[0] == "path,labels,scores,error"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--labels", "a,b", "--model", "/nonexistent/model-dir"], "not found"),
        (["--labels", "a,b", "--model", "org/definitely-not-cached-model"], "--model DIR"),
        (["--model", "MODEL"], "exactly one of --labels or --labels-file"),
        (["--labels", "a,b", "--model", "MODEL", "--templates", "no-such-set"], "templates"),
    ],
)
def test_unusable_arguments_are_one_line_and_exit_2(tmp_path, tiny_clip, args, message):
    image = cifar_images(per_class=1)[0]
    args = [str(tiny_clip) if a == "MODEL" else a for a in args]
    result = run_cli("classify", image, *args, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_source_is_a_usage_error(tmp_path, tiny_clip):
    result = run_cli("classify", tmp_path / "nope", "--labels", "a,b", "--model", tiny_clip)
    assert result.returncode == 2 and "no such file" in result.stderr


def test_help_lists_the_commands():
    result = run_cli("--help", check=True)
    for command in ("classify", "embed", "evaluate"):
        assert command in result.stdout


def test_cuda_asked_for_on_a_machine_without_it_is_a_usage_error(tiny_clip):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_cli(
        "classify", cifar_images(per_class=1)[0], "--labels", "a,b", "--model", tiny_clip, "--device", "cuda"
    )
    assert result.returncode == 2 and "no CUDA device" in result.stderr and "Traceback" not in result.stderr
