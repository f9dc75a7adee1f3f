"""Planted copies of real images, for the duplicate tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image, ImageOps

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "imagenet-samples"


def _resize(im):
    return im.resize((max(1, int(im.width * 0.6)), max(1, int(im.height * 0.6))), Image.BICUBIC)


def _crop(im):
    dx, dy = int(im.width * 0.05), int(im.height * 0.05)
    return im.crop((dx, dy, im.width - dx, im.height - dy))


TRANSFORMS = {
    "resized": _resize,
    "jpeg50": lambda im: im,  # saved at quality 50 below
    "cropped": _crop,
    "rot90": lambda im: im.rotate(90, expand=True),
    "mirror": ImageOps.mirror,
    "gray": lambda im: ImageOps.grayscale(im).convert("RGB"),
}


def originals(n: int = 40) -> list[Path]:
    files = sorted(p for p in DATA.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    return files[:n]


def plant(folder: Path, n: int = 40, identical: int = 4) -> tuple[list[str], dict[str, str]]:
    """``n`` originals copied into ``folder``, each of the first ``6 * 4`` given one transformed
    copy (each transform 4 times) and ``identical`` more byte-identical copies. Returns every
    path and a map of each path to the original it came from."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, origin = [], {}
    for index, source in enumerate(originals(n)):
        target = folder / f"{index:03d}_orig{source.suffix}"
        shutil.copyfile(source, target)
        paths.append(str(target))
        origin[str(target)] = str(target)
        names = list(TRANSFORMS)
        if index < 4 * len(names):
            name = names[index % len(names)]
            with Image.open(source) as im:
                copy = TRANSFORMS[name](ImageOps.exif_transpose(im).convert("RGB"))
            planted = folder / f"{index:03d}_{name}.jpg"
            copy.save(planted, quality=50 if name == "jpeg50" else 90)
            paths.append(str(planted))
            origin[str(planted)] = str(target)
        elif index < 4 * len(names) + identical:
            planted = folder / f"{index:03d}_same{source.suffix}"
            shutil.copyfile(source, planted)
            paths.append(str(planted))
            origin[str(planted)] = str(target)
    return paths, origin
