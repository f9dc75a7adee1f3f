"""Bytes to an upright 8-bit RGB image, or a one-line reason why not.

Every image iconograph looks at passes through :func:`decode_image`, so that the orientation,
colour conversions and safety limits are the same for classification, detection and search.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from iconograph.errors import one_line as clip_line

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a half-grey image

IMAGE_EXTENSIONS = frozenset(
    [
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".gif",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".ico",
        ".tga",
        ".jp2",
        ".j2k",
        ".psd",
        ".avif",
        ".heic",
        ".heif",
    ]
)

BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white, as catalogue photos are shot


class DecodeError(Exception):
    """An image that cannot be used; ``str(error)`` is a one-line reason."""


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # mode "RGB", EXIF orientation applied
    content_hash: str


def content_hash(data: bytes) -> str:
    """The cache key of a file's content (128-bit BLAKE2b, hex)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    except PermissionError:
        raise DecodeError("permission denied") from None
    except IsADirectoryError:
        raise DecodeError("is a directory") from None
    except OSError as exc:
        raise DecodeError(f"cannot read file: {exc.strerror or exc}") from None


def decode_bytes(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """Decode ``data`` into an RGB image; raise :class:`DecodeError` with a one-line reason.

    ``max_pixels`` defaults to Pillow's decompression-bomb limit; images above it are refused
    (Pillow only warns between 1x and 2x the limit; iconograph refuses both).
    """
    if not data:
        raise DecodeError("empty file (0 bytes)")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if limit and width * height > limit:
                    raise DecodeError(
                        f"image of {width}x{height} pixels exceeds the decompression-bomb limit of {limit} pixels"
                    )
                image.seek(0)  # animated images: the first frame
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError("not a recognised image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"exceeds the decompression-bomb limit: {one_line(exc)}") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, MemoryError) as exc:
        raise DecodeError(f"cannot decode image: {one_line(exc)}") from None


# Pillow's MIME type for a format a browser knows under another name (MPO is a JPEG stream).
_MEDIA_TYPE_OVERRIDES = {"MPO": "image/jpeg"}


def image_media_type(data: bytes) -> str | None:
    """The ``image/...`` media type of the raster format Pillow identifies in ``data``, else None.

    Read from the file's header, never from its name: a file named ``.png`` holding HTML or SVG
    has no image type (Pillow reads neither).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            media = _MEDIA_TYPE_OVERRIDES.get(image.format) or Image.MIME.get(image.format or "")
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        struct.error,
    ):
        return None
    return media if media and media.startswith("image/") else None


def read_image(path: str | Path, max_pixels: int | None = None) -> DecodedImage:
    """Read and decode one file. Raises :class:`DecodeError`."""
    data = read_bytes(path)
    return DecodedImage(decode_bytes(data, max_pixels), content_hash(data))


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without clipping or losing transparency meaning."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image)), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK (Pillow undoes Adobe's inversion), YCbCr, LAB, HSV


def _scale_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """High-bit-depth grey levels to 0..255 (16-bit by its full range, floats by 0..1 or min..max)."""
    if pixels.dtype.kind in "iu" and pixels.size and pixels.min() >= 0:
        peak = int(pixels.max())
        if peak <= 255:
            return pixels.astype(np.uint8)
        if peak <= 65535:
            return (pixels.astype(np.uint32) >> 8).astype(np.uint8)
    pixels = np.nan_to_num(pixels.astype(np.float64))
    low, high = float(pixels.min(initial=0)), float(pixels.max(initial=0))
    if low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    scaled = (pixels - low) / (high - low) * 255.0 if high > low else np.zeros_like(pixels)
    return scaled.round().astype(np.uint8)


def one_line(exc: BaseException) -> str:
    return clip_line(exc, 300) or type(exc).__name__


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS
