"""Regions (boxes and masks of a detect/segment JSONL) attached to a collection and drawn in the
review page: stored per image, replaced by a newer run, served as an overlay PNG whose pixels are
the masks, and drawn on the detail view in chromium."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from iconograph.boxes import Detections
from iconograph.reading.textfiles import SourceError
from iconograph.search.regions import OVERLAY_ALPHA, overlay_png
from tests.conftest import keep_artifact, needs_chromium, run_cli
from tests.search.conftest import TOKEN
from tests.search.test_service import client

SIZE = 32  # CIFAR images


def masks_for(seed: int) -> np.ndarray:
    """Two masks, one with a hole, on a CIFAR-sized image."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    rng = np.random.default_rng(seed)
    cy, cx = rng.integers(8, 24, 2)
    ring = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 64) & ((yy - cy) ** 2 + (xx - cx) ** 2 > 9)
    square = np.zeros((SIZE, SIZE), bool)
    square[2:9, 20:30] = True
    return np.stack([ring, square])


HOSTILE = '<img src=x onerror="window.pwned=1">'


def write_segment_jsonl(path, image_paths, extra=(), labels=("coin", "eagle")) -> dict[str, np.ndarray]:
    """A segment-style JSONL for ``image_paths`` (plus ``extra`` records); returns the masks."""
    written = {}
    with open(path, "w") as handle:
        for i, image in enumerate(image_paths):
            masks = masks_for(i)
            detections = Detections.from_masks(masks, list(labels), np.array([0.9, 0.6]))
            handle.write(json.dumps({"path": str(image), "boxes": detections.to_records(), "error": None}) + "\n")
            written[str(image)] = masks
        for record in extra:
            handle.write(json.dumps(record) + "\n")
    return written


def test_regions_are_stored_per_image_and_replaced_by_a_newer_run(indexed, tmp_path):
    collection, _ = indexed
    paths = [v.path for v in collection.items()]
    first = write_segment_jsonl(
        tmp_path / "a.jsonl",
        paths[:3],
        extra=[{"path": "/elsewhere/x.jpg", "boxes": []}, {"path": paths[5], "boxes": [], "error": "broken"}],
    )
    report = collection.regions.attach(tmp_path / "a.jsonl")
    assert (report.attached, report.boxes, report.unknown, report.failed) == (3, 6, 1, 1)
    regions = collection.regions.of(paths[0])
    assert [r["label"] for r in regions] == ["coin", "eagle"]
    assert collection.regions.of(paths[4]) == []
    # the overlay's coloured pixels are exactly the union of the image's masks
    overlay = np.asarray(Image.open(io.BytesIO(overlay_png(regions))))
    assert overlay.shape == (SIZE, SIZE, 4)
    assert np.array_equal(overlay[..., 3] == OVERLAY_ALPHA, first[paths[0]].any(axis=0))
    assert np.array_equal(
        overlay[first[paths[0]][0]][:, :3], np.tile([0xE6, 0x19, 0x4B], (first[paths[0]][0].sum(), 1))
    )
    # a newer run replaces one image's regions and leaves the others
    with open(tmp_path / "b.jsonl", "w") as handle:
        handle.write(json.dumps({"path": paths[0], "boxes": [{"label": "owl", "score": 0.5, "xyxy": [1, 2, 3, 4]}]}))
    collection.regions.attach(tmp_path / "b.jsonl")
    assert collection.regions.of(paths[0]) == [{"label": "owl", "score": 0.5, "xyxy": [1.0, 2.0, 3.0, 4.0]}]
    assert overlay_png(collection.regions.of(paths[0])) is None  # boxes only: no overlay
    assert len(collection.regions.of(paths[1])) == 2
    (tmp_path / "bad.jsonl").write_text(json.dumps({"path": paths[0], "labels": []}) + "\n")
    with pytest.raises(SourceError, match="line 1"):
        collection.regions.attach(tmp_path / "bad.jsonl")
    hostile = [  # each refused with one line naming the line, and nothing stored
        {"label": "x" * 10_000, "score": 0.5, "xyxy": [1, 2, 3, 4]},
        {"label": "owl", "score": float("nan"), "xyxy": [1, 2, 3, 4]},
        {"label": "owl", "score": 7, "xyxy": [1, 2, 3, 4]},
        {"label": "owl", "score": 0.5, "xyxy": [1, float("inf"), 3, 4]},
        {"label": "owl", "score": 0.5, "xyxy": [1, 2, 3]},
        {"label": "a\x00b", "score": 0.5, "xyxy": [1, 2, 3, 4]},
    ]
    for box in hostile:
        (tmp_path / "bad.jsonl").write_text(json.dumps({"path": paths[1], "boxes": [box]}) + "\n")
        with pytest.raises(SourceError, match="line 1"):
            collection.regions.attach(tmp_path / "bad.jsonl")
    assert len(collection.regions.of(paths[1])) == 2


