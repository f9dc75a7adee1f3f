"""Fixtures for detection, captioning and description tests: tiny random models, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RACCOON


@pytest.fixture(scope="session")
def tiny_owlvit(tmp_path_factory) -> Path:
    from iconograph.testing import save_tiny_owlvit

    return save_tiny_owlvit(tmp_path_factory.mktemp("models") / "tiny-owlvit", version=1)


@pytest.fixture(scope="session")
def tiny_owlv2(tmp_path_factory) -> Path:
    from iconograph.testing import save_tiny_owlvit

    return save_tiny_owlvit(tmp_path_factory.mktemp("models") / "tiny-owlv2", version=2)


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory) -> Path:
    from iconograph.testing import save_tiny_blip

    return save_tiny_blip(tmp_path_factory.mktemp("models") / "tiny-blip")


@pytest.fixture(scope="session")
def raccoon_images() -> list[Path]:
    """Four real photos of different sizes, landscape and portrait."""
    names = ["raccoon-1.jpg", "raccoon-12.jpg", "raccoon-103.jpg", "raccoon-35.jpg"]
    return [RACCOON / "images" / name for name in names]


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory) -> Path:
    from iconograph.testing import save_tiny_sam

    return save_tiny_sam(tmp_path_factory.mktemp("models") / "tiny-sam")


@pytest.fixture(scope="session")
def tiny_clipseg(tmp_path_factory) -> Path:
    from iconograph.testing import save_tiny_clipseg

    return save_tiny_clipseg(tmp_path_factory.mktemp("models") / "tiny-clipseg")


@pytest.fixture(scope="session")
def tiny_sam3(tmp_path_factory) -> Path:
    from iconograph.testing import save_tiny_sam3

    return save_tiny_sam3(tmp_path_factory.mktemp("models") / "tiny-sam3")


@pytest.fixture(scope="session")
def tiny_sam2(tmp_path_factory) -> Path:
    from iconograph.testing import save_tiny_sam2

    return save_tiny_sam2(tmp_path_factory.mktemp("models") / "tiny-sam2")
