"""The ONNX Runtime path gives the same embeddings as PyTorch, and is chosen only where it pays."""

import numpy as np
import pytest

import iconograph as ig
from iconograph.testing import save_tiny_open_clip
from tests.conftest import cifar_images


@pytest.mark.parametrize("kind", ["transformers", "open_clip"])
def test_onnx_runtime_matches_torch(tmp_path, tiny_clip, kind):
    model = str(tiny_clip) if kind == "transformers" else str(save_tiny_open_clip(tmp_path / "oc"))
    images = cifar_images(per_class=6)
    torch_run = ig.Embedder(model, store=tmp_path / "a", runtime="torch").embed_images(images)
    onnx_embedder = ig.Embedder(model, store=tmp_path / "b", runtime="onnx")
    onnx_run = onnx_embedder.embed_images(images)
    assert onnx_embedder._onnx, "the ONNX path was not taken"
    assert onnx_embedder._onnx.path.exists()
    np.testing.assert_allclose(onnx_run.vectors, torch_run.vectors, atol=1e-5, rtol=1e-4)


def test_auto_uses_torch_for_small_jobs_without_an_export(tmp_path, tiny_clip):
    embedder = ig.Embedder(str(tiny_clip), store=tmp_path / "s", runtime="auto")
    embedder.embed_images(cifar_images(per_class=2))
    assert not embedder._onnx


def test_unknown_runtime_is_refused(tiny_clip):
    with pytest.raises(ValueError, match="runtime"):
        ig.Embedder(str(tiny_clip), runtime="tensorrt")


def test_int8_runtime_is_close_to_fp32_and_keeps_a_cache_of_its_own(tmp_path, tiny_clip):
    images = cifar_images(per_class=6)
    store = tmp_path / "store"
    fp32 = ig.Embedder(str(tiny_clip), store=store, runtime="onnx").embed_images(images)
    int8_embedder = ig.Embedder(str(tiny_clip), store=store, runtime="onnx-int8")
    int8 = int8_embedder.embed_images(images)
    assert int8.computed == len(images)  # not served from the fp32 cache
    assert int8_embedder._onnx.path.name.endswith(".int8.onnx")
    cosine = (
        (fp32.vectors * int8.vectors).sum(1)
        / np.linalg.norm(fp32.vectors, axis=1)
        / np.linalg.norm(int8.vectors, axis=1)
    )
    assert cosine.min() > 0.95 and not np.allclose(fp32.vectors, int8.vectors, atol=1e-6)
    again = ig.Embedder(str(tiny_clip), store=store, runtime="onnx-int8").embed_images(images)
    assert again.cached == len(images) and np.array_equal(again.vectors, int8.vectors)
