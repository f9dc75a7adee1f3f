"""Builders for the awkward files real collections contain."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

RED, BLUE = (255, 0, 0), (0, 0, 255)


def two_colour(width: int = 40, height: int = 20) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def write_exif_rotated(path: Path) -> Path:
    """Stored 40x20 with red on the left; EXIF orientation 6 (display rotated 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    two_colour().save(path, "JPEG", quality=95, exif=exif)
    return path


def write_bad_collection(folder: Path) -> dict[str, bool]:
    """Every kind of awkward file; returns name -> whether it should be readable."""
    folder.mkdir(parents=True, exist_ok=True)
    readable = {}

    two_colour().save(folder / "plain.jpg", quality=95)
    readable["plain.jpg"] = True

    buffer = io.BytesIO()
    two_colour(200, 200).save(buffer, "JPEG", quality=95)
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    readable["truncated.jpg"] = False

    (folder / "empty.jpg").write_bytes(b"")
    readable["empty.jpg"] = False

    (folder / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    readable["notes.jpg"] = False

    gradient = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)
    Image.fromarray(gradient).save(folder / "deep16.png")
    readable["deep16.png"] = True

    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)
    readable["cmyk.jpg"] = True

    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([0, 255, 0] + [255, 0, 0] * 255)
    palette.paste(1, (0, 0, 16, 32))  # left half red (index 1), right half transparent (index 0)
    palette.save(folder / "palette_alpha.png", transparency=0)
    readable["palette_alpha.png"] = True

    frames = [Image.new("RGB", (32, 32), RED), Image.new("RGB", (32, 32), BLUE)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    readable["animated.gif"] = True

    write_exif_rotated(folder / "rotated.jpg")
    readable["rotated.jpg"] = True

    Image.new("1", (9500, 9500)).save(folder / "bomb.png")  # 90.25 M pixels > Pillow's 89.5 M limit
    readable["bomb.png"] = False

    two_colour().save(folder / "münze_Ζεύς.png")
    readable["münze_Ζεύς.png"] = True

    locked = folder / "locked.jpg"
    two_colour().save(locked, quality=95)
    os.chmod(locked, 0)
    readable["locked.jpg"] = os.geteuid() == 0  # root reads any file; everyone else cannot
    return readable
