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


# ---- CLI, JSON, CSV and HTML agree ---------------------------------------------------------


def html_table(html: str) -> list[dict]:
    """The comparison table's rows from the page: model, templates and each metric's data-value."""
    body = html.split('<table id="compare-table">', 1)[1].split("</table>", 1)[0]
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S):
        texts = re.findall(r'<td class="text">(.*?)</td>', tr)
        values = dict(re.findall(r'data-metric="([^"]+)" data-value="([^"]*)"', tr))
        rows.append({"model": texts[0], "templates": texts[1], **{k: float(v) for k, v in values.items() if v}})
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
        check=True,
    )
    assert "30 images: 30 ok, 0 failed; 60 embeddings computed, 0 from cache" in result.stderr
    data = json.loads(out["json"].read_text())
    rows = data["rows"]
    assert data["sort"] == "f1_macro" and len(rows) == 6
    assert [r["f1_macro"] for r in rows] == sorted((r["f1_macro"] for r in rows), reverse=True)
    assert {(r["model"], r["templates"]) for r in rows} == {
        (str(m), t) for m in (tiny_clip, second_clip) for t in TEMPLATES
    }
    assert data["template_sets"]["cifar10"] == load_templates("cifar10")

    with out["csv"].open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["model"], r["templates"]) for r in table] == [(r["model"], r["templates"]) for r in rows]
    for row, line in zip(rows, table):
        for metric in METRICS:
            assert float(line[metric]) == row[metric]
        assert int(line["images_computed"]) == 30 and int(line["evaluated"]) == 30

    page = html_table(out["html"].read_text())
    assert [(html_lib.unescape(r["model"]), html_lib.unescape(r["templates"])) for r in page] == [
        (r["model"], r["templates"]) for r in rows
    ]
    for row, shown in zip(rows, page):
        for metric in METRICS:
            assert float(shown[metric]) == pytest.approx(row[metric], abs=1e-12)

    for row in rows:  # the terminal table shows the same rows, four decimals
        assert f"{row['accuracy']:.4f}" in result.stdout and row["templates"] in result.stdout

    api = ig.compare(
        truth,
        truth,
        list(CLASSES),
        templates=TEMPLATES,
        models=[str(tiny_clip), str(second_clip)],
        sort="f1_macro",
        store=tmp_path / "store",
    )
    assert all(r["images_cached"] == 30 for r in api.rows)
    by_key = {(r["model"], r["templates"]): r for r in api.rows}
    for row in rows:
        assert_same_metrics(row, by_key[(row["model"], row["templates"])])


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
    assert len(plots) == len(METRICS) and all(plots)
    assert page.locator("#compare-table tbody tr").count() == 2 * 4
    headers = page.locator("#per-class-table thead th").all_inner_texts()
    best = result.rows[:2]
    assert headers[1:3] == [f"{r['model']} · {r['templates']}" for r in best]
    cells = page.locator("#per-class-table tbody tr").first.locator("td").all_inner_texts()
    first_class = sorted({c for r in best for c in r["per_class"]})[0]
    assert cells[0] == first_class
    for cell, row in zip(cells[1:3], best):
        assert math.isclose(float(cell), row["per_class"][first_class]["f1"], abs_tol=5e-5)
    screenshot = tmp_path / "compare.png"
    page.screenshot(path=str(screenshot), full_page=True)
    keep_artifact(screenshot, "compare.png")
