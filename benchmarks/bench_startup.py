"""Start-up: what the short commands cost before they do any work (issue 10, item 5).

Measured as fresh processes, the way a user runs them:
  import       ``python -c "import iconograph"``
  help         ``iconograph --help``
  classify     a fully cached ``iconograph classify`` over ``--images`` CIFAR-10 JPEGs with a tiny
               CLIP (one run fills the cache; the figure is the re-run)
  evaluate     ``iconograph evaluate`` of that output against the ImageFolder truth

For each: wall time (median of ``--repeats`` runs), then one run under ``python -X importtime``
summed by top-level package (self time, the top ``--top`` packages and the total), and which of
the heavy libraries (torch, transformers, lancedb, ...) the process imported. The load average is
printed beside the figures: the machine is shared.

    python benchmarks/bench_startup.py [--images 300] [--repeats 5] [--top 12] [--src DIR]

``--src DIR`` measures another source tree (e.g. ``git archive`` of an older commit unpacked in
/tmp), so that before and after can be measured in one session under the same load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
WORK = ROOT / ".bench" / "startup"
HEAVY = (
    "torch",
    "torchvision",
    "transformers",
    "lancedb",
    "lance",
    "pyarrow",
    "sklearn",
    "scipy",
    "open_clip",
    "timm",
    "onnxruntime",
    "pandas",
    "huggingface_hub",
)
LABELS = "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck"


def setup(images: int) -> tuple[Path, Path]:
    """A tiny CLIP and an ImageFolder of ``images`` CIFAR-10 test JPEGs (links) under .bench/startup."""
    from iconograph.testing import save_tiny_clip

    model = WORK / "tiny-clip"
    if not (model / "model.safetensors").exists():
        save_tiny_clip(model)
    folder = WORK / f"images-{images}"
    if not folder.exists():
        classes = LABELS.split(",")
        per_class = -(-images // len(classes))
        for n, path in enumerate(
            p for c in classes for p in sorted((DATA / "cifar10" / "test" / c).glob("*.jpg"))[:per_class]
        ):
            if n >= images:
                break
            target = folder / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    return model, folder


SRC = ROOT / "src"


def env() -> dict:
    return {
        **os.environ,
        "ICONOGRAPH_HOME": str(WORK / "home"),
        "ICONOGRAPH_STORE": str(WORK / "store"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(SRC),
    }


def run(args: list[str], importtime: bool = False) -> tuple[float, str]:
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), *args]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env())
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-2000:]}")
    return elapsed, result.stderr


def import_table(stderr: str) -> tuple[dict[str, float], float, set[str]]:
    """Self import time (s) per top-level package, the total, and the modules imported."""
    per_package: dict[str, float] = defaultdict(float)
    modules = set()
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line.removeprefix("import time:").split("|")
        name = name.strip()
        modules.add(name)
        per_package[name.split(".")[0]] += int(self_us) / 1e6
    return dict(per_package), sum(per_package.values()), modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--src", type=Path, help="the source tree to measure (default: this one)")
    args = parser.parse_args()
    global SRC
    SRC = (args.src or SRC).resolve()
    print(f"source tree: {SRC}")

    model, folder = setup(args.images)
    out = WORK / "preds.jsonl"
    shutil.rmtree(WORK / "store", ignore_errors=True)
    classify = [
        "-m",
        "iconograph",
        "classify",
        str(folder),
        "--labels",
        LABELS,
        "--model",
        str(model),
        "--out",
        str(out),
        "--no-progress",
    ]
    fill, stderr = run(classify)  # fills the cache: the commands below are the cached re-runs
    print(f"first (uncached) classify: {fill:.2f} s; {stderr.strip().splitlines()[-1]}")
    commands = {
        "import": ["-c", "import iconograph"],
        "help": ["-m", "iconograph", "--help"],
        "classify (cached)": classify,
        "evaluate": ["-m", "iconograph", "evaluate", str(out), "--truth", str(folder)],
    }
    bare = statistics.median(run(["-c", "pass"])[0] for _ in range(args.repeats))
    print(f"\n{args.images} images; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine)")
    print(f"bare python start-up: {bare:.3f} s (median of {args.repeats})\n")
    for name, command in commands.items():
        times = [run(command)[0] for _ in range(args.repeats)]
        per_package, total, modules = import_table(run(command, importtime=True)[1])
        heavy = [h for h in HEAVY if h in modules]
        print(
            f"== {name}: wall {statistics.median(times):.3f} s (median of {args.repeats}, "
            f"min {min(times):.3f}); imports {total:.3f} s self time in total; "
            f"load {os.getloadavg()[0]:.2f}"
        )
        print(f"   heavy libraries imported: {', '.join(heavy) or 'none'}")
        for package, seconds in sorted(per_package.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"   {seconds:7.3f} s  {package}")
        print()


if __name__ == "__main__":
    main()
