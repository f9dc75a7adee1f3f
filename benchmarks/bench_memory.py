"""Memory that stays flat (issue 10, item 4): peak RSS of ``iconograph classify`` by collection size.

Distinct small images (32x32 PNGs of random noise, so the content-hash cache cannot dedupe them)
are generated once into .bench/memory/pool, 1000 per folder; a size of N uses the first N/1000
folders. For each size, ``iconograph classify`` runs as a fresh process with a tiny CLIP on an
empty store (every image computed), then again on the same store (every image from the cache).
Reported per run: the process's own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``, read at its
exit), the largest decode worker's peak (``RUSAGE_CHILDREN``), the wall time and the growth of
the peak against the smallest size. Goal: at most 10 % growth from 10^4 to 10^5 images.
The load average is printed beside the figures: the machine is shared.

    python benchmarks/bench_memory.py [--sizes 10000 30000 100000] [--skip-cached] [--prefill]

``--prefill`` measures only the cached runs, at sizes where computing every image takes hours on
a busy 2-core machine: the first folder is classified for real (its images and the label texts
computed), then the cache is filled with random vectors under the other images' content hashes
(the keys the cached run looks up) in a separate process, then the measured cached run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".bench" / "memory"
PER_FOLDER = 1000
SIDE = 32

# Runs the command line in this process (as `python -m iconograph` does) and prints the peaks.
PROBE = """
import json, resource, runpy, sys
sys.argv = ["iconograph", *json.loads(sys.argv[1])]
code = 0
try:
    runpy.run_module("iconograph", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"code": code, "peak_mib": peak, "worker_peak_mib": workers}))
"""


def make_pool(count: int) -> list[Path]:
    """The first ``count // PER_FOLDER`` folders of distinct noise PNGs, made where missing."""
    from PIL import Image

    folders = []
    for index in range(-(-count // PER_FOLDER)):
        folder = WORK / "pool" / f"{index:05d}"
        folders.append(folder)
        done = folder.with_suffix(".done")  # beside the folder: inside it would be read as an image
        if done.exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(index)
        pixels = rng.integers(0, 256, (PER_FOLDER, SIDE, SIDE, 3), dtype=np.uint8)
        for n in range(PER_FOLDER):
            Image.fromarray(pixels[n]).save(folder / f"{n:04d}.png", compress_level=1)
        done.touch()
    return folders


def model_dir() -> Path:
    """The tiny CLIP, built in a child process: Linux keeps a process's peak RSS across exec, so a
    parent that had imported torch would pass its own peak on to every measured classify."""
    model = WORK / "tiny-clip"
    if not (model / "model.safetensors").exists():
        build = f"from iconograph.testing import save_tiny_clip; save_tiny_clip({str(model)!r})"
        subprocess.run([sys.executable, "-c", build], check=True)
    return model


# Fills the image cache of the model (as classify opens it) for the given folders' images.
PREFILL = """
import json, sys
import numpy as np
from iconograph.engine.embed import Embedder
from iconograph.engine.jobs import hash_files
from iconograph.reading.sources import read_collection
model, store, folders = json.loads(sys.argv[1])
cache = Embedder(model, store=store).image_cache
paths = [item.path for item in read_collection(folders)]
for start in range(0, len(paths), 10000):
    hashes, _ = hash_files(paths[start : start + 10000])
    dim = len(next(iter(cache.lookup(hashes).values()))) if start == 0 else dim
    rng = np.random.default_rng(start)
    vectors = rng.standard_normal((len(hashes), dim)).astype(np.float32)
    cache.add(hashes, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
print(len(paths))
"""


def prefill(folders: list[Path], model: Path, store: Path) -> None:
    env = {**os.environ, "ICONOGRAPH_HOME": str(WORK / "home"), "HF_HUB_OFFLINE": "1"}
    args = json.dumps([str(model), str(store), [str(f) for f in folders]])
    subprocess.run([sys.executable, "-c", PREFILL, args], check=True, env=env)


def classify(folders: list[Path], model: Path, store: Path, out: Path, extra: list[str]) -> dict:
    args = [*map(str, folders), "--labels", "red,green,blue,noise", "--model", str(model)]
    args = ["classify", *args, "--store", str(store), "--out", str(out), "--no-progress", *extra]
    env = {**os.environ, "ICONOGRAPH_HOME": str(WORK / "home"), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or not result.stdout.strip():
        raise SystemExit(f"classify failed ({result.returncode}):\n{result.stderr[-3000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    summary = [line for line in result.stderr.splitlines() if " images: " in line]
    return figures | {"seconds": elapsed, "summary": summary[-1] if summary else result.stderr[-500:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--skip-cached", action="store_true", help="only the first (computing) run per size")
    parser.add_argument("--runtime", default="torch", help="--runtime for classify (default torch)")
    parser.add_argument("--workers", type=int, default=1, help="--workers for classify (default 1)")
    parser.add_argument("--prefill", action="store_true", help="cached runs only, on a prefilled cache")
    args = parser.parse_args()

    start = time.perf_counter()
    folders = make_pool(max(args.sizes))
    print(f"images: {max(args.sizes)} noise PNGs {SIDE}x{SIDE} ready in {time.perf_counter() - start:.1f} s")
    model = model_dir()
    extra = ["--runtime", args.runtime, "--workers", str(args.workers)]
    rows = []
    for size in sorted(args.sizes):
        store = WORK / f"store-{size}"
        shutil.rmtree(store, ignore_errors=True)
        out = WORK / f"preds-{size}.jsonl"
        used = folders[: -(-size // PER_FOLDER)]
        kinds = ("computed", "cached")[: 1 if args.skip_cached else 2]
        if args.prefill:
            classify(used[:1], model, store, out, extra)  # the label texts and one folder, for real
            prefill(used, model, store)  # the first folder is already there: its vectors give the width
            kinds = ("cached",)
        for kind in kinds:
            load = os.getloadavg()[0]
            figures = classify(used, model, store, out, extra)
            rows.append((size, kind, figures, load))
            print(
                f"{size:>7} images {kind:>8}: peak RSS {figures['peak_mib']:7.1f} MiB, largest worker "
                f"{figures['worker_peak_mib']:7.1f} MiB, {figures['seconds']:6.1f} s "
                f"({size / figures['seconds']:.0f} images/s), load {load:.1f}; {figures['summary']}",
                flush=True,
            )
        shutil.rmtree(store, ignore_errors=True)
    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine)")
    for kind in ("computed", "cached"):
        runs = [(size, figures) for size, k, figures, _ in rows if k == kind]
        if len(runs) > 1:
            base_size, base = runs[0]
            for size, figures in runs[1:]:
                growth = figures["peak_mib"] / base["peak_mib"] - 1
                print(f"{kind}: peak RSS at {size} vs {base_size} images: {growth:+.1%} (goal: at most +10 %)")


if __name__ == "__main__":
    main()
