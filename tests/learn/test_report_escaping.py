"""Hostile labels, file names and titles in every HTML report: escaped in the file, inert in Chromium.

Labels reach a report from predictions, truth files and reviews (export -> evaluate --report), and
file names from the collection, so each report is rendered from data that carries markup and
script, and the page is then opened in headless Chromium to prove that nothing runs.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import CIFAR_TEST, RACCOON, needs_chromium, run_cli

HOSTILE_LABELS = (
    '<img src=x onerror="window.__pwned=1">',
    "</script><script>window.__pwned=2</script>",
)
HOSTILE_NAME = '"><svg onload="window.__pwned=3">'  # a legal file name on Linux
HOSTILE_TITLE = "<script>window.__pwned=4</script>"
MARKUP = ("<img src=x", "<script>window", "<svg onload")


def hostile_images(root: Path, per_label: int = 4) -> list[tuple[Path, str]]:
    """CIFAR images copied under hostile names, half of them with each hostile label."""
    sources = sorted((CIFAR_TEST / "cat").glob("*.jpg"))[: 2 * per_label]
    rows = []
    for n, source in enumerate(sources):
        target = root / f"{HOSTILE_NAME}{n}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        rows.append((target, HOSTILE_LABELS[n % 2]))
    return rows


def write_classification_files(tmp_path: Path) -> tuple[Path, Path]:
    rows = hostile_images(tmp_path / "photos")
    truth = tmp_path / "truth.csv"
    with truth.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels"])
        writer.writerows([str(path), label] for path, label in rows)
    predictions = tmp_path / "preds.jsonl"
    with predictions.open("w", encoding="utf-8") as handle:
        for n, (path, _) in enumerate(rows):
            first, second = HOSTILE_LABELS[(n + n // 3) % 2], HOSTILE_LABELS[(n + n // 3 + 1) % 2]  # some wrong
            scores = [{"label": first, "score": 0.8}, {"label": second, "score": 0.1}]
            handle.write(json.dumps({"path": str(path), "labels": scores, "error": None}) + "\n")
    return predictions, truth


def assert_escaped(html_file: Path) -> str:
    html = html_file.read_text(encoding="utf-8")
    for fragment in MARKUP:
        assert fragment not in html, f"unescaped {fragment!r} in {html_file.name}"
    return html


def assert_inert_in_chromium(browser, html_file: Path, expected_text: tuple[str, ...]) -> None:
    page = browser.new_page()
    page.goto(html_file.as_uri())
    page.wait_for_load_state("load")
    if page.locator("#map-svg circle").count():
        page.locator("#map-svg circle").last.hover()  # the tooltip shows labels and names too (last: on top)
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("img[src='x'], svg[onload]").count() == 0
    text = page.evaluate("() => document.documentElement.textContent")
    for value in expected_text:
        assert value in text, f"{value!r} is not shown as text"
    page.close()


@needs_chromium
def test_evaluate_and_report_commands_escape_labels_and_file_names(browser, tmp_path):
    predictions, truth = write_classification_files(tmp_path)
    run_cli("evaluate", predictions, "--truth", truth, "--report", tmp_path / "ev.html", check=True)
    run_cli("report", predictions, "--truth", truth, "--out", tmp_path / "r.html", "--title", HOSTILE_TITLE, check=True)
    for html_file in (tmp_path / "ev.html", tmp_path / "r.html"):
        assert_escaped(html_file)
        assert_inert_in_chromium(browser, html_file, (*HOSTILE_LABELS, HOSTILE_NAME))
    assert HOSTILE_TITLE in (tmp_path / "r.html").read_text().replace("&lt;", "<").replace("&gt;", ">")


@needs_chromium
def test_metrics_only_report_escapes_labels(browser, tmp_path):
    from iconograph import evaluate
    from iconograph.evaluation.report import write_report

    predictions, truth = write_classification_files(tmp_path)
    metrics = evaluate(predictions, truth=truth)
    html_file = write_report(metrics, tmp_path / "metrics.html", title=HOSTILE_TITLE)
    assert_escaped(html_file)
    assert_inert_in_chromium(browser, html_file, (*HOSTILE_LABELS, HOSTILE_TITLE))


@needs_chromium
def test_train_report_escapes_labels_from_the_truth(browser, tiny_timm, tmp_path):
    rows = []
    for n, label in enumerate(HOSTILE_LABELS):
        for path in sorted((CIFAR_TEST / ("cat", "ship")[n]).glob("*.jpg"))[:15]:
            rows.append((path, label))
    truth = tmp_path / "truth.csv"
    with truth.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("path", "labels"), *((str(p), label) for p, label in rows)])
    report = tmp_path / "train.html"
    run_cli(
        "train",
        truth,
        "--truth",
        truth,
        "--head",
        "logistic",
        "--backbone",
        tiny_timm,
        "--out",
        tmp_path / "model",
        "--workers",
        "0",
        "--report",
        report,
        check=True,
    )
    assert_escaped(report)
    assert_inert_in_chromium(browser, report, HOSTILE_LABELS)


@needs_chromium
def test_detection_report_escapes_class_names(browser, tmp_path):
    xml_files = sorted((RACCOON / "annotations").glob("*.xml"))[:6]
    images, annotations, records = [], [], []
    for image_id, xml_file in enumerate(xml_files, start=1):
        from xml.etree import ElementTree as ET

        root = ET.parse(xml_file).getroot()
        path = str(RACCOON / "images" / root.findtext("filename"))
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
        images.append({"id": image_id, "file_name": path, "width": width, "height": height})
        box = [10.0, 10.0, width / 2, height / 2]
        category = 1 + image_id % 2
        annotations.append(
            {"id": image_id, "image_id": image_id, "category_id": category, "bbox": box, "area": box[2] * box[3]}
        )
        x, y, w, h = box
        boxes = [{"label": HOSTILE_LABELS[category - 1], "score": 0.9, "xyxy": [x, y, x + w, y + h]}]
        records.append({"path": path, "boxes": boxes, "error": None})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(HOSTILE_LABELS)]
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    predictions = tmp_path / "boxes.jsonl"
    predictions.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = tmp_path / "detection.html"
    result = run_cli("evaluate", predictions, "--truth", truth, "--report", report, check=True)
    assert "Traceback" not in result.stderr
    assert_escaped(report)
    assert_inert_in_chromium(browser, report, HOSTILE_LABELS)


@pytest.mark.parametrize("template", ["report.html.j2", "full_report.html.j2", "detection.html.j2"])
def test_every_report_template_is_autoescaped(template):
    from iconograph.evaluation.report.html import environment

    env = environment()
    source = env.loader.get_source(env, template)[0]
    compiled = env.from_string(source)
    assert compiled.environment.autoescape is True
    assert "|safe" not in source.replace(" ", "")  # nothing opts out of escaping
