"""Word-prompted segmentation (CLIPSeg): iconograph vs the documented transformers usage, same
run, same machine.

The CLIPSeg rd64-refined architecture (ViT-B/16 vision tower, 352 px input, decoder width 64;
random weights, saved locally: speed does not depend on the weights), five words per image, real
JPEGs from ../shared/data/raccoon.

    python benchmarks/bench_segment_words.py [--images 4] [--words 5] [--threads N]

Figures (seconds per image, lower is better):
  documented   what the CLIPSeg docs show: CLIPSegProcessor(text=words, images=[image] * n),
               CLIPSegForImageSegmentation(...) (the vision tower runs once per word), then the
               heatmaps resized to the image and thresholded as iconograph does
  iconograph   ClipSegSegmenter + ImageJobRunner in-process, cache bypassed: decode in a worker,
               the vision tower once per image, the words encoded once per run, one decoder
               batch of all words
Both give the same masks (tests/detect/test_segment_words.py checks iconograph against transformers).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
WORDS = ["raccoon", "tree", "grass", "fence", "sky", "rock", "water", "car"]


def model_dir() -> Path:
    """CLIPSeg rd64-refined's architecture with random weights (built once, kept in .bench/)."""
    import torch
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    from iconograph.testing import clip_tokenizer

    target = ROOT / ".bench" / "clipseg-rd64-random"
    if (target / "model.safetensors").exists():
        return target
    config = CLIPSegConfig(
        vision_config={"patch_size": 16, "image_size": 224},
        reduce_dim=64,
        extract_layers=[3, 6, 9],
        use_complex_transposed_convolution=True,
    )
    torch.manual_seed(0)
    model = CLIPSegForImageSegmentation(config).eval()
    image_processor = ViTImageProcessor(
        size={"height": 352, "width": 352},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    model.save_pretrained(target)
    CLIPSegProcessor(image_processor=image_processor, tokenizer=clip_tokenizer()).save_pretrained(target)
    return target


def bench_documented(directory: Path, images, words) -> float:
    import torch
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    from iconograph import read_image
    from iconograph.segmentation.words import heatmap_probabilities

    model = CLIPSegForImageSegmentation.from_pretrained(directory).eval()
    processor = CLIPSegProcessor.from_pretrained(directory)
    decoded = [read_image(p).image for p in images]
    start = time.perf_counter()
    for image in decoded:
        inputs = processor(text=words, images=[image] * len(words), padding="max_length", return_tensors="pt")
        with torch.inference_mode():
            logits = model(**inputs).logits
            masks = heatmap_probabilities(logits, image.size) > 0.5
        assert masks.shape[0] == len(words)
    return (time.perf_counter() - start) / len(images)


def bench_iconograph(directory: Path, images, words, store: Path) -> float:
    from iconograph.engine.jobs import ImageJobRunner
    from iconograph.segmentation import iter_segmentations
    from iconograph.segmentation.words import word_segmenter

    segmenter = word_segmenter(str(directory), words, threshold=0.0, device="cpu")
    _ = segmenter.model, segmenter.text_features  # loaded and encoded before timing, as the baseline's model is
    runner = ImageJobRunner(segmenter, store=store, use_cache=False, batch_size=1, progress=False)
    start = time.perf_counter()
    results = list(iter_segmentations(images, runner))
    elapsed = time.perf_counter() - start
    assert all(r.error is None for r in results)
    return elapsed / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--words", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args()

    import torch

    from iconograph.backends.base import set_torch_threads

    set_torch_threads(args.threads)
    images = sorted((DATA / "raccoon" / "images").glob("*.jpg"))[: args.images]
    words = WORDS[: args.words]
    directory = model_dir()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as store:
        iconograph_time = bench_iconograph(directory, images, words, Path(store))
        documented_time = bench_documented(directory, images, words)

    print(
        f"CLIPSeg rd64 architecture (random weights), {len(images)} raccoon JPEGs, {len(words)} words each, CPU, "
        f"{torch.get_num_threads()} threads, load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after"
        " (a shared machine)"
    )
    print(f"{'':12} {'s/image':>9} {'speed-up':>9}")
    for name, seconds in (("documented", documented_time), ("iconograph", iconograph_time)):
        print(f"{name:12} {seconds:9.2f} {documented_time / seconds:8.2f}x")


if __name__ == "__main__":
    main()
