"""End-to-end zero-shot classification throughput: iconograph vs transformers' pipeline vs model only.

All on the same machine, in one run, with a full-size CLIP ViT-B/32 architecture (random weights,
saved locally: speed does not depend on the weights) and real JPEGs from ../shared/data.

    python benchmarks/bench_classify.py [--images 300] [--threads N]

Figures (images/s, higher is better):
  model-only   image tower forward pass on pre-decoded, pre-processed tensors (batch 32), PyTorch
               eager and ONNX Runtime: what the model alone costs
  pipeline     transformers.pipeline("zero-shot-image-classification"), best of batch sizes 1, 8, 32
  iconograph   Embedder + ZeroShotClassifier + JSONL writer in-process, cache bypassed, per runtime
  cli          `iconograph classify` as a fresh process (start-up and model load included): with
               --no-cache, then twice on one store (the second run is the cached re-run)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TEMPLATE = "a photo of a {}."


def image_set(count: int) -> list[Path]:
    imagenet = sorted((DATA / "imagenet-samples").glob("*.JPEG"))
    cifar = sorted((DATA / "cifar10" / "test").glob("*/*.jpg"))
    return (imagenet + cifar[:: max(1, len(cifar) // count)])[:count]


def model_dir() -> Path:
    from iconograph.testing import save_clip

    target = ROOT / ".bench" / "clip-vit-b32-random"
    if not (target / "model.safetensors").exists():
        save_clip(target)  # the ViT-B/32 architecture, random weights
    return target


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_model_only(directory: Path, images: list[Path], store: Path) -> tuple[float, float, float]:
    """(torch images/s, ONNX Runtime images/s, export seconds) on pre-processed tensors."""
    import torch
    from transformers import AutoImageProcessor, CLIPModel

    from iconograph.backends import load_model
    from iconograph.backends.base import set_torch_threads
    from iconograph.engine.onnx_runtime import OnnxImageEncoder
    from iconograph.reading.decode import read_image

    model = CLIPModel.from_pretrained(directory).eval()
    processor = AutoImageProcessor.from_pretrained(directory)
    pixels = torch.cat([processor(images=[read_image(p).image], return_tensors="pt")["pixel_values"] for p in images])

    def run_torch():
        with torch.inference_mode():
            for start in range(0, len(pixels), 32):
                model.get_image_features(pixel_values=pixels[start : start + 32])

    export_start = time.perf_counter()
    onnx = OnnxImageEncoder.load_or_export(load_model(str(directory)), tuple(pixels.shape[1:]), store / "onnx")
    export_seconds = time.perf_counter() - export_start

    def run_onnx():
        for start in range(0, len(pixels), 32):
            onnx(pixels[start : start + 32])

    set_torch_threads()  # the same thread setting iconograph uses
    best_torch = min(timed(run_torch) for _ in range(3))  # the best of three passes each
    best_onnx = min(timed(run_onnx) for _ in range(3))
    return len(images) / best_torch, len(images) / best_onnx, export_seconds


def bench_pipeline(directory: Path, images: list[Path]) -> tuple[float, int]:
    from transformers import pipeline

    classifier = pipeline("zero-shot-image-classification", model=str(directory))
    paths = [str(p) for p in images]
    best = (0.0, 0)
    for batch_size in (1, 8, 32):
        elapsed = timed(
            lambda bs=batch_size: classifier(
                paths, candidate_labels=LABELS, hypothesis_template=TEMPLATE, batch_size=bs
            )
        )
        print(f"  pipeline batch_size={batch_size}: {len(images) / elapsed:.1f} images/s", flush=True)
        best = max(best, (len(images) / elapsed, batch_size))
    return best


def bench_iconograph(directory: Path, images: list[Path], store: Path, workers: int | None, runtime: str) -> float:
    import iconograph as ig
    from iconograph.classification.classify import iter_predictions

    embedder = ig.Embedder(
        str(directory), store=store, use_cache=False, batch_size=32, workers=workers, runtime=runtime
    )
    embedder.embed_images(images[:1])  # load weights (and the ONNX session) before timing, as the pipeline was built

    def run():
        classifier = ig.ZeroShotClassifier(LABELS, templates=[TEMPLATE]).prepare(embedder)
        ig.write_predictions(iter_predictions(images, classifier, embedder), store / "preds.jsonl")

    return len(images) / timed(run)


def bench_cli(directory: Path, images: list[Path], store: Path) -> tuple[float, float, float]:
    listing = store / "images.txt"
    listing.write_text("\n".join(map(str, images)) + "\n")
    base = [sys.executable, "-m", "iconograph", "classify", str(listing), "--labels", ",".join(LABELS),
            "--model", str(directory), "--templates", "photo", "--store", str(store), "--out", str(store / "cli.jsonl")]  # fmt: skip
    cold = timed(lambda: subprocess.run(base + ["--no-cache"], check=True, capture_output=True))
    first = timed(lambda: subprocess.run(base, check=True, capture_output=True))
    cached = timed(lambda: subprocess.run(base, check=True, capture_output=True))
    return cold, first, cached


def int8_agreement(directory: Path, images: list[Path], store: Path) -> float:
    """The smallest cosine between an image's int8 and fp32 (ONNX Runtime) embeddings."""
    import numpy as np

    import iconograph as ig

    fp32, int8 = (
        ig.Embedder(str(directory), store=store, use_cache=False, runtime=runtime).embed_images(images).vectors
        for runtime in ("onnx", "onnx-int8")
    )
    cosine = (fp32 * int8).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(int8, axis=1)
    return float(cosine.min())


