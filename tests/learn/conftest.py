"""Fixtures for the learning tests: a tiny timm backbone, CIFAR subsets, a tiled multi-label set."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CIFAR_TEST, CIFAR_TRAIN

CLASSES = ("airplane", "automobile", "frog", "ship")
TILE_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "frog", "ship", "truck")


@pytest.fixture(scope="session")
def tiny_timm(tmp_path_factory) -> Path:
    """timm's test_vit at 32 px (8-px patches), random weights, as a save_for_hf folder."""
    from iconograph.testing import save_tiny_timm

    return save_tiny_timm(tmp_path_factory.mktemp("models") / "tiny-vit")


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory) -> Path:
    """One embedding store for the session, so tests that embed the same images share the cache."""
    return tmp_path_factory.mktemp("store")


def write_truth(path: Path, rows) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels"])
        for image, labels in rows:
            writer.writerow([str(image), ";".join(labels) if not isinstance(labels, str) else labels])
    return path


def cifar_rows(split: str = "train", per_class: int = 60, classes=CLASSES, offset: int = 0):
    root = CIFAR_TRAIN if split == "train" else CIFAR_TEST
    return [(p, c) for c in classes for p in sorted((root / c).glob("*.jpg"))[offset : offset + per_class]]


@pytest.fixture(scope="session")
def cifar_truth(tmp_path_factory) -> Path:
    """400 CIFAR-10 training images of 4 classes (100 each) as a truth CSV."""
    return write_truth(tmp_path_factory.mktemp("cifar") / "truth.csv", cifar_rows(per_class=100))


@pytest.fixture(scope="session")
def tiled_truth(tmp_path_factory) -> Path:
    """A multi-label set: CIFAR images tiled 2x2 (64 px), labels = the union of the tiles' classes."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tiled")
    pool = cifar_rows(per_class=60, classes=TILE_CLASSES)
    rng = np.random.default_rng(0)
    rows = []
    for n in range(360):
        picks = [pool[i] for i in rng.choice(len(pool), size=4, replace=False)]
        canvas = Image.new("RGB", (64, 64))
        for k, (path, _) in enumerate(picks):
            canvas.paste(Image.open(path).convert("RGB"), ((k % 2) * 32, (k // 2) * 32))
        image = root / f"tile{n:04d}.png"
        canvas.save(image)
        rows.append((image, sorted({label for _, label in picks})))
    return write_truth(root / "truth.csv", rows)
