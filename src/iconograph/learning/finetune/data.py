"""Images and targets for training. Every image is decoded by :mod:`iconograph.reading.decode`; one
that cannot be read is skipped (counted), never a crashed epoch."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from iconograph.reading.decode import DecodeError, read_image


class ImageDataset(Dataset):
    """(pixels, target) pairs; ``None`` for an image that cannot be decoded.

    With a ``seed`` the transform's randomness is drawn from (seed, index) alone: an image gets
    the same augmentation whichever process or loader worker reads it, so one process and N
    data-parallel ones train on the same pixels.
    """

    def __init__(self, paths: Sequence[str], targets: np.ndarray, transform, seed: int | None = None):
        self.paths = list(paths)
        self.targets = targets
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            image = read_image(self.paths[index]).image
        except DecodeError:
            return None
        if self.seed is None:
            return self.transform(image), torch.as_tensor(self.targets[index])
        return seeded(self.transform, image, self.seed * 1_000_003 + index), torch.as_tensor(self.targets[index])


def seeded(transform, image, seed: int):
    """``transform(image)`` with Python's and torch's generators seeded from ``seed`` for the
    call only (timm's crops draw from the one, torchvision's flips and jitter from the other)."""
    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            torch.manual_seed(seed % 2**63)
            return transform(image)
    finally:
        random.setstate(state)


def collate_skipping_failures(samples):
    """Stack the samples that decoded; the count of the others rides along as the third item."""
    good = [s for s in samples if s is not None]
    failed = len(samples) - len(good)
    if not good:
        return None, None, failed
    return torch.stack([s[0] for s in good]), torch.stack([s[1] for s in good]), failed


def training_transform(data_config: dict, *, scale, hflip: float, color_jitter: float, grayscale_prob: float):
    """timm's training transform: RandomResizedCrop, flip, colour jitter, random grayscale, normalise."""
    from timm.data import create_transform

    return create_transform(
        input_size=tuple(data_config["input_size"]),
        is_training=True,
        scale=tuple(scale),
        hflip=hflip,
        color_jitter=color_jitter,
        grayscale_prob=grayscale_prob,
        interpolation=data_config.get("interpolation", "bilinear"),
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
    )
