"""timm and ONNX image backbones through the model registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iconograph.backends import ModelNotFoundError, load_model
from iconograph.backends.onnx import export_onnx
from iconograph.engine.embed import Embedder
from iconograph.reading.decode import read_image
from tests.conftest import cifar_images, run_cli


def timm_reference(directory, paths):
    """Embeddings computed by timm directly: create_model + its own eval transform."""
    import timm
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model(f"local-dir:{directory}", pretrained=True, num_classes=0).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    pixels = torch.stack([transform(read_image(p).image) for p in paths])
    with torch.inference_mode():
        return model(pixels).numpy()


def test_timm_folder_matches_timm(tiny_timm, tmp_path):
    paths = cifar_images(per_class=4)
    backend = load_model(str(tiny_timm))
    assert backend.name == "timm" and not backend.has_text
    vectors = Embedder(backend, store=tmp_path, workers=0).embed_images(paths).vectors
    np.testing.assert_allclose(vectors, timm_reference(tiny_timm, paths), atol=1e-5)
    with pytest.raises(NotImplementedError, match="no text tower"):
        backend.encode_texts(["a cat"])


def test_timm_checkpoint_spec(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    full = timm.create_model("test_efficientnet", pretrained=False, num_classes=7).eval()  # with a classifier
    checkpoint = tmp_path / "weights.safetensors"
    save_file(full.state_dict(), checkpoint)
    backend = load_model(f"timm:test_efficientnet/{checkpoint}")
    assert backend.data_config["input_size"] == (3, 160, 160)  # timm's default for the architecture
    pixels = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = full.forward_head(full.forward_features(pixels), pre_logits=True)
    np.testing.assert_allclose(backend.encode_images(pixels).numpy(), expected.numpy(), atol=1e-5)
    with pytest.raises(ModelNotFoundError, match="cannot load timm model"):
        load_model(f"timm:test_resnet/{checkpoint}").model  # noqa: B018
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_model(f"timm:test_vit/{tmp_path / 'missing.pth'}")
    with pytest.raises(ModelNotFoundError, match="no architecture"):
        load_model("timm:not_a_real_net")


def test_onnx_export_matches_timm(tiny_timm, tmp_path):
    paths = cifar_images(per_class=4)
    onnx_path = export_onnx(str(tiny_timm), tmp_path / "tiny.onnx")
    sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
    assert sidecar["input_size"] == [3, 32, 32]
    backend = load_model(str(onnx_path))
    assert backend.name == "onnx" and not backend.has_text
    vectors = Embedder(backend, store=tmp_path, workers=0).embed_images(paths).vectors
    np.testing.assert_allclose(vectors, timm_reference(tiny_timm, paths), atol=1e-4)
    assert load_model(f"onnx:{onnx_path}").fingerprint == backend.fingerprint


def test_onnx_without_sidecar_uses_the_graph_input_size(tiny_timm, tmp_path):
    onnx_path = export_onnx(str(tiny_timm), tmp_path / "tiny.onnx")
    onnx_path.with_suffix(".json").unlink()
    backend = load_model(f"onnx:{onnx_path}")
    assert backend.data_config["input_size"] == (3, 32, 32)
    assert backend.data_config["mean"] == (0.485, 0.456, 0.406)  # the documented default


def test_missing_onnx_file_is_one_line(tmp_path):
    result = run_cli("embed", *cifar_images(per_class=1), "--model", tmp_path / "nope.onnx")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ONNX model") and "\n" not in result.stderr.strip()