def test_index_regions_from_the_command_line_and_the_service(server, images, tiny_clip, tmp_path):
    collection = server.collection
    paths = [v.path for v in collection.items()]
    masks = write_segment_jsonl(tmp_path / "seg.jsonl", paths[:2])
    result = run_cli(
        "index", images, "--collection", "demo", "--store", collection.store.root, "--model", tiny_clip,
        "--regions", tmp_path / "seg.jsonl", "--workers", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "regions of 2 images (4 boxes)" in result.stderr
    with client(server) as http:
        item = http.get("/api/collections/demo/item", params={"path": paths[0]}).json()
        assert [(r["label"], r["mask"]) for r in item["regions"]] == [("coin", True), ("eagle", True)]
        response = http.get("/api/collections/demo/overlay", params={"path": paths[0]})
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        alpha = np.asarray(Image.open(io.BytesIO(response.content)))[..., 3]
        assert np.array_equal(alpha > 0, masks[paths[0]].any(axis=0))
        assert http.get("/api/collections/demo/overlay", params={"path": paths[5]}).status_code == 404
        assert http.get("/api/collections/demo/overlay", params={"path": "../x.png"}).status_code == 403
    with client(server, auth=False) as http:
        assert http.get("/api/collections/demo/overlay", params={"path": paths[0]}).status_code == 401


@needs_chromium
def test_detail_view_draws_masks_and_boxes(server, browser, tmp_path):
    collection = server.collection
    paths = [v.path for v in collection.items()]
    write_segment_jsonl(tmp_path / "seg.jsonl", paths[:1], labels=("coin", HOSTILE))  # markup stays text
    collection.regions.attach(tmp_path / "seg.jsonl")
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    failed = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 and "favicon" not in r.url else None)
    page.goto(f"{server.url}/?token={TOKEN}")
    card = page.locator(f"[data-testid=card][data-path='{paths[0]}']")
    card.wait_for()
    with page.expect_response(lambda r: "/overlay?" in r.url, timeout=60_000) as overlay:
        card.click()
    assert overlay.value.status == 200 and overlay.value.headers["content-type"] == "image/png"
    page.locator("[data-testid=region]").first.wait_for(state="attached")
    assert page.locator("[data-testid=region]").count() == 2
    assert page.locator("[data-testid=mask-overlay]").count() == 1
    strokes = page.eval_on_selector_all("[data-testid=region]", "els => els.map(e => getComputedStyle(e).stroke)")
    assert strokes == ["rgb(230, 25, 75)", "rgb(60, 180, 75)"]  # one annotate colour per class
    assert failed == [] and errors == []
    captions = page.eval_on_selector_all("text.region", "els => els.map(e => e.textContent)")
    assert captions == ["coin 0.90", f"{HOSTILE} 0.60"]
    assert page.evaluate("() => window.pwned === undefined && !document.querySelector('#boxes img')")
    page.wait_for_function("() => document.getElementById('detail-image').complete")
    shot = tmp_path / "review-masks.png"
    page.screenshot(path=str(shot))
    keep_artifact(shot)
