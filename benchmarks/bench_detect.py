"""Open-vocabulary detection throughput: iconograph vs transformers' pipeline, same run, same machine.

A full-size OWL-ViT B/32 architecture (768 px input, random weights, saved locally: speed does not
depend on the weights), three text queries, real JPEGs from ../shared/data/raccoon.

    python benchmarks/bench_detect.py [--images 24] [--queries "raccoon,tree,person"] [--threads N]

Figures (images/s, higher is better):
  pipeline     transformers.pipeline("zero-shot-object-detection"), one image at a time, all queries
               (the pipeline runs the whole model once per query)
  iconograph   OwlDetector + ImageJobRunner in-process, cache bypassed: decode in a worker, the image
               encoded once per batch and compared with every query, class-wise NMS
  cached       the same with a warm cache (a re-run over the same images)
Both produce the same boxes and scores before NMS (tests/detect/test_detect.py checks it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()


def model_dir() -> Path:
    from iconograph.testing import save_owlvit

    target = ROOT / ".bench" / "owlvit-b32-random"
    if not (target / "model.safetensors").exists():
        save_owlvit(target)  # the OWL-ViT B/32 architecture, random weights
    return target


def bench_pipeline(directory: Path, images: list[Path], queries: list[str]) -> float:
    from transformers import pipeline

    detector = pipeline("zero-shot-object-detection", model=str(directory), device="cpu")
    detector(str(images[0]), candidate_labels=queries)  # warm-up
    start = time.perf_counter()
    for image in images:
        detector(str(image), candidate_labels=queries, threshold=0.1)
    return len(images) / (time.perf_counter() - start)


def bench_iconograph(directory: Path, images: list[Path], queries: list[str], store: Path) -> tuple[float, float]:
    from iconograph.detection import OwlDetector, iter_detections
    from iconograph.engine.jobs import ImageJobRunner

    detector = OwlDetector(str(directory), queries=queries, threshold=0.1, device="cpu").prepare()
    detector.predict([__import__("iconograph").read_image(images[0]).image])  # warm-up (model load)

    def run(use_cache: bool) -> float:
        runner = ImageJobRunner(detector, store=store, use_cache=use_cache, batch_size=8, progress=False)
        start = time.perf_counter()
        results = list(iter_detections(images, detector, runner))
        elapsed = time.perf_counter() - start
        assert all(r.error is None for r in results)
        return len(images) / elapsed

    uncached = run(use_cache=False)
    run(use_cache=True)  # fills the cache
    return uncached, run(use_cache=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--queries", default="raccoon,tree,person")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args()

    import torch

    from iconograph.backends.base import set_torch_threads

    set_torch_threads(args.threads)
    images = sorted((DATA / "raccoon" / "images").glob("*.jpg"))[: args.images]
    queries = [q.strip() for q in args.queries.split(",") if q.strip()]
    directory = model_dir()
    with tempfile.TemporaryDirectory() as store:
        pipeline_rate = bench_pipeline(directory, images, queries)
        iconograph_rate, cached_rate = bench_iconograph(directory, images, queries, Path(store))

    threads = torch.get_num_threads()
    print(f"OWL-ViT B/32 (random weights), {len(images)} raccoon JPEGs, {len(queries)} queries, CPU, {threads} threads")
    print(f"{'':12} {'images/s':>9} {'vs pipeline':>12}")
    for name, rate in (("pipeline", pipeline_rate), ("iconograph", iconograph_rate), ("cached", cached_rate)):
        print(f"{name:12} {rate:9.2f} {rate / pipeline_rate:11.2f}x")


if __name__ == "__main__":
    main()
