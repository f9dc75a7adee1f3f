"""The detector and the captioner load their models as load_model does: same errors, content-keyed caches."""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.conftest import run_cli


@pytest.mark.parametrize("command", [["detect", "--queries", "raccoon"], ["caption"]])
@pytest.mark.parametrize("spec", ["missing-folder", "folder-without-config", "org/not-in-the-cache"])
def test_a_missing_model_is_the_one_line_error_of_load_model(command, spec, raccoon_images, tmp_path):
    from iconograph.backends import ModelNotFoundError, load_model

    spec = {"missing-folder": str(tmp_path / "nonexistent"), "folder-without-config": str(tmp_path)}.get(spec, spec)
    with pytest.raises(ModelNotFoundError) as expected:
        load_model(spec)
    result = run_cli(command[0], raccoon_images[0], *command[1:], "--model", spec)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: {expected.value.cli_line()}\n"  # Python says "as the model"
    assert spec in result.stderr and "--model DIR" in result.stderr


def owl_key(directory):
    from iconograph.detection import OwlDetector

    return OwlDetector(str(directory), queries=["raccoon"], device="cpu").prepare().cache_name


def caption_key(directory):
    from iconograph.description.captions import Captioner

    return Captioner(str(directory), device="cpu").cache_name


def embedding_key(directory):
    from iconograph.backends import load_model

    return load_model(str(directory)).cache_key


@pytest.mark.parametrize(
    "model_fixture, auto_class, cache_key",
    [
        ("tiny_owlvit", "AutoModelForZeroShotObjectDetection", owl_key),
        ("tiny_blip", "AutoModelForImageTextToText", caption_key),
        ("tiny_clip", "AutoModel", embedding_key),
    ],
)
def test_the_cache_key_changes_when_one_weight_changes(model_fixture, auto_class, cache_key, request, tmp_path):
    import transformers

    directory = shutil.copytree(request.getfixturevalue(model_fixture), tmp_path / "model")
    before = cache_key(directory)
    assert cache_key(directory) == before  # stable while nothing changes

    model = getattr(transformers, auto_class).from_pretrained(directory)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1.0
    model.save_pretrained(directory)
    assert cache_key(directory) != before
