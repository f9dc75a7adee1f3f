"""segment with word prompts: SAM3 instance masks and CLIPSeg semantic masks equal what the
transformers models and processors give for the same image and words; cached by words and image;
bad images are error records; the model type picks the path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import iconograph as ig
from iconograph.reading.decode import read_image
from tests.conftest import run_cli

WORDS = ["raccoon", "tree"]


@pytest.fixture
def images(raccoon_images):
    return raccoon_images[:2]


def sam3_reference(model_dir, image, words, threshold, mask_threshold):
    """Per word, as the transformers docs show it: processor(images, text) -> Sam3Model ->
    post_process_instance_segmentation at the image size. (word, score, mask) per instance."""
    from transformers import Sam3Model, Sam3Processor

    model = Sam3Model.from_pretrained(model_dir).eval()
    processor = Sam3Processor.from_pretrained(model_dir)
    found = []
    for word in words:
        inputs = processor(images=image, text=word, return_tensors="pt")
        with torch.no_grad():
            output = model(**inputs)
        result = processor.post_process_instance_segmentation(
            output, threshold=threshold, mask_threshold=mask_threshold, target_sizes=[image.size[::-1]]
        )[0]
        found += [(word, float(s), m.numpy().astype(bool)) for s, m in zip(result["scores"], result["masks"])]
    return sorted(found, key=lambda f: -f[1])


def clipseg_reference(model_dir, image, words):
    """CLIPSeg as its docs show it (one image copy per word, padding to max length), the logits
    resized to the image bilinearly and through a sigmoid: (words, h, w) probabilities."""
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    model = CLIPSegForImageSegmentation.from_pretrained(model_dir).eval()
    processor = CLIPSegProcessor.from_pretrained(model_dir)
    inputs = processor(text=words, images=[image] * len(words), padding="max_length", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    width, height = image.size
    resized = torch.nn.functional.interpolate(logits[:, None], size=(height, width), mode="bilinear")
    return torch.sigmoid(resized[:, 0]).numpy()


def assert_nearly_same_mask(ours: np.ndarray, reference: np.ndarray):
    assert ours.shape == reference.shape
    assert (ours != reference).mean() < 1e-3  # batched vs per-word float noise at the threshold only


def test_sam3_masks_and_scores_equal_transformers(tiny_sam3, images, tmp_path):
    results = ig.segment(images, queries=WORDS, model=str(tiny_sam3), threshold=0.251, store=tmp_path / "s")
    for result, path in zip(results, images):
        image = read_image(path).image
        reference = sam3_reference(tiny_sam3, image, WORDS, 0.251, 0.5)
        assert 0 < len(reference) < 2 * 10  # some instances pass the threshold, not all
        found = result.detections
        assert found.labels == [word for word, _, _ in reference]
        assert np.allclose(found.scores, [score for _, score, _ in reference], atol=1e-5)
        masks = found.mask_array()
        for mask, (_, _, expected) in zip(masks, reference):
            assert_nearly_same_mask(mask, expected)
        boxes = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] for ys, xs in (np.nonzero(m) for m in masks)]
        assert np.allclose(found.xyxy, boxes)  # the tight box around each mask


def test_clipseg_masks_and_scores_equal_transformers(tiny_clipseg, images, tmp_path):
    results = ig.segment(images, queries="raccoon,tree", model=str(tiny_clipseg), store=tmp_path / "s")
    for result, path in zip(results, images):
        image = read_image(path).image
        probabilities = clipseg_reference(tiny_clipseg, image, WORDS)
        expected = probabilities > 0.5
        assert 0 < expected.mean() < 1
        found = result.detections
        assert sorted(found.labels) == WORDS
        for label, score, mask in zip(found.labels, found.scores, found.mask_array()):
            row = WORDS.index(label)
            assert_nearly_same_mask(mask, expected[row])
            assert score == pytest.approx(probabilities[row].max(), abs=1e-5)


def test_cli_words_cache_errors_and_usage(tiny_clipseg, images, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    args = ["segment", *images, bad, "--queries", "raccoon,tree", "--model", tiny_clipseg, "--store", tmp_path / "s"]
    first = run_cli(*args, "--out", tmp_path / "a.jsonl", check=True)
    assert "3 images: 2 ok, 1 failed; 2 computed, 0 from cache; 4 masks" in first.stderr
    records = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert records[-1]["error"] and records[-1]["boxes"] == []
    box = records[0]["boxes"][0]
    assert set(box) == {"label", "score", "xyxy", "segmentation"}
    assert box["segmentation"]["size"] == [417, 650]

    again = run_cli(*args, "--out", tmp_path / "b.jsonl", check=True)
    assert "0 computed, 2 from cache" in again.stderr
    assert (tmp_path / "b.jsonl").read_text() == (tmp_path / "a.jsonl").read_text()
    from iconograph.segmentation import run_segmentation

    options = {"model": str(tiny_clipseg), "store": tmp_path / "s"}
    other = run_segmentation(images, queries="raccoon", out=tmp_path / "c.jsonl", **options)
    assert (other.computed, other.cached) == (2, 0)  # other words: computed again
    run_segmentation(images, queries=WORDS, out=tmp_path / "maps", format="png", **options)
    assert (tmp_path / "maps" / "classes.txt").read_text() == "raccoon\ntree\n"

    from iconograph.errors import OptionError

    with pytest.raises(OptionError, match="--queries"):  # a word model takes words, not boxes
        ig.segment(images[:1], boxes=tmp_path / "a.jsonl", model=str(tiny_clipseg))
