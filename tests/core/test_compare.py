"""compare: every (model, template set) row equals classify + evaluate, images embedded once per
model, and the terminal table, JSON, CSV and HTML page agree."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

import iconograph as ig
from iconograph.classification.zeroshot import TEMPLATE_SETS, LabelError, load_templates
from iconograph.cli.compare import spread_multi_values
from iconograph.evaluation.compare import METRICS, compare, ensemble_templates, resolve_template_sets
from iconograph.evaluation.metrics import read_truth
from tests.conftest import CIFAR_TEST, keep_artifact, needs_chromium, run_cli

CLASSES = ("cat", "ship", "frog")
HOSTILE = "<img src=x onerror=window.pwned=1>"
TEMPLATES = ["default", "cifar10", "a photo of a {}."]


@pytest.fixture(scope="session")
def second_clip(tmp_path_factory) -> Path:
    """Another tiny random CLIP (another seed): a second model to compare with."""
    from iconograph.testing import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip-2", seed=1)


def truth_csv(path: Path, per_class: int = 10, rename: dict | None = None) -> Path:
    """A few CIFAR-10 test classes as a path,labels CSV (the images stay in ../shared/data)."""
    rename = rename or {}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels"])
        for name in CLASSES:
            for image in sorted((CIFAR_TEST / name).glob("*.jpg"))[:per_class]:
                writer.writerow([str(image), rename.get(name, name)])
    return path


def assert_same_metrics(row: dict, expected: dict) -> None:
    for key in METRICS:
        assert (key in row) == (key in expected), key
        if key in expected:
            assert row[key] == pytest.approx(expected[key], abs=1e-9), key
    assert row["counts"] == expected["counts"]
    assert row["per_class"].keys() == expected["per_class"].keys()
    for label, stats in expected["per_class"].items():
        assert row["per_class"][label] == pytest.approx(stats, abs=1e-9)


# ---- template sets ---------------------------------------------------------------------------


def test_builtin_template_sets_load_and_name_their_source():
    from importlib import resources

    for name in TEMPLATE_SETS:
        assert all("{}" in t for t in load_templates(name)), name
    assert len(load_templates("cifar10")) == 18
    assert load_templates("cifar10")[:2] == ["a photo of a {}.", "a blurry photo of a {}."]
    assert load_templates("imagenet") == load_templates("openai") and len(load_templates("imagenet")) == 80
    assert load_templates("cifar100") == load_templates("cifar10")  # CLIP's CIFAR-100 prompts are its CIFAR-10 ones
    for name in ("cifar10", "coins", "artworks", "products"):
        text = resources.files("iconograph.classification").joinpath(f"templates/{name}.txt").read_text()
        assert text.startswith("# source: "), name
    assert "a product photo of {}." in load_templates("products")


def test_template_set_arguments_and_the_ensemble(tmp_path):
    own = tmp_path / "mine.txt"
    own.write_text("# source: me\na coin with {}\nthe {} coin\n")
    sets = resolve_template_sets(["photo", str(own), "a {} on a coin"], ensemble=True)
    assert [s.name for s in sets] == ["photo", str(own), "a {} on a coin", "ensemble"]
    assert sets[1].templates == ["a coin with {}", "the {} coin"]
    assert sets[2].templates == ["a {} on a coin"]
    assert (
        sets[3].templates
        == ensemble_templates(sets[:3])
        == [
            *load_templates("photo"),
            "a coin with {}",
            "the {} coin",
            "a {} on a coin",
        ]
    )
    # "a photo of a {}." is in the default set already: the ensemble has each template once
    assert ensemble_templates(resolve_template_sets(["default", "a photo of a {}."])) == load_templates("default")
    with pytest.raises(LabelError, match="twice"):
        resolve_template_sets(["photo", "photo"])
    with pytest.raises(LabelError, match="neither a built-in set .* a file, nor a template"):
        resolve_template_sets(["no-such-set"])


def test_several_values_after_one_option():
    args = ["src/", "--truth", "t.csv", "--templates", "a", "b c {}", "--model", "m1", "m2", "--json", "x.json"]
    assert spread_multi_values(args) == [
        "src/",
        "--truth",
        "t.csv",
        "--templates",
        "a",
        "--templates",
        "b c {}",
        "--model",
        "m1",
        "--model",
        "m2",
        "--json",
        "x.json",
    ]
    assert spread_multi_values(["--templates", "a", "b", "--", "src/"]) == [
        "--templates",
        "a",
        "--templates",
        "b",
        "src/",
    ]
    assert spread_multi_values(["--templates=a", "src/"]) == ["--templates=a", "src/"]
    assert spread_multi_values(["--model", "--json", "x"]) == ["--model", "--json", "x"]
    assert spread_multi_values(["src/", "--model"]) == ["src/", "--model"]


# ---- parity with classify + evaluate, and one image tower run per model -------------------------


def test_every_row_equals_classify_then_evaluate_and_images_are_embedded_once_per_model(
    tmp_path, tiny_clip, second_clip
):
    truth = truth_csv(tmp_path / "truth.csv", per_class=6)
    n = 6 * len(CLASSES)
    store = ig.Store(tmp_path / "store")
    embedders = {str(m): ig.Embedder(str(m), store=store, workers=0) for m in (tiny_clip, second_clip)}
    result = compare(truth, truth, list(CLASSES), templates=TEMPLATES, models=embedders, ensemble=True)

    assert len(result.rows) == 2 * 4 and result.sort == "accuracy"
    assert [r["accuracy"] for r in result.rows] == sorted((r["accuracy"] for r in result.rows), reverse=True)
    for embedder in embedders.values():  # the image tower ran once per image, not once per template set
        assert (embedder.stats.computed, embedder.stats.cached) == (n, 0)
    sets = {s.name: s.templates for s in result.template_sets}
    assert sets["ensemble"] == ensemble_templates(result.template_sets[:3])
    for row in result.rows:
        assert (row["images_computed"], row["images_cached"]) == (n, 0)
        assert row["seconds_per_1000_images"] > 0
        templates = sets[row["templates"]] if row["templates"] in ("ensemble", "a photo of a {}.") else row["templates"]
        predictions = ig.classify(truth, list(CLASSES), model=row["model"], templates=templates, store=store, workers=0)
        assert_same_metrics(row, ig.evaluate(predictions, truth))

    again = compare(truth, truth, list(CLASSES), templates=["photo"], models=[str(tiny_clip)], store=store, workers=0)
    (row,) = again.rows
    assert (row["images_computed"], row["images_cached"], row["seconds_per_1000_images"]) == (0, n, None)


def test_multi_label_rows_equal_classify_then_evaluate(tmp_path, tiny_clip):
    truth = tmp_path / "truth.csv"
    rows = list(csv.reader(truth_csv(tmp_path / "single.csv", per_class=5).open()))[1:]
    with truth.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels"])
        for path, label in rows:
            writer.writerow([path, f"{label};{'vehicle' if label == 'ship' else 'animal'}"])
    labels = [*CLASSES, "animal", "vehicle"]
    store = tmp_path / "store"
    result = compare(
        truth, truth, labels, templates=["photo", "default"], models=[str(tiny_clip)], multi_label=True, store=store
    )
    assert result.task == "multi-label" and result.sort == "mAP"
    for row in result.rows:
        predictions = ig.classify(
            truth, labels, model=str(tiny_clip), templates=row["templates"], multi_label=True, store=store
        )
        assert_same_metrics(row, ig.evaluate(predictions, truth))


def test_unusable_arguments_fail_before_any_model_loads(tmp_path):
    truth = truth_csv(tmp_path / "truth.csv", per_class=1)
    with pytest.raises(LabelError, match="sort"):
        compare(truth, truth, ["cat"], models=["no/such-model"], sort="speed")
    with pytest.raises(LabelError, match="placeholder|'{}'"):
        compare(truth, truth, ["cat"], templates=[["no placeholder"]], models=["no/such-model"])
    result = run_cli("compare", truth, "--truth", truth, "--labels", "cat", "--templates", "nosuch", "--model", "x")
    assert result.returncode == 2 and "nosuch" in result.stderr and "Traceback" not in result.stderr


# ---- few-shot probes -------------------------------------------------------------------------


def test_few_shot_split_is_seeded_nested_disjoint_and_k_per_class():
    from iconograph.evaluation.fewshot import few_shot_split
    from iconograph.learning.splits import split_items

    items = [ig.Item(f"{c}/{i}.jpg", (c,)) for c in ("a", "b", "c") for i in range(12 if c != "c" else 5)]
    test, train = few_shot_split(items, [1, 2, 4], test_size=0.5, seed=3, multi_label=False)
    assert [i.path for i in test] == [i.path for i in split_items(items, val=0.0, test=0.5, seed=3).test]
    pool = {i.path for i in items} - {i.path for i in test}
    pool_counts = {c: sum(p.startswith(c + "/") for p in pool) for c in "abc"}
    assert pool_counts["c"] < 4  # a small class gives all it has
    for k, part in train.items():
        paths = [i.path for i in part]
        assert set(paths) <= pool and len(set(paths)) == len(paths)
        assert {c: sum(p.startswith(c + "/") for p in paths) for c in "abc"} == {
            c: min(k, n) for c, n in pool_counts.items()
        }
    assert {i.path for i in train[1]} <= {i.path for i in train[2]} <= {i.path for i in train[4]}
    again = few_shot_split(items, [1, 2, 4], test_size=0.5, seed=3, multi_label=False)
    assert again == (test, train)
    other = few_shot_split(items, [1, 2, 4], test_size=0.5, seed=4, multi_label=False)
    assert other != (test, train)

    multi = [ig.Item(f"{i}.jpg", ("x", "y") if i % 3 == 0 else ("x",) if i % 3 == 1 else ("y", "z")) for i in range(30)]
    test, train = few_shot_split(multi, [2], test_size=0.4, seed=0, multi_label=True)
    counts = {label: sum(label in i.labels for i in train[2]) for label in "xyz"}
    assert min(counts.values()) >= 2 and not {i.path for i in train[2]} & {i.path for i in test}


def sklearn_probe_metrics(vectors: dict, train: list[str], test: list[str], truth: dict, multi_label: bool):
    """The reference: scikit-learn's LogisticRegression (one-vs-rest for multi-label) fitted directly
    on the same L2-normalised vectors, deciding and scored as ``predict`` then ``evaluate``."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer, normalize

    from iconograph.classification.decisions import decide
    from iconograph.classification.results import Prediction

    X = normalize(np.stack([vectors[p] for p in train]).astype(np.float64))
    X_test = normalize(np.stack([vectors[p] for p in test]).astype(np.float64))
    estimator = LogisticRegression(C=1.0, tol=1e-4, max_iter=1000)
    if multi_label:
        binarizer = MultiLabelBinarizer().fit([truth[p] for p in train])
        classes = list(binarizer.classes_)
        scores = (
            OneVsRestClassifier(estimator).fit(X, binarizer.transform([truth[p] for p in train])).predict_proba(X_test)
        )
    else:
        fitted = estimator.fit(X, [truth[p][0] for p in train])
        classes, scores = list(fitted.classes_), fitted.predict_proba(X_test)
    decided = decide(scores, classes, multi_label=multi_label)
    predictions = [Prediction(p, labels) for p, labels in zip(test, decided)]
    return ig.evaluate(predictions, {p: truth[p] for p in test}, multi_label=multi_label)


