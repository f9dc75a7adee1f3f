"""Thumbnails for the review page: decoded through :mod:`iconograph.reading.decode` (EXIF-upright), cached.

The cache is keyed by the file's content hash and the size, so an edited file gets a new
thumbnail and a renamed one keeps its old one.
"""

from __future__ import annotations

import io
from pathlib import Path

from iconograph.engine.files import atomic_write_bytes
from iconograph.reading.decode import content_hash, decode_bytes

THUMB_SIZES = (128, 256, 512)


def thumbnail(data: bytes, size: int, cache_dir: str | Path) -> bytes:
    """JPEG bytes of the image file ``data`` fitted in ``size`` x ``size``; raises DecodeError.

    The caller reads the file (the service first checks that it may be served).
    """
    size = min(THUMB_SIZES, key=lambda s: (s < size, abs(s - size)))  # a few sizes keep the cache small
    cached = Path(cache_dir) / f"{content_hash(data)}_{size}.jpg"
    if cached.exists():
        return cached.read_bytes()
    image = decode_bytes(data)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    atomic_write_bytes(cached, buffer.getvalue())
    return buffer.getvalue()
