"""Decoding at the size the model needs (issue 10): large images are decoded at reduced scale,
never below twice the model's resize target; small images and ``exact_decode=True`` are exact."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import iconograph as ig
from iconograph.backends import load_model
from iconograph.reading.decode import content_hash, decode_bytes, read_image
from tests.conftest import IMAGENET_SAMPLES

# The documented bound of the fast path on the model input (README, "Decoding at the size the model needs").
MIN_PSNR_DB = 35.0
MIN_COSINE = 0.999


def photo(width: int, height: int, index: int = 0) -> Image.Image:
    """A real photo upscaled to ``width`` x ``height`` (bicubic), as a camera-size image."""
    source = sorted(IMAGENET_SAMPLES.glob("*.JPEG"))[index]
    return Image.open(source).convert("RGB").resize((width, height), Image.Resampling.BICUBIC)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def pixels01(tensor: torch.Tensor, processor) -> np.ndarray:
    """A normalised model input back on the 0..1 pixel scale."""
    mean = torch.tensor(processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1)
    return (tensor * std + mean).numpy()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("camera")
    paths = []
    for index in range(3):
        path = folder / f"camera{index}.jpg"
        photo(3000, 2000, index).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def test_large_photo_reduced_decode_stays_within_the_documented_bound(photos):
    from transformers import CLIPImageProcessor

    # ViT-B/32's preprocessing: shortest edge 224, centre crop 224; reduced no lower than 448.
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    for path in photos:
        data = path.read_bytes()
        fast_image = decode_bytes(data, min_size=448)
        assert 448 <= min(fast_image.size) < 2 * 448 and fast_image.size == (750, 500)  # 1/4 by DCT scaling
        exact, fast = (processor(images=[decode_bytes(data, min_size=m)], return_tensors="pt")["pixel_values"][0]
                       for m in (None, 448))  # fmt: skip
        assert fast.shape == exact.shape == (3, 224, 224)
        a, b = pixels01(exact, processor), pixels01(fast, processor)
        assert psnr(a, b) >= MIN_PSNR_DB
        assert np.abs(a - b).max() * 255 <= 40  # a few edge pixels; the PSNR is the bound


def test_tiny_model_embeddings_of_large_photos_agree(tmp_path, tiny_clip, photos):
    fast = ig.Embedder(str(tiny_clip), use_cache=False, workers=0, store=tmp_path)
    exact = ig.Embedder(str(tiny_clip), use_cache=False, workers=0, store=tmp_path, exact_decode=True)
    assert fast.decode_min_size() == 64 and exact.decode_min_size() is None
    a, b = (e.embed_images(photos).vectors for e in (exact, fast))
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= MIN_COSINE
    assert not np.array_equal(a, b)  # the fast path really ran


def test_exif_rotated_large_jpeg_is_upright_on_the_fast_path(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees clockwise (portrait)
    path = tmp_path / "rotated.jpg"
    photo(3000, 2000).save(path, "JPEG", quality=90, exif=exif)
    exact = read_image(path).image
    fast = read_image(path, min_size=448).image
    assert exact.size == (2000, 3000)
    assert fast.size[0] < fast.size[1] and min(fast.size) >= 448  # portrait, like the exact path
    assert abs(fast.size[0] / fast.size[1] - 2 / 3) < 0.01
    reference = np.asarray(exact.resize(fast.size, Image.Resampling.BOX)) / 255
    assert psnr(reference, np.asarray(fast) / 255) >= 30
    wrong_way = np.asarray(exact.transpose(Image.Transpose.ROTATE_180).resize(fast.size, Image.Resampling.BOX)) / 255
    assert psnr(reference, np.asarray(fast) / 255) > psnr(wrong_way, np.asarray(fast) / 255) + 5


def _formats(folder) -> dict[str, bytes]:
    big = photo(1200, 800)
    files = {}
    buffer = io.BytesIO()
    big.convert("CMYK").save(buffer, "JPEG", quality=90)
    files["cmyk.jpg"] = buffer.getvalue()
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90, progressive=True)
    files["progressive.jpg"] = buffer.getvalue()
    buffer = io.BytesIO()
    grey = np.asarray(big.convert("L")).astype(np.uint16) * 257  # the full 16-bit range
    Image.fromarray(grey).save(buffer, "PNG")
    files["deep16.png"] = buffer.getvalue()
    buffer = io.BytesIO()
    palette = big.quantize(255)
    palette.putpalette(palette.getpalette()[: 255 * 3] + [0, 0, 0])  # index 255: black, but transparent
    palette.paste(255, (600, 0, 1200, 800))  # right half: the transparent index
    palette.save(buffer, "PNG", transparency=255)
    files["palette_alpha.png"] = buffer.getvalue()
    buffer = io.BytesIO()
    big.putalpha(128)
    big.save(buffer, "PNG")
    files["rgba.png"] = buffer.getvalue()
    return files


@pytest.mark.parametrize("name", ["cmyk.jpg", "progressive.jpg", "deep16.png", "palette_alpha.png", "rgba.png"])
def test_awkward_formats_decode_alike_on_the_fast_path(tmp_path, name):
    data = _formats(tmp_path)[name]
    exact = decode_bytes(data)
    fast = decode_bytes(data, min_size=150)
    assert fast.mode == "RGB" and exact.size == (1200, 800)
    assert 150 <= min(fast.size) < 300 and abs(fast.size[0] / fast.size[1] - 1.5) < 0.02
    reference = np.asarray(exact.resize(fast.size, Image.Resampling.BOX)) / 255
    assert psnr(reference, np.asarray(fast) / 255) >= 28, name
    if name == "palette_alpha.png":
        right = np.asarray(fast)[:, fast.size[0] * 3 // 4 :]
        assert (right == 255).all()  # the transparent half, composited on white


def test_small_images_are_decoded_bit_identically():
    for path in sorted(IMAGENET_SAMPLES.glob("*.JPEG"))[:10]:
        data = path.read_bytes()
        exact = decode_bytes(data)
        assert min(exact.size) < 2 * 448  # ImageNet-size: nothing to reduce for a 224 px model
        assert np.array_equal(np.asarray(decode_bytes(data, min_size=448)), np.asarray(exact))


def test_content_hash_is_the_hash_of_the_file_bytes(photos):
    assert read_image(photos[0], min_size=64).content_hash == content_hash(photos[0].read_bytes())


def test_exact_decode_is_bit_identical_to_full_size_decoding(tmp_path, tiny_clip, photos):
    images = [*photos, *sorted(IMAGENET_SAMPLES.glob("*.JPEG"))[:2]]
    embedder = ig.Embedder(str(tiny_clip), use_cache=False, workers=0, batch_size=len(images), exact_decode=True)
    got = embedder.embed_images(images).vectors
    backend = load_model(str(tiny_clip), "cpu")
    preprocess = backend.make_preprocess()
    pixels = torch.stack([preprocess(decode_bytes(p.read_bytes())) for p in images])
    np.testing.assert_array_equal(got, backend.encode_images(pixels).numpy())


def test_fast_and_exact_embeddings_have_different_cache_keys(tmp_path, tiny_clip, photos):
    store = tmp_path / "store"
    fast = ig.Embedder(str(tiny_clip), store=store, workers=0)
    exact = ig.Embedder(str(tiny_clip), store=store, workers=0, exact_decode=True)
    assert fast.image_cache.name != exact.image_cache.name
    assert exact.image_cache.name == f"image_{exact.model.cache_key}"  # exact keeps the existing caches
    first = fast.embed_images(photos).vectors
    assert exact.embed_images(photos).computed == len(photos)  # nothing taken from the fast cache
    again = ig.Embedder(str(tiny_clip), store=store, workers=0)
    assert again.embed_images(photos).cached == len(photos)
    np.testing.assert_array_equal(again.embed_images(photos).vectors, first)


def test_resize_targets_of_each_backend(tmp_path, tiny_clip):
    from iconograph.testing import save_tiny_open_clip, save_tiny_siglip, save_tiny_timm

    assert load_model(str(tiny_clip), "cpu").decode_min_size() == 64  # shortest_edge 32, crop 32
    assert load_model(str(save_tiny_siglip(tmp_path / "s")), "cpu").decode_min_size() == 64  # 32 x 32
    assert load_model(str(save_tiny_open_clip(tmp_path / "o")), "cpu").decode_min_size() == 64
    assert load_model(str(save_tiny_timm(tmp_path / "t")), "cpu").decode_min_size() == 64


def test_embed_cli_decodes_reduced_by_default_and_exactly_with_exact_decode(tmp_path, tiny_clip, photos):
    from tests.conftest import run_cli

    expected = {
        exact: ig.Embedder(str(tiny_clip), use_cache=False, workers=0, exact_decode=exact).embed_images(photos).vectors
        for exact in (False, True)
    }
    store = tmp_path / "store"
    for exact in (False, True):
        out = tmp_path / f"v{int(exact)}.npz"
        run_cli("embed", *photos, "--model", tiny_clip, "--store", store, "--out", out,
                *(["--exact-decode"] if exact else []), check=True)  # fmt: skip
        np.testing.assert_allclose(np.load(out)["vectors"], expected[exact], atol=1e-6)
