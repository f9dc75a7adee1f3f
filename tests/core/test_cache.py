"""The embedding cache: nothing computed twice, and a killed run resumes without loss or duplicates."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import iconograph as ig
from iconograph.engine.store import Store
from tests.conftest import CIFAR_TEST, cifar_images, run_cli


def counts(stderr: str) -> tuple[int, int]:
    match = re.search(r"(\d+) embeddings computed, (\d+) from cache", stderr)
    assert match, stderr
    return int(match[1]), int(match[2])


def image_cache_tables(store_dir):
    store = Store(store_dir)
    return [store.embedding_cache(n) for n in store.table_names() if n.startswith("image_")]


def test_second_run_computes_nothing_and_renamed_copies_hit_the_cache(tmp_path, tiny_clip):
    images = cifar_images(per_class=20)
    store = tmp_path / "store"
    args = ["--labels", "cat,dog", "--model", tiny_clip, "--store", store]
    first = run_cli("classify", *images, *args, "--out", tmp_path / "a.jsonl", check=True)
    assert counts(first.stderr) == (40, 0)

    second = run_cli("classify", *images, *args, "--out", tmp_path / "b.jsonl", check=True)
    assert counts(second.stderr) == (0, 40)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()

    copies = tmp_path / "renamed"
    copies.mkdir()
    for i, image in enumerate(images[:5]):
        shutil.copy(image, copies / f"copy-{i}.jpg")
    assert counts(run_cli("classify", copies, *args, check=True).stderr) == (0, 5)

    bypass = run_cli("classify", *images, *args, "--no-cache", check=True)
    assert counts(bypass.stderr) == (40, 0)
    assert sum(cache.count() for cache in image_cache_tables(store)) == 45 - 5  # --no-cache wrote nothing


def test_api_cache_counts(tmp_path, tiny_clip):
    images = cifar_images(per_class=3)
    embedder = ig.Embedder(str(tiny_clip), store=tmp_path / "store")
    first = embedder.embed_images(images)
    again = ig.Embedder(str(tiny_clip), store=tmp_path / "store").embed_images(images)
    assert (first.computed, first.cached, again.computed, again.cached) == (6, 0, 0, 6)
    assert (first.vectors == again.vectors).all()


def test_sigkill_mid_run_then_rerun_gives_complete_duplicate_free_output(tmp_path, tiny_clip):
    images = sorted((CIFAR_TEST / "cat").glob("*.jpg"))[:700] + sorted((CIFAR_TEST / "dog").glob("*.jpg"))[:700]
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(map(str, images)) + "\n")
    store, out = tmp_path / "store", tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "iconograph", "classify", str(listing), "--labels", "cat,dog",
               "--model", str(tiny_clip), "--store", str(store), "--out", str(out), "--batch-size", "8", "--workers", "1"]  # fmt: skip

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        committed = sum(cache.count() for cache in image_cache_tables(store)) if (store / "lance").exists() else 0
        if committed:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()  # the output only appears, complete, when a run finishes
    assert list(tmp_path.glob(".out.jsonl.*.tmp"))  # the killed writer's temporary is left behind
    done_before = sum(cache.count() for cache in image_cache_tables(store))
    assert 0 < done_before < len(images)

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    computed, cached = counts(rerun.stderr)
    assert cached >= done_before and computed + cached == len(images)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in images]  # every image once, in order
    assert all(r["error"] is None and r["labels"] for r in records)
    tables = image_cache_tables(store)
    assert len(tables) == 1
    hashes = {h for h in ig.Embedder(str(tiny_clip), store=store).embed_images(images).hashes}
    assert tables[0].count() == len(hashes)  # no duplicate rows: the store is intact
    assert not list(tmp_path.glob(".*.tmp"))  # the rerun removed the dead run's temporary
