"""One decoding pass over the audited images: content hash, size, perceptual hashes and the
image-quality measures, so each file is read and decoded once.

Measures (on the image shrunk so its longer side is at most :data:`MEASURE_SIDE` px, so they do
not depend on the camera's resolution; luminance is ITU-R 601 ``L`` in 0..1):

- ``luminance``: mean luminance;
- ``contrast``: standard deviation of the luminance;
- ``sharpness``: variance of the 4-neighbour Laplacian of the luminance (in 0..255 units);
- ``colour``: the largest difference between two channels of any pixel, in 0..1.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from iconograph.reading.decode import DecodeError, read_image

MEASURE_SIDE = 512


@dataclass
class ImageFacts:
    path: str
    hash: str | None = None
    size: tuple[int, int] | None = None  # (width, height) after EXIF orientation
    phashes: list[int] = field(default_factory=list)  # upright first, then the variants asked for
    measures: dict = field(default_factory=dict)
    error: str | None = None


def phash_variants(image: Image.Image, rotations: bool) -> list[int]:
    """``imagehash.phash`` (64 bits) of the image, and with ``rotations`` of its 90/180/270 degree
    rotations and of the mirror image and its rotations (8 in all), as integers."""
    import imagehash

    images = [image]
    if rotations:
        mirror = ImageOps.mirror(image)
        images = [image.rotate(angle, expand=True) for angle in (0, 90, 180, 270)]
        images += [mirror.rotate(angle, expand=True) for angle in (0, 90, 180, 270)]
    return [int(str(imagehash.phash(im)), 16) for im in images]


def measure(image: Image.Image) -> dict:
    small = image.copy()
    small.thumbnail((MEASURE_SIDE, MEASURE_SIDE))
    rgb = np.asarray(small, dtype=np.float32)
    lum = np.asarray(small.convert("L"), dtype=np.float32)
    lap = lum[1:-1, :-2] + lum[1:-1, 2:] + lum[:-2, 1:-1] + lum[2:, 1:-1] - 4 * lum[1:-1, 1:-1]
    return {
        "luminance": float(lum.mean() / 255),
        "contrast": float(lum.std() / 255),
        "sharpness": float(lap.var()) if lap.size else 0.0,
        "colour": float((rgb.max(axis=2) - rgb.min(axis=2)).max() / 255),
    }


def image_facts(path: str, rotations: bool = False) -> ImageFacts:
    try:
        decoded = read_image(path)
    except DecodeError as exc:
        return ImageFacts(path, error=str(exc))
    image = decoded.image
    return ImageFacts(path, decoded.content_hash, image.size, phash_variants(image, rotations), measure(image))


def collect_facts(paths: Sequence[str], rotations: bool = False, threads: int = 4) -> list[ImageFacts]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda p: image_facts(p, rotations), paths))