def assert_close_metrics(row: dict, expected: dict) -> None:
    """Decisions equal; scores (float32 PyTorch vs float64 scikit-learn) to 1e-6 in the ranking metrics."""
    for key in ("accuracy", "f1_micro", "f1_macro", "f1_samples", "top5_accuracy"):
        if key in expected:
            assert row[key] == pytest.approx(expected[key], abs=1e-9), key
    assert row["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)
    assert row["counts"] == expected["counts"] and row["per_class"] == expected["per_class"]


def test_few_shot_rows_equal_scikit_learn_on_the_same_split(tmp_path, tiny_clip, second_clip):
    truth = truth_csv(tmp_path / "truth.csv", per_class=10)
    n = 10 * len(CLASSES)
    store = ig.Store(tmp_path / "store")
    embedders = {
        name: ig.Embedder(str(m), store=store, workers=0) for name, m in (("a", tiny_clip), ("b", second_clip))
    }
    result = compare(
        truth, truth, list(CLASSES), templates=["default", "photo"], models=embedders, shots=[1, 2, 4], seed=1
    )
    few_shot = result.few_shot
    assert few_shot.head == "logistic" and few_shot.shots == [1, 2, 4] and len(few_shot.test) == n // 2
    for embedder in embedders.values():  # the probes reuse the zero-shot image embeddings
        assert (embedder.stats.computed, embedder.stats.cached) == (n, 0)
    truth_map = {item.path: item.labels for item in read_truth(truth)}
    probes = [row for row in result.rows if row["head"] == "logistic"]
    assert sorted((r["model"], r["shots"]) for r in probes) == [(m, k) for m in "ab" for k in (1, 2, 4)]
    for row in probes:
        embedded = embedders[row["model"]].embed_images(list(truth_map))
        vectors = dict(zip(embedded.paths, embedded.vectors))
        train = few_shot.train[row["shots"]]
        assert row["train_images"] == len(train) == row["shots"] * len(CLASSES)
        assert not set(train) & set(few_shot.test)
        expected = sklearn_probe_metrics(vectors, train, few_shot.test, truth_map, multi_label=False)
        assert_close_metrics(row, expected)
    for row in result.rows:
        if row["head"] == "zero-shot":  # zero-shot rows: every image; the curve's zero-shot: the test images
            assert row["counts"]["evaluated"] == n
            predictions = ig.classify(
                few_shot.test, list(CLASSES), embedder=embedders[row["model"]], templates=row["templates"]
            )
            on_test = ig.evaluate(predictions, {p: truth_map[p] for p in few_shot.test})
            assert few_shot.zero_shot[row["model"]][row["templates"]]["accuracy"] == pytest.approx(
                on_test["accuracy"], abs=1e-9
            )
    curve = result.curve()
    assert curve["a"]["shots"] == [1, 2, 4]
    assert curve["a"]["probe"] == [
        r["accuracy"] for r in sorted((r for r in probes if r["model"] == "a"), key=lambda r: r["shots"])
    ]


def test_multi_label_few_shot_rows_equal_scikit_learn_one_vs_rest(tmp_path, tiny_clip):
    truth = tmp_path / "truth.csv"
    rows = list(csv.reader(truth_csv(tmp_path / "single.csv", per_class=8).open()))[1:]
    with truth.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels"])
        for path, label in rows:
            writer.writerow([path, f"{label};{'vehicle' if label == 'ship' else 'animal'}"])
    labels = [*CLASSES, "animal", "vehicle"]
    embedder = ig.Embedder(str(tiny_clip), store=tmp_path / "store", workers=0)
    result = compare(truth, truth, labels, templates=["photo"], models={"m": embedder}, multi_label=True, shots=[2, 4])
    truth_map = {item.path: item.labels for item in read_truth(truth)}
    embedded = embedder.embed_images(list(truth_map))
    vectors = dict(zip(embedded.paths, embedded.vectors))
    for row in (r for r in result.rows if r["head"] == "logistic"):
        assert row["task"] == "multi-label"
        expected = sklearn_probe_metrics(
            vectors, result.few_shot.train[row["shots"]], result.few_shot.test, truth_map, True
        )
        assert_close_metrics(row, expected)


# ---- CLI, JSON, CSV and HTML agree ---------------------------------------------------------


def html_table(html: str) -> list[dict]:
    """The comparison table's rows from the page: model, templates and each metric's data-value."""
    body = html.split('<table id="compare-table">', 1)[1].split("</table>", 1)[0]
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S):
        texts = re.findall(r'<td class="text">(.*?)</td>', tr)
        values = dict(re.findall(r'data-metric="([^"]+)" data-value="([^"]*)"', tr))
        head = texts[2] if len(texts) > 2 else "zero-shot"
        rows.append(
            {"model": texts[0], "templates": texts[1], "head": head, **{k: float(v) for k, v in values.items() if v}}
        )
    return rows


