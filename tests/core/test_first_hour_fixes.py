"""What a newcomer ran into (issue 14): all-failed embeddings, model errors, int8 advice, ONNX sidecar."""

from __future__ import annotations

import logging

import pytest

import iconograph as ig
from iconograph.backends import load_model
from iconograph.backends.base import ModelNotFoundError
from tests.conftest import cifar_images, run_cli


def test_embedder_with_every_image_failing_keeps_the_model_width(tiny_clip, tmp_path):
    embedder = ig.Embedder(load_model(str(tiny_clip)), store=tmp_path / "store", workers=0)
    width = embedder.embed_images([str(cifar_images(per_class=1)[0])]).vectors.shape[1]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    result = ig.Embedder(load_model(str(tiny_clip)), store=tmp_path / "store", workers=0).embed_images(
        [str(tmp_path / "broken.jpg"), str(tmp_path / "missing.jpg")]
    )
    assert width > 0 and result.vectors.shape == (2, width)
    assert not result.vectors.any() and all(result.errors)


def test_missing_model_speaks_python_in_python_and_cli_on_the_command_line(tmp_path):
    with pytest.raises(ModelNotFoundError) as caught:
        load_model(str(tmp_path / "no-such-model"))
    assert "--model" not in str(caught.value) and "as the model" in str(caught.value)
    (tmp_path / "a.jpg").write_bytes(cifar_images(per_class=1)[0].read_bytes())
    result = run_cli("classify", tmp_path / "a.jpg", "--labels", "cat,dog", "--model", tmp_path / "no-such-model")
    assert result.returncode == 2
    assert "pass a local folder with --model DIR" in result.stderr and "Traceback" not in result.stderr


def tiny_onnx(path):
    import torch

    torch.onnx.export(torch.nn.Linear(64, 64), (torch.zeros(2, 64),), str(path), dynamo=False)
    return path


def test_int8_quantisation_gives_no_preprocessing_advice(tmp_path, capfd, caplog):
    pytest.importorskip("onnxruntime")
    from iconograph.engine.onnx_runtime import quantized

    handlers = list(logging.getLogger().handlers)
    with caplog.at_level(logging.WARNING):
        target = quantized(tiny_onnx(tmp_path / "g.onnx"))
    assert target.is_file()
    err = capfd.readouterr().err
    assert "pre-processing" not in err and not any("pre-processing" in r.getMessage() for r in caplog.records)
    assert logging.getLogger().handlers == handlers
    logging.getLogger().warning("other warnings still pass")
    assert "other warnings still pass" in caplog.text


def test_export_onnx_writes_the_sidecar_named_after_the_graph(tmp_path):
    pytest.importorskip("onnxruntime")
    from iconograph.backends.onnx import export_onnx
    from iconograph.testing import save_tiny_timm

    graph = export_onnx(f"timm:{save_tiny_timm(tmp_path / 'timm')}", tmp_path / "exported" / "backbone.onnx")
    assert (tmp_path / "exported" / "backbone.json").is_file()
    assert load_model(f"onnx:{graph}").fingerprint
