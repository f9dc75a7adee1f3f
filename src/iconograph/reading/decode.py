"""Bytes to an upright 8-bit RGB image, or a one-line reason why not.

Every image iconograph looks at passes through :func:`decode_bytes`, so that the orientation,
colour conversions and safety limits are the same for classification, detection and search.

Decoding at the size the model needs: with ``min_size`` (pixels of the shorter edge, at least
twice the model's final resize target), an image much larger than that is decoded at reduced
scale — a JPEG through libjpeg's DCT scaling (``Image.draft``, 1/2, 1/4 or 1/8), other formats
by an integer box reduction after decoding (``Image.reduce``) — never below ``min_size``, so the
model's own resize still antialiases. An image whose shorter edge is below
``2 * min_size`` is decoded exactly as without ``min_size`` (bit-identical).
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


DCT_SCALED = ("JPEG", "MPO")  # formats libjpeg decodes at 1/2, 1/4, 1/8 scale; the others are box-reduced


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


def decode_bytes(data: bytes, max_pixels: int | None = None, min_size: int | None = None) -> Image.Image:
    """Decode ``data`` into an RGB image; raise :class:`DecodeError` with a one-line reason.

    ``max_pixels`` defaults to Pillow's decompression-bomb limit; images above it are refused
    (Pillow only warns between 1x and 2x the limit; iconograph refuses both). With ``min_size``
    an image whose shorter edge is at least twice ``min_size`` is decoded at reduced scale, its
    shorter edge never below ``min_size`` (see the module's docstring).
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
                if min_size:
                    draft_reduced(image, min_size)
                image.load()
                upright = to_rgb(ImageOps.exif_transpose(image))
                if min_size and image.format not in DCT_SCALED:
                    return reduce_to(upright, min_size)
                return upright
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


def read_image(path: str | Path, max_pixels: int | None = None, min_size: int | None = None) -> DecodedImage:
    """Read and decode one file. Raises :class:`DecodeError`. The hash is that of the file's bytes."""
    data = read_bytes(path)
    return DecodedImage(decode_bytes(data, max_pixels, min_size), content_hash(data))


def reduction_factor(size: tuple[int, int], min_size: int) -> int:
    """The largest integer factor that keeps the shorter edge of ``size`` at ``min_size`` or more.

    The shorter edge of either orientation (EXIF rotation swaps the axes, not the shorter edge).
    """
    return max(1, min(size) // max(1, min_size))


def draft_reduced(image: Image.Image, min_size: int) -> None:
    """Ask a JPEG (before ``load``) to decode at 1/2, 1/4 or 1/8 scale through libjpeg's DCT
    scaling, keeping its shorter edge at ``min_size`` or more; other formats are left as they are."""
    if image.format not in DCT_SCALED or reduction_factor(image.size, min_size) < 2:
        return
    image.draft(image.mode, (min_size, min_size))  # picks the largest scale s with size // s >= min_size


def reduce_to(image: Image.Image, min_size: int) -> Image.Image:
    """Box-reduce a decoded RGB image by an integer factor, its shorter edge kept at ``min_size`` or more.

    The image is first trimmed to a multiple of the factor (fewer than ``factor`` pixels, split
    between both sides so the centre stays put), so that no edge pixel averages a partial box and
    the aspect ratio stays as close as possible: a changed aspect or a moved centre shifts the
    model's own resize and centre crop.
    """
    factor = reduction_factor(image.size, min_size)
    if factor < 2:
        return image
    width, height = image.size
    left, top = width % factor // 2, height % factor // 2
    return image.reduce(factor, (left, top, left + width - width % factor, top + height - height % factor))


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
