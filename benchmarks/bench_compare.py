"""``compare`` with 5 template sets vs 5 separate ``classify`` runs on the same images.

Full-size CLIP ViT-B/32 architecture (random weights from a ViT-B/32 ``CLIPConfig``, saved locally
by ``iconograph.testing.save_clip``; speed does not depend on the weights), 1,000 CIFAR-10 test
JPEGs from ../shared/data (100 per class), the Python API in one process, each approach on a
fresh, empty store:

  compare          ig.compare(..., templates=5 sets): the images embedded once, 5 text towers
  classify         5 x (ig.classify(..., templates=set) + ig.evaluate), cache off (--no-cache):
                   every run embeds every image again, as without a cache
  classify+cache   the same 5 runs sharing one store: the first embeds, the next four read the cache
  one classify     the first run of ``classify`` alone: the goal for ``compare``

Every run loads the model itself (as separate commands do; Python start-up is not counted).
The ratios say how many times longer the 5 runs take than ``compare``; the load average
(os.getloadavg) is printed beside them: on a shared machine it matters.

    python benchmarks/bench_compare.py [--images 1000] [--workers N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SETS = ["none", "photo", "default", "cifar10", "products"]


def image_set(count: int) -> list:
    """``count`` CIFAR-10 test images, as even over the classes as possible, as labelled items."""
    from iconograph.reading.sources import Item

    per_class = {label: sorted((DATA / "cifar10" / "test" / label).glob("*.jpg")) for label in LABELS}
    items = []
    for i in range(max(len(paths) for paths in per_class.values())):
        for label in LABELS:
            if i < len(per_class[label]) and len(items) < count:
                items.append(Item(str(per_class[label][i]), (label,)))
    return items


def model_dir() -> Path:
    from iconograph.testing import save_clip

    target = ROOT / ".bench" / "clip-vit-b32-random"
    if not (target / "model.safetensors").exists():
        save_clip(target)  # CLIPConfig with the ViT-B/32 sizes, random weights
    return target


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import iconograph as ig
    from iconograph.classification.zeroshot import load_templates

    items = image_set(args.images)
    paths = [item.path for item in items]
    model = str(model_dir())
    options = {"workers": args.workers, "device": args.device, "progress": False}
    print(f"{len(items)} CIFAR-10 test images ({args.images} asked), CLIP ViT-B/32 random weights, sets {SETS} ")
    print("templates per set: " + ", ".join(f"{s} {len(load_templates(s))}" for s in SETS))
    print(f"start: {load()}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = ig.compare(paths, items, LABELS, templates=SETS, models=[model], store=Path(tmp, "compare"), **options)
        compare_s = time.perf_counter() - start
        (speed,) = result.speed()
        print(
            f"compare          {compare_s:8.1f} s   (image pass {speed['embedding_seconds']:.1f} s, "
            f"text {speed['text_seconds']:.1f} s; {load()})",
            flush=True,
        )

        def runs(**store) -> list[float]:
            times = []
            for s in SETS:
                start = time.perf_counter()
                predictions = ig.classify(paths, LABELS, model=model, templates=s, **store, **options)
                ig.evaluate(predictions, items)
                times.append(time.perf_counter() - start)
            return times

        no_cache = runs(store=Path(tmp, "no-cache"), use_cache=False)
        print(
            f"classify x5      {sum(no_cache):8.1f} s   (no cache; runs: {', '.join(f'{t:.1f}' for t in no_cache)}; "
            f"{load()})",
            flush=True,
        )
        cached = runs(store=Path(tmp, "shared"))
        print(
            f"classify+cache   {sum(cached):8.1f} s   (one store; runs: {', '.join(f'{t:.1f}' for t in cached)}; "
            f"{load()})",
            flush=True,
        )
    one = no_cache[0]
    print(f"one classify     {one:8.1f} s   (the first no-cache run, set {SETS[0]!r})")
    print(
        f"ratios: 5 classify runs / compare = {sum(no_cache) / compare_s:.2f} (no cache), "
        f"{sum(cached) / compare_s:.2f} (shared cache); compare / one classify run = {compare_s / one:.2f}"
    )
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
