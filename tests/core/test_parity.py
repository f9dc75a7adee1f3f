"""Correctness pinned to the reference implementations on the same tiny models and images.

The ImageNet samples are large for the tiny 32-pixel models, so these runs decode exactly
(``--exact-decode``): the default reduced decode is checked against exact in test_decode_fast.py.
"""

import json

import numpy as np
import pytest
from PIL import Image

import iconograph as ig
from iconograph.testing import save_tiny_open_clip, save_tiny_siglip
from tests.conftest import IMAGENET_SAMPLES, cifar_images, run_cli

LABELS = ["cat", "dog", "bird", "ship"]


@pytest.fixture(scope="module")
def images():
    return cifar_images(per_class=4) + sorted(IMAGENET_SAMPLES.glob("*.JPEG"))[:4]


def test_classify_matches_transformers_pipeline(tmp_path, tiny_clip, images):
    from transformers import pipeline

    template = "a blurry photo of a {}."
    (tmp_path / "template.txt").write_text(template + "\n")
    out = tmp_path / "preds.jsonl"
    run_cli(
        "classify", *images, "--labels", ",".join(LABELS), "--model", tiny_clip,
        "--templates", tmp_path / "template.txt", "--out", out, "--batch-size", "5", "--exact-decode", check=True,
    )  # fmt: skip
    ours = [json.loads(line) for line in out.read_text().splitlines()]

    reference = pipeline("zero-shot-image-classification", model=str(tiny_clip))
    for record, path in zip(ours, images, strict=True):
        expected = reference(str(path), candidate_labels=LABELS, hypothesis_template=template)
        got = {d["label"]: d["score"] for d in record["labels"]}
        for item in expected:
            assert abs(got[item["label"]] - item["score"]) <= 1e-4
        assert [d["label"] for d in record["labels"]] == [d["label"] for d in expected]


def test_siglip_multi_label_matches_the_pipelines_sigmoid(tmp_path, images):
    from transformers import pipeline

    model_dir = save_tiny_siglip(tmp_path / "siglip")
    predictions = ig.classify(
        images, LABELS, model=str(model_dir), templates=["This is a photo of {}."], multi_label=True,
        threshold=0.0, store=tmp_path / "store", exact_decode=True,
    )  # fmt: skip
    reference = pipeline("zero-shot-image-classification", model=str(model_dir))
    for prediction, path in zip(predictions, images, strict=True):
        expected = {d["label"]: d["score"] for d in reference(str(path), candidate_labels=LABELS)}
        got = dict(prediction.labels)
        assert got.keys() == expected.keys()
        assert max(abs(got[k] - expected[k]) for k in expected) <= 1e-4


def test_open_clip_embeddings_equal_encode_image_on_its_own_preprocessing(tmp_path, images):
    import open_clip
    import torch

    model_dir = save_tiny_open_clip(tmp_path / "oc")
    ours = ig.Embedder(str(model_dir), store=tmp_path / "store", batch_size=3, exact_decode=True).embed_images(images)

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    model.eval()
    with torch.no_grad():
        expected = torch.cat([model.encode_image(preprocess(Image.open(p).convert("RGB"))[None]) for p in images])
    np.testing.assert_allclose(ours.vectors, expected.numpy(), atol=1e-5, rtol=1e-5)


def test_open_clip_text_and_scale(tmp_path):
    import open_clip
    import torch

    model_dir = save_tiny_open_clip(tmp_path / "oc")
    embedder = ig.Embedder(str(model_dir), store=tmp_path / "store")
    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}")
    with torch.no_grad():
        expected = model.eval().encode_text(tokenizer(["a photo of a cat", "an eagle"])).numpy()
    np.testing.assert_allclose(embedder.embed_texts(["a photo of a cat", "an eagle"]), expected, atol=1e-5)
    assert embedder.scoring().logit_scale == pytest.approx(model.logit_scale.exp().item())