def bench_cached_in_process(directory: Path, images: list[Path], store: Path) -> float:
    """The cached re-run without process start-up: hash, look up, score, write."""
    import iconograph as ig
    from iconograph.classification.classify import iter_predictions

    def run():
        embedder = ig.Embedder(str(directory), store=store, batch_size=32)
        classifier = ig.ZeroShotClassifier(LABELS, templates="photo").prepare(embedder)
        ig.write_predictions(iter_predictions(images, classifier, embedder), store / "cached.jsonl")
        assert embedder.stats.computed == 0

    return min(timed(run), timed(run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    images = image_set(args.images)
    directory = model_dir()
    print(f"{len(images)} images ({sum(1 for p in images if p.suffix == '.JPEG')} ImageNet-size, the rest CIFAR 32x32); "
          f"{len(LABELS)} labels; CLIP ViT-B/32 (random weights); {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        torch_only, onnx_only, export_seconds = bench_model_only(directory, images, store)
        print(f"model-only torch        {torch_only:7.1f} images/s", flush=True)
        print(
            f"model-only onnxruntime  {onnx_only:7.1f} images/s (one-time export: {export_seconds:.1f} s)", flush=True
        )
        pipeline_speed, pipeline_bs = bench_pipeline(directory, images)
        print(f"pipeline                {pipeline_speed:7.1f} images/s (best batch size {pipeline_bs})", flush=True)
        runtimes = ("torch", "onnx", "onnx-int8")
        ours = {runtime: bench_iconograph(directory, images, store, args.workers, runtime) for runtime in runtimes}
        for runtime, speed in ours.items():
            print(f"iconograph {runtime:<12} {speed:7.1f} images/s", flush=True)
        print(f"int8 vs fp32 embeddings: smallest cosine {int8_agreement(directory, images, store):.5f}", flush=True)
        cold, first, cached = bench_cli(directory, images, store)
        print(
            f"cli --no-cache          {len(images) / cold:7.1f} images/s ({cold:.1f} s: process start and model load included)"
        )
        print(f"cli first run {first:.1f} s (fills the cache), cached re-run {cached:.2f} s")
        in_process_cached = bench_cached_in_process(directory, images, store)
        print(f"in-process cached re-run {in_process_cached:.3f} s")
    print()
    print(f"iconograph (onnx)  / pipeline       {ours['onnx'] / pipeline_speed:5.2f}x  (goal >= 3x)")
    print(f"iconograph (torch) / pipeline       {ours['torch'] / pipeline_speed:5.2f}x")
    print(f"iconograph (onnx-int8) / pipeline   {ours['onnx-int8'] / pipeline_speed:5.2f}x  (opt-in, approximate)")
    print(f"iconograph (torch) / model-only torch {ours['torch'] / torch_only:5.2f}  (goal >= 0.90: within 10 %)")
    print(f"iconograph (onnx)  / model-only onnx  {ours['onnx'] / onnx_only:5.2f}")
    print(f"cli first run / cli cached re-run   {first / cached:5.1f}x  (goal >= 50x; includes Python start-up)")
    print(f"cli first run / in-process cached   {first / in_process_cached:5.0f}x")


if __name__ == "__main__":
    main()