def test_cli_json_csv_and_html_agree(tmp_path, tiny_clip, second_clip):
    import html as html_lib

    truth = truth_csv(tmp_path / "truth.csv")
    out = {name: tmp_path / f"compare.{name}" for name in ("json", "csv", "html")}
    result = run_cli(
        "compare",
        truth,
        "--truth",
        truth,
        "--labels",
        ",".join(CLASSES),
        "--templates",
        *TEMPLATES,
        "--model",
        tiny_clip,
        second_clip,
        "--json",
        out["json"],
        "--csv",
        out["csv"],
        "--report",
        out["html"],
        "--store",
        tmp_path / "store",
        "--sort",
        "f1_macro",
        "--shots",
        "1",
        "2",
        check=True,
    )
    assert "30 images: 30 ok, 0 failed; 60 embeddings computed, 0 from cache" in result.stderr
    data = json.loads(out["json"].read_text())
    rows = data["rows"]
    assert data["sort"] == "f1_macro" and len(rows) == 6 + 2 * 2
    assert [r["f1_macro"] for r in rows] == sorted((r["f1_macro"] for r in rows), reverse=True)
    assert {(r["model"], r["templates"], r["head"], r["shots"]) for r in rows} == {
        (str(m), t, "zero-shot", None) for m in (tiny_clip, second_clip) for t in TEMPLATES
    } | {(str(m), None, "logistic", k) for m in (tiny_clip, second_clip) for k in (1, 2)}
    few_shot = data["few_shot"]
    assert few_shot["head"] == "logistic" and few_shot["shots"] == [1, 2] and few_shot["test_images"] == 15
    assert few_shot["train_images"] == {"1": 3, "2": 6}
    assert data["template_sets"]["cifar10"] == load_templates("cifar10")

    with out["csv"].open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["model"], r["templates"], r["head"], r["shots"]) for r in table] == [
        (r["model"], r["templates"] or "", r["head"], str(r["shots"] or "")) for r in rows
    ]
    for row, line in zip(rows, table):
        for metric in METRICS:
            assert float(line[metric]) == row[metric]
        assert int(line["images_computed"]) == 30
        assert int(line["evaluated"]) == (30 if row["head"] == "zero-shot" else 15)

    page = html_table(out["html"].read_text())
    assert [(html_lib.unescape(r["model"]), html_lib.unescape(r["templates"]), r["head"]) for r in page] == [
        (r["model"], r["templates"] or "", r["head"]) for r in rows
    ]
    for row, shown in zip(rows, page):
        for metric in METRICS:
            assert float(shown[metric]) == pytest.approx(row[metric], abs=1e-12)

    curve_table = out["html"].read_text().split('<table id="few-shot-table">', 1)[1].split("</table>", 1)[0]
    shown = {(int(k), float(v)) for k, v in re.findall(r'data-shots="(\d+)" data-value="([^"]+)"', curve_table)}
    assert shown == {(r["shots"], r["f1_macro"]) for r in rows if r["head"] == "logistic"}

    for row in rows:  # the terminal table shows the same rows, four decimals
        assert f"{row['accuracy']:.4f}" in result.stdout and (row["templates"] or "logistic") in result.stdout

    api = ig.compare(
        truth,
        truth,
        list(CLASSES),
        templates=TEMPLATES,
        models=[str(tiny_clip), str(second_clip)],
        sort="f1_macro",
        shots=[1, 2],
        store=tmp_path / "store",
    )
    assert all(r["images_cached"] == 30 for r in api.rows)
    assert api.to_json()["few_shot"] == few_shot
    by_key = {(r["model"], r["templates"], r["shots"]): r for r in api.rows}
    for row in rows:
        assert_same_metrics(row, by_key[(row["model"], row["templates"], row["shots"])])


