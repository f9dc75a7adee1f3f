"""Bounded load test of ``iconograph serve`` on the loopback interface only.

Starts the real service in a subprocess on 127.0.0.1 (a tiny random CLIP, a small indexed
collection of CIFAR-10 test images), then runs ``--clients`` concurrent clients for
``--seconds`` (and at most ``--max-requests`` requests in all). Each client alternates text
search and classify (upload of a 32x32 JPEG). Reports errors and latency p50/p99 per endpoint,
with ``/health`` measured in the same run as the baseline (the cost of one HTTP round trip).

    python benchmarks/load_service.py                       # 200 clients, 60 s
    python benchmarks/load_service.py --clients 20 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "test"
HOST = "127.0.0.1"  # loopback only, by design
QUERIES = ["a cat", "a dog on grass", "a red truck", "an airplane in the sky", "a ship at sea", "a small bird"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def prepare(folder: Path, images: int) -> tuple[Path, Path, list[Path]]:
    from iconograph.testing import save_tiny_clip

    model = save_tiny_clip(folder / "tiny-clip")
    photos = folder / "photos"
    chosen = sorted(CIFAR.glob("*/*.jpg"))[:: max(1, 10000 // images)][:images]
    for path in chosen:
        (photos / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, photos / path.parent.name / path.name)
    return model, photos, chosen


def run_cli(*args, env) -> None:
    subprocess.run(
        [sys.executable, "-m", "iconograph", *map(str, args)], check=True, env=env, stdout=subprocess.DEVNULL
    )


async def wait_healthy(client, url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if (await client.get(f"{url}/health")).status_code == 200:
                return
        except Exception:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the service did not start")


async def load(url: str, token: str, clients: int, seconds: float, max_requests: int, upload: bytes) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    results: dict[str, list[float]] = {"health": [], "search": [], "classify": []}
    errors: dict[str, int] = {}
    sent = 0
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=60) as client:
        await wait_healthy(client, url)
        # warm-up, not timed: the first requests load the model and prepare the label prompts
        await client.get(f"{url}/api/collections/load/search", params={"q": "warm-up", "k": 10})
        await client.post(
            f"{url}/api/classify",
            files={"file": ("probe.jpg", upload, "image/jpeg")},
            data={"labels": "cat,dog,bird,ship,truck", "top_k": "3"},
        )
        for _ in range(50):  # baseline, unloaded: one HTTP round trip
            start = time.perf_counter()
            await client.get(f"{url}/health")
            results["health"].append(time.perf_counter() - start)
        deadline = time.monotonic() + seconds

        async def one_client(n: int) -> None:
            nonlocal sent
            i = n
            while time.monotonic() < deadline and sent < max_requests:
                sent += 1
                i += 1
                kind = "search" if i % 2 else "classify"
                start = time.perf_counter()
                try:
                    if kind == "search":
                        response = await client.get(
                            f"{url}/api/collections/load/search", params={"q": QUERIES[i % len(QUERIES)], "k": 10}
                        )
                    else:
                        response = await client.post(
                            f"{url}/api/classify",
                            files={"file": ("probe.jpg", upload, "image/jpeg")},
                            data={"labels": "cat,dog,bird,ship,truck", "top_k": "3"},
                        )
                    ok = response.status_code == 200
                    reason = f"HTTP {response.status_code}"
                except Exception as exc:  # a refused or dropped connection counts as an error
                    ok, reason = False, type(exc).__name__
                if ok:
                    results[kind].append(time.perf_counter() - start)
                else:
                    errors[f"{kind}: {reason}"] = errors.get(f"{kind}: {reason}", 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    return {"latency": results, "errors": errors, "elapsed": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=200_000, help="hard cap on requests in all")
    parser.add_argument("--images", type=int, default=200, help="images in the indexed collection")
    args = parser.parse_args()
    if not 1 <= args.clients <= 500 or not 0 < args.seconds <= 600:
        parser.error("keep it bounded: 1..500 clients, at most 600 s")

    folder = Path(tempfile.mkdtemp(prefix="iconograph-load-"))
    env = {
        **os.environ,
        "ICONOGRAPH_HOME": str(folder / "home"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }
    server = None
    try:
        model, photos, chosen = prepare(folder, args.images)
        store = folder / "store"
        run_cli(
            "index",
            photos,
            "--model",
            model,
            "--store",
            store,
            "--collection",
            "load",
            "--labels",
            "cat,dog,bird,ship,truck",
            env=env,
        )
        token_file = folder / "token"
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "iconograph",
                "serve",
                "--host",
                HOST,
                "--port",
                str(port),
                "--token-file",
                str(token_file),
                "--store",
                str(store),
                "--model",
                str(model),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(600):
            if token_file.exists() or server.poll() is not None:
                break
            time.sleep(0.1)
        time.sleep(0.2)
        token = token_file.read_text().strip()
        upload = chosen[0].read_bytes()
        report = asyncio.run(
            load(f"http://{HOST}:{port}", token, args.clients, args.seconds, args.max_requests, upload)
        )
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(folder, ignore_errors=True)

    ms = {k: np.array(v) * 1000 for k, v in report["latency"].items()}
    base = float(np.percentile(ms["health"], 50))
    total = sum(len(ms[k]) for k in ("search", "classify"))
    failed = sum(report["errors"].values())
    print(
        f"{args.clients} clients for {report['elapsed']:.1f} s on {HOST} (tiny CLIP, {args.images} images; "
        f"shared 2-core machine)"
    )
    print(
        f"requests: {total} ok, {failed} errors ({total / report['elapsed']:.0f} req/s)"
        + (f": {report['errors']}" if failed else "")
    )
    print(f"baseline /health (unloaded): p50 {base:.2f} ms")
    for kind in ("search", "classify"):
        if len(ms[kind]):
            p50, p99 = np.percentile(ms[kind], [50, 99])
            print(
                f"{kind:9s} {len(ms[kind]):6d} ok: p50 {p50:7.1f} ms, p99 {p99:7.1f} ms "
                f"({p50 / base:.0f}x baseline p50)"
            )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
