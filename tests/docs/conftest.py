"""The world the documentation's examples run in: small data made here, tiny models for hub ids.

Hub ids the pages use are planted in a private Hugging Face cache (``HF_HUB_CACHE``) as tiny
randomly initialised models, so ``--model google/owlv2-base-patch16-ensemble`` (or no ``--model``
at all: the default CLIP) runs as written, offline. Local names the pages use (``./my-clip``,
``timm:./my-timm``) are folders of this world.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from tests.conftest import CIFAR_TEST, CIFAR_TRAIN, RACCOON

SNAPSHOT = "0" * 40
COIN_LABELS = ("zeus", "eagle", "owl")
# CIFAR classes standing in for coin motifs, and the tags each gets
COIN_CLASSES = {"bird": ("eagle",), "frog": ("owl",), "ship": ("eagle", "zeus"), "horse": ("zeus",)}
RACCOONS = ("raccoon-1", "raccoon-12", "raccoon-103", "raccoon-35")


def substitutions(models: Path) -> dict[str, Path]:
    """Hub id -> the tiny local model that stands in for it."""
    from iconograph import testing

    built = {
        "clip": testing.save_tiny_clip(models / "clip"),
        "siglip": testing.save_tiny_siglip(models / "siglip"),
        "owlvit": testing.save_tiny_owlvit(models / "owlvit", version=1),
        "owlv2": testing.save_tiny_owlvit(models / "owlv2", version=2),
        "sam": testing.save_tiny_sam(models / "sam"),
        "sam2": testing.save_tiny_sam2(models / "sam2"),
        "sam3": testing.save_tiny_sam3(models / "sam3"),
        "clipseg": testing.save_tiny_clipseg(models / "clipseg"),
        "blip": testing.save_tiny_blip(models / "blip"),
        "timm": testing.save_tiny_timm(models / "timm"),
    }
    return {
        "openai/clip-vit-base-patch32": built["clip"],
        "openai/clip-vit-large-patch14": built["clip"],
        "google/siglip-base-patch16-224": built["siglip"],
        "google/owlvit-base-patch32": built["owlvit"],
        "google/owlv2-base-patch16-ensemble": built["owlv2"],
        "facebook/sam-vit-base": built["sam"],
        "facebook/sam2.1-hiera-tiny": built["sam2"],
        "facebook/sam3": built["sam3"],
        "CIDAS/clipseg-rd64-refined": built["clipseg"],
        "Salesforce/blip-image-captioning-base": built["blip"],
        "./my-clip": built["clip"],
        "./my-timm": built["timm"],
    }


def plant(hub: Path, repo: str, model: Path) -> None:
    """``model`` as the cached snapshot of hub ``repo``, as huggingface_hub lays out its cache."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    shutil.copytree(model, folder / "snapshots" / SNAPSHOT, dirs_exist_ok=True)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(SNAPSHOT)


def copy_images(sources: list[Path], folder: Path, names: list[str] | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [p.name for p in sources]
    return [Path(shutil.copyfile(src, folder / name)) for src, name in zip(sources, names)]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def coin_set(root: Path, folder: str, per_class: int, offset: int, truth: str) -> None:
    rows, number = [], 0
    for cls, tags in COIN_CLASSES.items():
        for src in sorted((CIFAR_TRAIN / cls).glob("*.jpg"))[offset : offset + per_class]:
            number += 1
            name = f"{number:04d}.jpg"
            copy_images([src], root / folder, [name])
            rows.append([f"{folder}/{name}", ";".join(tags)])
    write_csv(root / truth, ["path", "labels"], rows)


def build_world(root: Path, models: Path) -> Path:
    """The reader's working folder: data, local models and a Hugging Face cache."""
    for repo, model in substitutions(models).items():
        if repo.startswith("./"):
            shutil.copytree(model, root / repo[2:])
        else:
            plant(root / ".hf-cache", repo, model)
    coin_set(root, "coins", per_class=8, offset=0, truth="truth.csv")
    coin_set(root, "new-coins", per_class=3, offset=50, truth="new-truth.csv")
    (root / "iconography.txt").write_text("".join(f"{label}\n" for label in COIN_LABELS))
    for cls in ("cat", "dog"):
        copy_images(sorted((CIFAR_TEST / cls).glob("*.jpg"))[:6], root / "photos" / cls)
    singles = sorted((CIFAR_TEST / "bird").glob("*.jpg"))[:6]
    copy_images(singles, root, ["a.jpg", "b.jpg", "photo.jpg", "query.jpg", "coin.jpg", "extra.jpg"])
    for name in RACCOONS:
        copy_images([RACCOON / "images" / f"{name}.jpg"], root / "raccoon" / "images")
        copy_images([RACCOON / "annotations" / f"{name}.xml"], root / "raccoon" / "annotations")
    shoes = copy_images(sorted((CIFAR_TEST / "automobile").glob("*.jpg"))[:3], root / "shoes",
                        ["0001.jpg", "0002.jpg", "0003.jpg"])
    write_csv(
        root / "shoes.csv",
        ["path", "title", "marke", "farbe", "obermaterial", "absatzhöhe", "tags"],
        [[f"shoes/{p.name}", "Slingpumps", "Elegantia", "schwarz", "Leder", "7 cm", "elegant;spitz"] for p in shoes],
    )
    copy_images(sorted((CIFAR_TEST / "bird").glob("*.jpg"))[6:7], root / "examples", ["eagle.jpg"])
    copy_images(sorted((CIFAR_TEST / "horse").glob("*.jpg"))[:2], root / "examples" / "zeus")
    (root / "queries.txt").write_text("zeus\neagle\npatera\n")
    (root / "styles.txt").write_text("elegant\nsporty\ncasual\n")
    (root / "shop-style.txt").write_text("Ein zeitloser Begleiter für jeden Anlass.\n")
    return root


@pytest.fixture(scope="session")
def world_template(tmp_path_factory) -> Path:
    return build_world(tmp_path_factory.mktemp("world"), tmp_path_factory.mktemp("doc-models"))


@pytest.fixture
def world(world_template, tmp_path) -> Path:
    """A fresh copy of the world for one page (its blocks run in order, as a reader follows it)."""
    return Path(shutil.copytree(world_template, tmp_path / "work", symlinks=True))
