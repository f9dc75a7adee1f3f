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

Decoding at the size the model needs (issue 10), per image set: the current set and a camera-size
set (the ImageNet samples upscaled to 4000x3000 and saved at JPEG quality 90 into .bench/camera,
made once at run time), each as images/s and as a ratio to the model-only rate:
  model-only   the image tower (PyTorch, batch 32) on tensors decoded and preprocessed beforehand
  fast         iconograph's Embedder (runtime torch, cache bypassed), default reduced decode
  exact        the same with exact_decode=True (full-size decode, bit-parity with the pipeline)
  pipeline     transformers.pipeline("zero-shot-image-classification"), batch size 32
and how far fast is from exact: PSNR and largest difference of the model input (0..255 scale)
and the cosine between the two embeddings. ``--decode-only`` runs just this part.
The load average (os.getloadavg) is printed beside the figures: on a shared machine it matters.

    python benchmarks/bench_classify.py --decode-only [--images 100] [--camera-images 32]
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


def camera_set(count: int) -> list[Path]:
    """ImageNet samples upscaled (bicubic) to camera size, 4000x3000 (3000x4000 for portraits),
    JPEG quality 90, in .bench/camera (gitignored; made once)."""
    from PIL import Image

    folder = ROOT / ".bench" / "camera"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in sorted((DATA / "imagenet-samples").glob("*.JPEG"))[:count]:
        target = folder / f"{source.stem}.jpg"
        if not target.exists():
            image = Image.open(source).convert("RGB")
            size = (4000, 3000) if image.width >= image.height else (3000, 4000)
            image.resize(size, Image.Resampling.BICUBIC).save(target, "JPEG", quality=90)
        paths.append(target)
    return paths


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_decode_set(name: str, directory: Path, images: list[Path], store: Path, workers: int | None) -> None:
    """One image set: model-only, iconograph fast and exact decode (PyTorch), model-only and
    iconograph fast with ONNX Runtime, the pipeline; then fast vs exact."""
    import numpy as np
    import torch
    from transformers import AutoImageProcessor, CLIPModel, pipeline

    import iconograph as ig
    from iconograph.backends.base import set_torch_threads
    from iconograph.backends.hf import image_features
    from iconograph.reading.decode import decode_bytes

    model = CLIPModel.from_pretrained(directory).eval()
    processor = AutoImageProcessor.from_pretrained(directory)
    backend = ig.Embedder(str(directory), use_cache=False).model
    min_size = backend.decode_min_size()

    def inputs(reduced: bool):
        return torch.stack(
            [
                processor(images=[decode_bytes(p.read_bytes(), min_size=min_size if reduced else None)],
                          return_tensors="pt")["pixel_values"][0]
                for p in images
            ]
        )  # fmt: skip

    exact_pixels = inputs(False)

    def run_model(pixels):
        with torch.inference_mode():
            return torch.cat([image_features(model, pixels[i : i + 32]) for i in range(0, len(pixels), 32)])

    set_torch_threads()
    rates = {"model-only": len(images) / min(timed(lambda: run_model(exact_pixels)) for _ in range(2))}
    print(f"  [{name}] model-only {rates['model-only']:.1f} images/s ({load()})", flush=True)
    for label, exact in (("fast", False), ("exact", True)):
        embedder = ig.Embedder(
            str(directory), store=store, use_cache=False, batch_size=32, workers=workers, runtime="torch",
            exact_decode=exact,
        )  # fmt: skip
        embedder.embed_images(images[:1])  # weights loaded before timing
        rates[label] = len(images) / timed(lambda e=embedder: e.embed_images(images))
        print(f"  [{name}] iconograph {label} {rates[label]:.1f} images/s ({load()})", flush=True)
    # The same with ONNX Runtime (what --runtime auto picks on a CPU for jobs of 256+ images),
    # against ONNX Runtime's own model-only rate on the same pre-processed tensors.
    from iconograph.backends import load_model
    from iconograph.engine.onnx_runtime import OnnxImageEncoder

    onnx = OnnxImageEncoder.load_or_export(load_model(str(directory)), tuple(exact_pixels.shape[1:]), store / "onnx")

    def run_onnx(pixels):
        return [onnx(pixels[i : i + 32]) for i in range(0, len(pixels), 32)]

    rates["model-only onnx"] = len(images) / min(timed(lambda: run_onnx(exact_pixels)) for _ in range(2))
    embedder = ig.Embedder(str(directory), store=store, use_cache=False, batch_size=32, workers=workers, runtime="onnx")
    embedder.embed_images(images[:1])  # weights loaded and the graph exported before timing
    rates["fast onnx"] = len(images) / timed(lambda: embedder.embed_images(images))
    print(f"  [{name}] iconograph fast onnx {rates['fast onnx']:.1f} images/s ({load()})", flush=True)
    classifier = pipeline("zero-shot-image-classification", model=str(directory))
    paths = [str(p) for p in images]
    rates["pipeline"] = len(images) / timed(
        lambda: classifier(paths, candidate_labels=LABELS, hypothesis_template=TEMPLATE, batch_size=32)
    )
    print(f"  [{name}] pipeline {rates['pipeline']:.1f} images/s ({load()})", flush=True)

    fast_pixels = inputs(True)
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    a, b = ((x * std + mean).double().numpy() for x in (exact_pixels, fast_pixels))
    mse = ((a - b) ** 2).reshape(len(images), -1).mean(1)
    psnr = np.where(mse > 0, 10 * np.log10(1 / np.maximum(mse, 1e-30)), np.inf)
    ea, eb = (run_model(x).numpy() for x in (exact_pixels, fast_pixels))
    cosine = (ea * eb).sum(1) / np.linalg.norm(ea, axis=1) / np.linalg.norm(eb, axis=1)
    reduced = sum(min(decode_bytes(p.read_bytes(), min_size=min_size).size) < min(decode_bytes(p.read_bytes()).size)
                  for p in images)  # fmt: skip
    print(f"{name}: {len(images)} images, {reduced} decoded at reduced scale (bound {min_size} px); {load()}")
    for label in ("model-only", "fast", "exact", "pipeline"):
        print(f"  {label:<11} {rates[label]:7.1f} images/s  {rates[label] / rates['model-only']:5.2f}x model-only")
    for label in ("model-only onnx", "fast onnx"):
        print(f"  {label:<15} {rates[label]:7.1f} images/s  {rates[label] / rates['model-only onnx']:5.2f}x model-only onnx")
    print(
        f"  fast / exact {rates['fast'] / rates['exact']:.2f}x; fast / pipeline {rates['fast'] / rates['pipeline']:.2f}x; "
        f"fast onnx / pipeline {rates['fast onnx'] / rates['pipeline']:.2f}x"
    )
    print(
        f"  fast vs exact model input: PSNR min {psnr.min():.1f} dB (median {np.median(psnr):.1f}), "
        f"max abs diff {np.abs(a - b).max() * 255:.1f} / 255; embedding cosine min {cosine.min():.6f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--camera-images", type=int, default=32, help="camera-size (4000x3000) JPEGs")
    parser.add_argument("--decode-only", action="store_true", help="only the per-set decoding comparison")
    args = parser.parse_args()

    images = image_set(args.images)
    directory = model_dir()
    print(f"{os.cpu_count()} CPUs; CLIP ViT-B/32 (random weights); {load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        bench_decode_set("current set", directory, images, Path(tmp), args.workers)
        bench_decode_set("camera-size set", directory, camera_set(args.camera_images), Path(tmp), args.workers)
    if args.decode_only:
        return
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
