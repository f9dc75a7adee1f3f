"""Box-prompted segmentation: iconograph vs calling SAM once per box, same run, same machine.

The full-size SAM ViT-B architecture (1024 px input, random weights, saved locally: speed does
not depend on the weights), ten boxes per image (a 5 x 2 grid over the image), real JPEGs from
../shared/data/raccoon.

    python benchmarks/bench_segment.py [--images 2] [--boxes 10] [--threads N]

Figures (seconds per image, lower is better):
  per box      what a user writes with transformers: SamProcessor(image, input_boxes=[[box]]),
               SamModel(...), post_process_masks, for every box (the image encoder runs per box)
  iconograph   SamSegmenter + ImageJobRunner in-process, cache bypassed: decode in a worker, the
               image embedding once per image, all its boxes in one decoder batch
Both give the same masks (tests/detect/test_segment.py checks iconograph against transformers).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()


def model_dir() -> Path:
    from iconograph.testing import save_tiny_sam

    target = ROOT / ".bench" / "sam-vit-base-random"
    if not (target / "model.safetensors").exists():
        save_tiny_sam(target, full_size=True)  # the SAM ViT-B architecture, random weights
    return target


def grid_boxes(width: int, height: int, count: int) -> list[list[float]]:
    columns = (count + 1) // 2
    w, h = width / columns, height / 2
    return [[c * w, r * h, (c + 1) * w, (r + 1) * h] for r in range(2) for c in range(columns)][:count]


def bench_per_box(directory: Path, images, boxes) -> float:
    import torch
    from transformers import SamModel, SamProcessor

    from iconograph import read_image

    model = SamModel.from_pretrained(directory).eval()
    processor = SamProcessor.from_pretrained(directory)
    decoded = [read_image(p).image for p in images]
    start = time.perf_counter()
    for image, image_boxes in zip(decoded, boxes):
        for box in image_boxes:
            inputs = processor(images=image, input_boxes=[[box]], return_tensors="pt")
            with torch.inference_mode():
                output = model(**inputs, multimask_output=True)
            processor.post_process_masks(output.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])
    return (time.perf_counter() - start) / len(images)


def bench_iconograph(directory: Path, images, boxes, store: Path) -> float:
    from iconograph.boxes import Detections
    from iconograph.engine.jobs import ImageJobRunner
    from iconograph.reading.sources import path_key
    from iconograph.segmentation import SamSegmenter, iter_segmentations

    segmenter = SamSegmenter(str(directory), device="cpu")
    _ = segmenter.model  # load before timing, as the per-box baseline does
    segmenter.set_prompts(
        {path_key(str(p)): Detections.from_labels(b, ["box"] * len(b), [1.0] * len(b)) for p, b in zip(images, boxes)}
    )
    runner = ImageJobRunner(segmenter, store=store, use_cache=False, batch_size=1, progress=False)
    start = time.perf_counter()
    results = list(iter_segmentations(images, runner))
    elapsed = time.perf_counter() - start
    assert all(r.error is None and len(r.detections.masks) == len(b) for r, b in zip(results, boxes))
    return elapsed / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--boxes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args()

    import torch

    from iconograph.backends.base import set_torch_threads
    from iconograph.boxes import image_size

    set_torch_threads(args.threads)
    images = sorted((DATA / "raccoon" / "images").glob("*.jpg"))[: args.images]
    boxes = [grid_boxes(*image_size(p), args.boxes) for p in images]
    directory = model_dir()
    with tempfile.TemporaryDirectory() as store:
        iconograph_time = bench_iconograph(directory, images, boxes, Path(store))
        per_box_time = bench_per_box(directory, images, boxes)

    print(
        f"SAM ViT-B (random weights), {len(images)} raccoon JPEGs, {args.boxes} boxes each, CPU, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} (a shared machine)"
    )
    print(f"{'':12} {'s/image':>9} {'speed-up':>9}")
    for name, seconds in (("per box", per_box_time), ("iconograph", iconograph_time)):
        print(f"{name:12} {seconds:9.2f} {per_box_time / seconds:8.2f}x")


if __name__ == "__main__":
    main()
