"""Which files the service may send, and as what: the check before /image and /thumb read one.

The collection maps a user's path to an indexed item (:meth:`SearchCollection.key`); being
indexed is not enough. Every file the path may name must really lie inside the collection's
folders once all links are followed (so a link planted beside the images, or an item replaced
by a link after indexing, leads nowhere), and the item's file must hold a raster image by its
content, whatever its name says: HTML or SVG is never sent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException

from iconograph.reading.decode import DecodeError, image_media_type, read_bytes
from iconograph.search import PathRefused, SearchCollection
from iconograph.search.collection import is_inside
from iconograph.search.thumbs import thumbnail


@dataclass(frozen=True)
class ServableImage:
    path: str  # as the user gave it, for messages
    data: bytes
    media_type: str


def servable_image(collection: SearchCollection, path: str) -> ServableImage:
    """The image file of the item ``path`` names: 403 outside the roots, 404 no item or gone, 415 no image."""
    roots = frozenset(collection.roots)
    # Checked before the lookup, so that a file outside the roots is refused as such (403),
    # indexed or not, rather than reported missing.
    for candidate in collection.candidates(path):
        if os.path.lexists(candidate) and not is_inside(os.path.realpath(candidate), roots):
            raise PathRefused(f"{path}: outside the collection's folders")
    real = Path(os.path.realpath(collection.key(path)))
    if not real.is_file():
        raise HTTPException(404, f"{path}: the file is gone")
    try:
        data = read_bytes(real)
    except DecodeError as exc:
        raise HTTPException(415, f"{path}: {exc}") from None
    media_type = image_media_type(data)
    if media_type is None:
        raise HTTPException(415, f"{path}: not an image")
    return ServableImage(path, data, media_type)


def thumbnail_of(image: ServableImage, size: int, cache_dir: Path) -> bytes:
    """A JPEG thumbnail; 415 for an image Pillow identifies but cannot decode."""
    try:
        return thumbnail(image.data, size, cache_dir)
    except DecodeError as exc:
        raise HTTPException(415, f"{image.path}: {exc}") from None