@needs_chromium
def test_report_renders_offline_and_escapes_hostile_labels(browser, tmp_path, tiny_clip, second_clip):
    truth = truth_csv(tmp_path / "truth.csv", per_class=4, rename={"cat": HOSTILE})
    labels = [HOSTILE, "ship", "frog"]
    result = compare(
        truth,
        truth,
        labels,
        templates=["photo", "{} <b>bold</b> & co", "cifar10"],
        models={HOSTILE: str(tiny_clip), "second": str(second_clip)},
        ensemble=True,
        shots=[1, 2],
        store=tmp_path / "store",
    )
    html = result.write_report(tmp_path / "compare.html")
    text = html.read_text()
    assert HOSTILE not in text and "<b>bold</b>" not in text
    assert "&lt;img src=x onerror=window.pwned=1&gt;" in text

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"request failed: {request.url}"))
    page.goto(html.as_uri())
    assert errors == []
    assert page.evaluate("() => window.pwned") is None
    assert page.locator("img:not(.plot)").count() == 0  # no <img> made from a label
    external = page.evaluate(
        "() => [...document.querySelectorAll('[src], [href]')]"
        ".map(e => e.getAttribute('src') || e.getAttribute('href'))"
        ".filter(s => !s.startsWith('data:') && !s.startsWith('#'))"
    )
    assert external == []
    plots = page.locator("img.plot").evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
    assert len(plots) == len(METRICS) + 1 and all(plots)  # a bar chart per metric and the few-shot curve
    assert page.locator("#compare-table tbody tr").count() == 2 * 4 + 2 * 2
    assert page.locator("#few-shot-table tbody tr").count() == 2
    speed = page.locator("#speed-table tbody tr").all()
    assert [row.locator("td").first.inner_text() for row in speed] == [HOSTILE, "second"]
    for row, entry in zip(speed, result.speed()):
        shown = row.locator("td").nth(3).get_attribute("data-value")
        assert float(shown) == pytest.approx(entry["seconds_per_1000_images"]) and entry["images_computed"] == 12
    headers = page.locator("#per-class-table thead th").all_inner_texts()
    best = result.rows[:2]
    assert headers[1:3] == [
        f"{r['model']} · {r['templates']}" if r["head"] == "zero-shot" else f"{r['model']} · logistic {r['shots']}-shot"
        for r in best
    ]
    cells = page.locator("#per-class-table tbody tr").first.locator("td").all_inner_texts()
    first_class = sorted({c for r in best for c in r["per_class"]})[0]
    assert cells[0] == first_class
    for cell, row in zip(cells[1:3], best):
        assert math.isclose(float(cell), row["per_class"][first_class]["f1"], abs_tol=5e-5)
    screenshot = tmp_path / "compare.png"
    page.screenshot(path=str(screenshot), full_page=True)
    keep_artifact(screenshot, "compare.png")
