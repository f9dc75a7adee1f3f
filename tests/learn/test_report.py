"""The evaluation report: rendered in headless Chromium, every section present, no console errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import iconograph as ig
from iconograph.classification.results import LabelScore, Prediction
from iconograph.evaluation.report import full, write_full_report
from tests.conftest import keep_artifact, needs_chromium, run_cli
from tests.learn.conftest import cifar_rows

SECTIONS = ["headline", "per-class", "pr-curves", "examples", "agreement", "embedding-map"]


def fake_predictions(multi_label: bool, seed: int = 0):
    """Predictions for real CIFAR images, right most of the time, with scores for every class."""
    rng = np.random.default_rng(seed)
    rows = cifar_rows("test", per_class=15)
    classes = sorted({c for _, c in rows})
    predictions, truth = [], {}
    for path, label in rows:
        scores = rng.random(len(classes)) * 0.6
        if rng.random() < 0.7:
            scores[classes.index(label)] += 0.5
        labels = tuple(sorted(((c, s) for c, s in zip(classes, scores)), key=lambda x: -x[1]))
        if multi_label:
            labels = tuple(x for x in labels if x[1] >= 0.5)
        predictions.append(Prediction(str(path), tuple(LabelScore(c, float(s)) for c, s in labels)))
        truth[str(path)] = (
            (label, "vehicle" if label in ("automobile", "ship", "airplane") else "animal") if multi_label else (label,)
        )
    missing = str(rows[0][0].parent / "missing.jpg")
    predictions.append(Prediction(missing, (), "file not found"))
    truth[missing] = truth[str(rows[0][0])]
    return predictions, truth


def render(browser, html: Path, screenshot: Path) -> dict:
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"request failed: {request.url}"))
    page.goto(html.as_uri())
    found = {section: page.locator(f"section#{section}").is_visible() for section in SECTIONS}
    found["confusion"] = page.locator("section#confusion").count() == 1
    plots = page.locator("img.plot").evaluate_all("imgs => imgs.map(i => i.naturalWidth > 0 && i.complete)")
    page.locator("#per-class-table th", has_text="F1").click()
    first_f1 = [
        float(v)
        for v in page.locator("#per-class-table tbody tr td:nth-child(4)").evaluate_all(
            "cells => cells.map(c => c.dataset.value)"
        )
    ]
    page.locator("#map-svg circle").last.hover()  # the last is drawn on top
    tooltip = page.locator("#map-tip").inner_text() if page.locator("#map-tip").is_visible() else ""
    tooltip_image = page.locator("#map-tip img").count()
    external = page.evaluate(
        "() => [...document.querySelectorAll('[src]')].map(e => e.getAttribute('src')).filter(s => !s.startsWith('data:'))"
    )
    page.screenshot(path=str(screenshot), full_page=True)
    return {
        "errors": errors,
        "sections": found,
        "plots": plots,
        "f1": first_f1,
        "tooltip": tooltip,
        "tooltip_image": tooltip_image,
        "external": external,
    }


@needs_chromium
@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_report_renders_every_section_in_chromium(browser, multi_label, tmp_path):
    predictions, truth = fake_predictions(multi_label)
    html = write_full_report(predictions, truth, tmp_path / "report.html", map_method="tsne", title="test report")
    files = sorted(p.name for p in (tmp_path / "report_files").iterdir())
    expected_files = ["agreement.png", "embedding_map.png", "pr_curves.png"]
    assert files == sorted(expected_files + ([] if multi_label else ["confusion.png"]))
    screenshot = tmp_path / "report.png"
    seen = render(browser, html, screenshot)
    assert seen["errors"] == []
    assert all(seen["sections"][s] for s in SECTIONS), seen["sections"]
    assert seen["sections"]["confusion"] == (not multi_label)
    assert seen["plots"] and all(seen["plots"])
    assert seen["f1"] == sorted(seen["f1"], reverse=True)  # the table sorted by F1 on click
    assert "true:" in seen["tooltip"] and seen["tooltip_image"] == 1  # hover shows the thumbnail
    assert seen["external"] == []  # self-contained
    assert screenshot.stat().st_size > 10_000
    keep_artifact(screenshot, f"report-{'multi' if multi_label else 'single'}-label.png")


def test_report_content_and_evaluate_report(tmp_path):
    predictions, truth = fake_predictions(False)
    from iconograph.classification.results import write_predictions

    write_predictions(predictions, tmp_path / "preds.jsonl")
    truth_csv = tmp_path / "truth.csv"
    truth_csv.write_text("path,labels\n" + "".join(f"{p},{v[0]}\n" for p, v in truth.items()))
    run_cli("evaluate", tmp_path / "preds.jsonl", "--truth", truth_csv, "--report", tmp_path / "ev.html", check=True)
    html = (tmp_path / "ev.html").read_text()
    for section in [*SECTIONS, "confusion"]:
        assert f'id="{section}"' in html
    expected = ig.evaluate(tmp_path / "preds.jsonl", truth_csv)
    shown = shown_numbers(html)
    assert shown["headline"] == {k: f"{v:.4f}" for k, v in expected.items() if isinstance(v, float)}
    assert {label: row["f1"] for label, row in shown["per_class"].items()} == {
        label: stats["f1"] for label, stats in expected["per_class"].items()
    }
    assert "missing.jpg" in html  # the unreadable image is among the worst, with its error
    assert (tmp_path / "ev_files" / "confusion.png").is_file()
    assert "t-SNE of score vectors" in html  # 61 points: t-SNE by default (above 30, up to 300)


def shown_numbers(html: str) -> dict:
    """The headline cards, counts line and per-class rows as the rendered HTML shows them."""
    headline = dict(re.findall(r'<div class="card">([\w-]+)<b>([\d.]+)</b></div>', html))
    counts_line = re.search(r'<p class="muted">(truth: .*?)</p>', html).group(1)
    counts = {name: int(value) for name, value in re.findall(r"(\w+): (\d+)", counts_line)}
    row = re.compile(
        r"<tr><td>([^<]+)</td><td>([\d.]+)</td><td>([\d.]+)</td><td data-value=\"([^\"]+)\">.*?</td>"
        r'<td data-value="([^"]+)">[^<]*</td><td>(\d+)</td></tr>'
    )
    per_class = {
        label: {"precision": p, "recall": r, "f1": float(f1), "ap": float(ap), "support": int(n)}
        for label, p, r, f1, ap, n in row.findall(html)
    }
    return {"headline": headline, "counts": counts, "per_class": per_class}


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_report_shows_the_numbers_of_evaluate(multi_label, tmp_path, monkeypatch):
    """The report matches predictions to truth as evaluate() does, so every number it shows is evaluate()'s:
    truth spelled differently (``dir/./name``), one prediction without truth, one unreadable image."""
    predictions, truth = fake_predictions(multi_label)
    truth = {str(Path(p).parent / "." / Path(p).name): labels for p, labels in truth.items()}
    predictions.append(Prediction(str(tmp_path / "not-in-truth.jpg"), (LabelScore("cat", 0.9),)))
    expected = ig.evaluate(predictions, truth)
    assert expected["task"] == ("multi-label" if multi_label else "single-label")
    assert expected["counts"]["unmatched"] == 1 and expected["counts"]["errors"] == 1

    rendered = {}
    render = full._render
    monkeypatch.setattr(full, "_render", lambda context: rendered.update(context) or render(context))
    html = write_full_report(predictions, truth, tmp_path / "report.html", map_method="pca").read_text()

    assert rendered["metrics"] == expected
    shown = shown_numbers(html)
    floats = {k: v for k, v in expected.items() if isinstance(v, float)}
    assert shown["headline"] == {k: f"{v:.4f}" for k, v in floats.items()}
    assert shown["counts"] == expected["counts"]
    assert set(shown["per_class"]) == set(expected["per_class"])
    for label, stats in expected["per_class"].items():
        row = shown["per_class"][label]
        assert row["precision"] == f"{stats['precision']:.3f}" and row["recall"] == f"{stats['recall']:.3f}"
        assert row["f1"] == stats["f1"] and row["support"] == stats["support"]
    aps = [row["ap"] for row in shown["per_class"].values() if row["ap"] >= 0]  # -1: no positive example
    assert np.mean(aps) == pytest.approx(expected["mAP"])
