"""Scaling out (issue 13): images/s of the local engine vs ``--engine ray``, and Ray with 1 -> 2 actors.

The same images (CIFAR-10 test JPEGs), the same model (a randomly initialised CLIP with the
ViT-B/32 architecture, or ``--model tiny``), the same batches; no cache (every image computed).
Each figure is one whole job as a user runs it, timed after the model is loaded in this process:
for Ray that includes starting the actor pool and loading one model replica per actor (the
cluster itself is started once, before, and its start-up is printed apart). Ratios are against
the local engine measured in the same run; the load average is printed beside the figures: the
machine is shared, and on 2 cores the figure is Ray's overhead, not a speed-up.

    python benchmarks/bench_scale.py [--images 256] [--model vit-b-32|tiny] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
WORK = ROOT / ".bench" / "scale"


def images(count: int) -> list[str]:
    root = DATA / "cifar10" / "test"
    paths = sorted(str(p) for p in root.glob("*/*.jpg"))
    if len(paths) < count:
        raise SystemExit(f"only {len(paths)} images under {root}")
    return paths[:count]


def model_folder(kind: str) -> Path:
    from iconograph.testing import save_clip, save_tiny_clip

    folder = WORK / kind
    if not (folder / "model.safetensors").exists():
        (save_tiny_clip if kind == "tiny" else save_clip)(folder)  # save_clip's defaults: ViT-B/32
    return folder


def images_per_second(model: str, paths: list[str], batch_size: int, **engine) -> float:
    import iconograph as ig

    embedder = ig.Embedder(model, use_cache=False, batch_size=batch_size, runtime="torch", progress=False, **engine)
    embedder.embed_images(paths[:batch_size])  # warm-up: first-call costs of the local engine
    start = time.perf_counter()
    result = embedder.embed_images(paths)
    elapsed = time.perf_counter() - start
    assert not any(result.errors) and len(result.vectors) == len(paths)
    return len(paths) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--model", choices=("vit-b-32", "tiny"), default="vit-b-32")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    paths = images(args.images)
    model = str(model_folder(args.model))
    cores = len(os.sched_getaffinity(0))
    print(f"{args.images} CIFAR-10 JPEGs, CLIP {args.model} (random weights), batch {args.batch_size}, {cores} cores")
    print(f"load average before: {os.getloadavg()}")

    local = images_per_second(model, paths, args.batch_size)
    print(f"local engine          {local:8.1f} images/s   1.00x   load {os.getloadavg()[0]:.2f}")

    import ray

    from iconograph.engine.ray_engine import connect

    start = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    connect()
    print(f"(ray.init of a local {cores}-CPU cluster: {time.perf_counter() - start:.1f} s, not counted)")
    figures = {}
    for actors in (1, 2):
        figures[actors] = images_per_second(model, paths, args.batch_size, engine="ray", actors=actors)
        print(
            f"ray, {actors} actor{'s' if actors > 1 else ' '}        {figures[actors]:8.1f} images/s   "
            f"{figures[actors] / local:.2f}x   load {os.getloadavg()[0]:.2f}"
        )
    print(f"ray 2 actors / 1 actor: {figures[2] / figures[1]:.2f}x")
    print(f"load average after: {os.getloadavg()}")
    ray.shutdown()


if __name__ == "__main__":
    main()
