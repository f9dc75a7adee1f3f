"""index --crop: a row's vector is its image's largest box's embedding (equal to embedding the
cropped file), the row keeps the image path, and the change key includes the crop, so a moved box
re-embeds only its image; --crop-mode each is refused (one row per image)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconograph.boxes import Detections
from iconograph.classification.decisions import l2_normalize
from iconograph.errors import OptionError
from iconograph.search import SearchCollection
from iconograph.search.run import index_collection
from tests.conftest import run_cli
from tests.detect.test_crop import OBJECT, SMALL, embed_file, photo

OTHER = (10, 10, 60, 50)  # the second image's box


def write_boxes(path, boxes_by_image: dict) -> Path:
    records = [
        {"path": str(image), "boxes": Detections.from_labels(list(boxes), ["coin"] * len(boxes)).to_records()}
        for image, boxes in boxes_by_image.items()
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def row_vectors(collection: SearchCollection) -> dict[str, np.ndarray]:
    rows = collection.vectors.rows(("path", "vector"))
    return {
        p: np.asarray(v, np.float64) for p, v in zip(rows.column("path").to_pylist(), rows.column("vector").to_pylist())
    }


def test_index_crop_embeds_the_largest_box_and_reembeds_only_a_moved_box(tiny_clip, tmp_path):
    tray, other = tmp_path / "photos" / "tray.png", tmp_path / "photos" / "other.png"
    tray.parent.mkdir()
    photo().save(tray)
    photo().transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(other)
    boxes = write_boxes(tmp_path / "boxes.jsonl", {tray: (OBJECT, SMALL), other: (OTHER,)})
    store = tmp_path / "store"
    options = dict(store=store, model=str(tiny_clip), crop=boxes, crop_margin=0.1, runtime="torch", workers=0)

    first = index_collection([tray, other], "coins", **options)
    assert (first.added, first.computed, first.cached, first.failed) == (2, 2, 0, [])
    collection = SearchCollection("coins", store)
    vectors = row_vectors(collection)
    assert sorted(vectors) == sorted([str(tray), str(other)])  # the rows keep the image paths
    photo().crop((35, 17, 95, 69)).save(tmp_path / "cropped.png")  # OBJECT widened by 10%, outwards
    expected = l2_normalize(embed_file(tmp_path / "cropped.png", tiny_clip, tmp_path).astype(np.float64))
    assert np.allclose(vectors[str(tray)], expected, atol=1e-6)
    whole = l2_normalize(embed_file(tray, tiny_clip, tmp_path).astype(np.float64))
    assert not np.allclose(vectors[str(tray)], whole, atol=1e-3)

    again = index_collection([tray, other], "coins", **options)
    assert (again.added, again.updated, again.unchanged, again.computed, again.cached) == (0, 0, 2, 0, 2)

    moved = write_boxes(tmp_path / "moved.jsonl", {tray: (OBJECT, SMALL), other: (OTHER[:3] + (61,),)})
    changed = index_collection([tray, other], "coins", **{**options, "crop": moved})
    assert (changed.updated, changed.unchanged, changed.computed, changed.cached) == (1, 1, 1, 1)
    after = row_vectors(SearchCollection("coins", store))
    assert np.array_equal(after[str(tray)], vectors[str(tray)])
    assert not np.allclose(after[str(other)], vectors[str(other)])

    wider = index_collection([tray, other], "coins", **{**options, "crop": moved, "crop_margin": 0.2})
    assert (wider.updated, wider.computed) == (2, 2)  # the margin is part of each row's key


def test_index_crop_mode_each_is_refused(tiny_clip, tmp_path):
    photo().save(tmp_path / "tray.png")
    boxes = write_boxes(tmp_path / "boxes.jsonl", {tmp_path / "tray.png": (OBJECT,)})
    with pytest.raises(OptionError, match="one row per image"):
        index_collection(
            [tmp_path / "tray.png"], store=tmp_path / "s", model=str(tiny_clip), crop=boxes, crop_mode="each"
        )
    args = ["index", tmp_path / "tray.png", "--model", tiny_clip, "--store", tmp_path / "s", "--crop", boxes]
    refused = run_cli(*args, "--crop-mode", "each")
    assert refused.returncode != 0 and "one row per image" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    indexed = run_cli(*args, "--crop-margin", "0", "--no-progress", check=True)
    assert "1 added" in indexed.stderr
    photo().crop(OBJECT).save(tmp_path / "cropped.png")
    expected = l2_normalize(embed_file(tmp_path / "cropped.png", tiny_clip, tmp_path).astype(np.float64))
    assert np.allclose(
        row_vectors(SearchCollection("default", tmp_path / "s"))[str(tmp_path / "tray.png")], expected, atol=1e-5
    )
