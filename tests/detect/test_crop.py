"""--crop: the object's box is what gets embedded and classified, not the photo. A crop's
embedding equals embedding the cropped image saved as a file; EXIF-rotated photos crop the upright
region; crops are cached by image and box; records say which box they came from."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import iconograph as ig
from iconograph.boxes import Detections
from iconograph.reading.decode import read_image
from tests.conftest import run_cli

OBJECT = (40, 22, 90, 64)  # x1, y1, x2, y2 in the upright photo
SMALL = (5, 70, 25, 85)


def photo(width: int = 128, height: int = 96) -> Image.Image:
    """Noise with a red square (the object) and a small blue one."""
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = OBJECT
    pixels[y1:y2, x1:x2] = (220, 30, 30)
    x1, y1, x2, y2 = SMALL
    pixels[y1:y2, x1:x2] = (30, 30, 220)
    return Image.fromarray(pixels)


def box_file(path, images, boxes=(OBJECT, SMALL), masks=None):
    records = []
    for image in images:
        detections = Detections.from_labels(list(boxes), ["coin"] * len(boxes), [0.9, 0.8][: len(boxes)])
        rows = detections.to_records()
        for row, mask in zip(rows, masks or []):
            row["segmentation"] = mask
        records.append({"path": str(image), "boxes": rows, "error": None})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def embed_file(path, tiny_clip, tmp_path):
    options = {"store": tmp_path / "plain", "runtime": "torch", "exact_decode": True}
    return ig.Embedder(str(tiny_clip), **options).embed_images([str(path)]).vectors[0]


@pytest.fixture
def options(tiny_clip, tmp_path):
    return {"model": str(tiny_clip), "store": tmp_path / "s", "runtime": "torch"}


def test_crop_embedding_equals_embedding_the_cropped_file(tiny_clip, options, tmp_path):
    image = tmp_path / "tray.png"
    photo().save(image)
    boxes = box_file(tmp_path / "boxes.jsonl", [image])
    found = ig.embed([image], crop=boxes, crop_margin=0.1, **options)
    assert found.paths == [str(image)] and found.boxes == [list(map(float, OBJECT))]  # the largest box
    expected = photo().crop((35, 17, 95, 69))  # widened by 10% of 50x42 px, rounded outwards
    expected.save(tmp_path / "cropped.png")
    assert np.allclose(found.vectors[0], embed_file(tmp_path / "cropped.png", tiny_clip, tmp_path), atol=1e-6)

    each = ig.embed([image], crop=boxes, crop_mode="each", crop_margin=0.0, **options)
    assert each.boxes == [list(map(float, OBJECT)), list(map(float, SMALL))]
    photo().crop(SMALL).save(tmp_path / "small.png")
    assert np.allclose(each.vectors[1], embed_file(tmp_path / "small.png", tiny_clip, tmp_path), atol=1e-6)
    assert not np.allclose(each.vectors[0], each.vectors[1])

    from iconograph.engine.embed import write_embeddings

    write_embeddings(each, tmp_path / "each.jsonl")
    write_embeddings(each, tmp_path / "each.npz")
    lines = [json.loads(line) for line in (tmp_path / "each.jsonl").read_text().splitlines()]
    assert [line["box"] for line in lines] == each.boxes
    assert np.array_equal(np.load(tmp_path / "each.npz")["boxes"], np.array(each.boxes))

    again = ig.embed([image], crop=boxes, crop_mode="each", crop_margin=0.0, **options)
    assert (again.computed, again.cached) == (0, 2) and np.array_equal(again.vectors, each.vectors)
    moved = box_file(tmp_path / "moved.jsonl", [image], boxes=(OBJECT, (6, 70, 25, 85)))
    changed = ig.embed([image], crop=moved, crop_mode="each", crop_margin=0.0, **options)
    assert (changed.computed, changed.cached) == (1, 1)  # only the moved box is embedded again


def test_exif_rotated_photo_crops_the_upright_region(tiny_clip, options, tmp_path):
    upright = photo()
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # EXIF orientation 6 turns it back upright
    exif = Image.Exif()
    exif[0x0112] = 6
    image = tmp_path / "turned.jpg"
    stored.save(image, quality=95, exif=exif)
    decoded = read_image(image).image
    assert decoded.size == upright.size
    boxes = box_file(tmp_path / "boxes.jsonl", [image], boxes=(OBJECT,))
    found = ig.embed([image], crop=boxes, crop_margin=0.0, **options)
    decoded.crop(OBJECT).save(tmp_path / "cropped.png")
    assert np.abs(np.asarray(Image.open(tmp_path / "cropped.png"), float) - (220, 30, 30)).mean() < 12  # the object
    assert np.allclose(found.vectors[0], embed_file(tmp_path / "cropped.png", tiny_clip, tmp_path), atol=1e-6)


def test_classify_crop_records_masks_and_missing_boxes(tiny_clip, options, tmp_path):
    image, empty = tmp_path / "tray.png", tmp_path / "nothing.png"
    photo().save(image)
    photo().save(empty)
    inside = np.zeros((96, 128), bool)
    inside[30:60, 50:80] = True
    masks = [Detections.from_masks(inside[None], ["coin"]).to_records()[0]["segmentation"]]
    boxes = box_file(tmp_path / "boxes.jsonl", [image], boxes=(OBJECT,), masks=masks)
    labels = ["red", "blue"]
    crops = ig.classify([image, empty], labels, crop=boxes, crop_mask=True, crop_margin=0.0, **options)
    assert crops[0].box == tuple(map(float, OBJECT)) and crops[1].error == "no box to crop"
    assert crops[0].to_record()["box"] == list(map(float, OBJECT))
    blanked = np.asarray(photo()).copy()
    blanked[~inside] = 0
    Image.fromarray(blanked).crop(OBJECT).save(tmp_path / "masked.png")
    plain = ig.classify([tmp_path / "masked.png"], labels, **{**options, "exact_decode": True})
    assert [ls.label for ls in crops[0].labels] == [ls.label for ls in plain[0].labels]
    assert np.allclose([ls.score for ls in crops[0].labels], [ls.score for ls in plain[0].labels], atol=1e-5)

    out = tmp_path / "out.jsonl"
    args = ["classify", image, empty, "--labels", "red,blue", "--model", tiny_clip, "--store", tmp_path / "s"]
    result = run_cli(*args, "--crop", boxes, "--crop-mode", "each", "--out", out, "--runtime", "torch")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]["box"] == list(map(float, OBJECT)) and records[1]["error"] == "no box to crop"


def test_crop_query_uses_the_detectors_boxes(tiny_clip, tiny_owlvit, options, tmp_path):
    image = tmp_path / "tray.png"
    photo().save(image)
    found = ig.detect([image], ["coin"], model=str(tiny_owlvit), store=options["store"], threshold=0.1)[0].detections
    assert len(found) > 1
    crops = ig.embed([image], crop_query="coin", detector=str(tiny_owlvit), crop_mode="each", **options)
    assert crops.boxes == [list(b) for b in found.sorted().xyxy.tolist()]
    largest = ig.embed([image], crop_query="coin", detector=str(tiny_owlvit), **options)
    areas = (found.xyxy[:, 2] - found.xyxy[:, 0]) * (found.xyxy[:, 3] - found.xyxy[:, 1])
    assert largest.boxes == [found.xyxy[int(np.argmax(areas))].tolist()]


def test_predict_with_a_trained_model_classifies_the_crop(tiny_clip, options, tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(16):
        colour = "red" if i % 2 else "blue"
        pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        pixels[8:32, 8:32] = (220, 30, 30) if colour == "red" else (30, 30, 220)
        Image.fromarray(pixels).save(tmp_path / f"{colour}-{i}.png")
        rows.append(f"{tmp_path / f'{colour}-{i}.png'},{colour}")
    (tmp_path / "truth.csv").write_text("path,labels\n" + "\n".join(rows) + "\n")
    model = ig.train(
        tmp_path / "truth.csv", backbone=str(tiny_clip), out=tmp_path / "model", store=options["store"], workers=0
    )
    image = tmp_path / "tray.png"
    photo().save(image)
    boxes = box_file(tmp_path / "boxes.jsonl", [image])
    found = model.predict([image], crop=boxes, crop_mode="each", crop_margin=0.0, store=options["store"])
    assert [p.box for p in found] == [tuple(map(float, OBJECT)), tuple(map(float, SMALL))]
    photo().crop(SMALL).save(tmp_path / "small.png")
    plain = model.predict([tmp_path / "small.png"], store=options["store"], exact_decode=True)[0]
    assert [ls.label for ls in found[1].labels] == [ls.label for ls in plain.labels]
    assert np.allclose([ls.score for ls in found[1].labels], [ls.score for ls in plain.labels], atol=1e-5)


def test_train_on_crops_equals_training_on_the_cropped_files(tiny_clip, options, tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "trays").mkdir()
    (tmp_path / "cropped").mkdir()
    records, tray_rows, crop_rows = [], [], []
    for i in range(16):
        colour = "red" if i % 2 else "blue"
        pixels = rng.integers(0, 255, (60, 70, 3), dtype=np.uint8)
        box = (10 + i, 8 + i // 2, 40 + i, 38 + i // 2)
        pixels[box[1] : box[3], box[0] : box[2]] = (220, 30, 30) if colour == "red" else (30, 30, 220)
        tray, cropped = tmp_path / "trays" / f"{i:02d}.png", tmp_path / "cropped" / f"{i:02d}.png"
        Image.fromarray(pixels).save(tray)
        Image.fromarray(pixels).crop(box).save(cropped)
        records.append({"path": str(tray), "boxes": Detections.from_labels([box], ["coin"], [0.9]).to_records()})
        tray_rows.append(f"{tray},{colour}")
        crop_rows.append(f"{cropped},{colour}")
    (tmp_path / "boxes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "trays.csv").write_text("path,labels\n" + "\n".join(tray_rows) + "\n")
    (tmp_path / "crops.csv").write_text("path,labels\n" + "\n".join(crop_rows) + "\n")
    common = {"backbone": str(tiny_clip), "store": options["store"], "workers": 0, "exact_decode": True}
    on_crops = ig.train(tmp_path / "trays.csv", crop=tmp_path / "boxes.jsonl", crop_margin=0.0, **common)
    on_files = ig.train(tmp_path / "crops.csv", **common)
    assert on_crops.info["training"]["crop"]["boxes"] == str(tmp_path / "boxes.jsonl")
    assert on_crops.info["splits"] == on_files.info["splits"]
    probe = np.random.default_rng(3).normal(size=(5, 16)).astype(np.float32)
    assert np.allclose(on_crops.head.predict_proba(probe), on_files.head.predict_proba(probe), atol=1e-6)
    assert on_crops.info["metrics"]["test"] == on_files.info["metrics"]["test"]


def test_the_ray_engine_refuses_crops(tiny_clip, options, tmp_path):
    from iconograph.errors import OptionError

    image = tmp_path / "tray.png"
    photo().save(image)
    boxes = box_file(tmp_path / "boxes.jsonl", [image])
    with pytest.raises(OptionError, match="crops"):
        ig.embed([image], crop=boxes, engine="ray", **options)
