"""Faults: a model actor or the driver SIGKILLed mid-job; every image still comes out exactly once.

A killed actor is restarted by Ray and its unfinished batches are sent again (the job completes
in the same run); a killed driver loses only the results not yet committed to the cache, and the
same command run again computes exactly those.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import lance
import numpy as np
import pytest

import iconograph as ig
from iconograph.engine.jobs import ImageJobRunner
from iconograph.testing import SlowJob
from tests.conftest import cifar_images

pytestmark = pytest.mark.usefixtures("ray_cluster")

OPTIONS = {"batch_size": 2, "workers": 0, "runtime": "torch", "progress": False}


def alive_model_actors() -> list[dict]:
    """The cluster's live Ray Data model actors, from the GCS actor table (``ray.util.state``
    needs the dashboard, which the shared test cluster does not start)."""
    from ray._private import state

    return [
        actor
        for actor in state.actors().values()
        if actor["State"] == "ALIVE" and "MapWorker" in actor["ActorClassName"]
    ]


def actor_info(actor_id: str) -> dict:
    from ray._private import state

    return state.actors(actor_id=actor_id)


def cache_keys(store) -> list[str]:
    """Every key of the store's one embedding cache table (duplicates included)."""
    (table,) = (store / "lance").glob("image_*.lance")
    return lance.dataset(str(table)).to_table(columns=["key"]).column("key").to_pylist()


def test_a_killed_model_actor_is_restarted_and_the_job_completes(tmp_path, tiny_clip):
    paths = [str(p) for p in cifar_images(per_class=8)]
    expected = ig.Embedder(str(tiny_clip), store=tmp_path / "local", **OPTIONS).embed_images(paths)

    embedder = ig.Embedder(str(tiny_clip), store=tmp_path / "ray", engine="ray", actors=1, **OPTIONS)
    runner = ImageJobRunner(
        SlowJob(embedder, 0.3),  # 8 batches of 2: about 2.4 s of model time, so the kill lands mid-job
        cache=embedder.image_cache,
        batch_size=2,
        chunk_size=2,
        progress=False,
        engine="ray",
        actors=1,
    )
    chunks = runner.run_chunks(paths)
    results = list(next(chunks))  # the first batch is back: the actor is up and working
    (actor,) = alive_model_actors()
    os.kill(actor["Pid"], signal.SIGKILL)
    results += [r for chunk in chunks for r in chunk]

    assert [r.path for r in results] == paths and all(r.error is None for r in results)
    np.testing.assert_array_equal(np.stack([r.value for r in results]), expected.vectors)
    assert runner.stats.computed == len(paths) and len(results) < 2 * len(paths)
    keys = cache_keys(tmp_path / "ray")
    assert sorted(keys) == sorted(expected.hashes)  # every image once in the store, none twice
    assert actor_info(actor["ActorID"])["NumRestarts"] >= 1  # Ray restarted it in another process


def test_a_killed_driver_loses_only_uncommitted_results_and_a_rerun_completes(tmp_path, tiny_clip, ray_cluster):
    images = [str(p) for p in cifar_images(per_class=60)]
    store, out = tmp_path / "store", tmp_path / "vectors.npz"
    command = [sys.executable, "-m", "iconograph", "embed", *images, "--model", str(tiny_clip)]
    command += ["--batch-size", "2", "--runtime", "torch", "--no-progress", "--store", str(store)]
    command += ["--out", str(out), "--engine", "ray", "--ray-address", ray_cluster]
    # every batch is committed as it arrives, so the driver can be killed between commits
    env = {**os.environ, "ICONOGRAPH_FLUSH_SECONDS": "0"}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        committed = wait_for_commits(store, driver, timeout=120)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait()
    assert driver.returncode == -signal.SIGKILL and not out.exists()
    keys = cache_keys(store)
    assert committed <= len(keys) < len(images), "the driver was killed after the job had finished"
    assert len(set(keys)) == len(keys)

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    computed, cached = map(int, re.search(r"(\d+) embeddings computed, (\d+) from cache", rerun.stderr).groups())
    assert (computed, cached) == (len(images) - len(keys), len(keys))  # only what the killed run lost

    result = np.load(out)
    assert list(result["paths"]) == images and not any(result["errors"])
    expected = ig.Embedder(str(tiny_clip), store=tmp_path / "local", **OPTIONS).embed_images(images)
    # other batches than one local run forms (only the misses): equal up to float rounding
    np.testing.assert_allclose(result["vectors"], expected.vectors, rtol=1e-5, atol=1e-6)
    keys = cache_keys(store)
    assert Counter(keys) == Counter(expected.hashes)  # each image exactly once in the store


def wait_for_commits(store, driver: subprocess.Popen, timeout: float) -> int:
    """Poll the store until the running driver has committed some results; their number."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.poll() is not None:
            raise AssertionError(f"the driver ended before the kill:\n{driver.stderr.read().decode()}")
        try:
            count = len(cache_keys(store))
        except (ValueError, OSError):  # no table (or no version of it) yet
            count = 0
        if count:
            return count
        time.sleep(0.05)
    raise AssertionError("no results were committed in time")


def test_a_batch_that_kills_its_actor_every_time_fails_the_job_in_one_line(tmp_path, tiny_clip):
    """Out of memory on one batch, say: Ray would resend it forever; after 4 attempts the job stops."""
    from PIL import Image

    from iconograph.engine.ray_engine import BATCH_ATTEMPTS
    from iconograph.errors import ResourceError
    from iconograph.reading.decode import content_hash
    from iconograph.testing import KillingJob

    paths = []
    for i in range(6):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (77, 55) if i == 3 else (64, 64), (40 * i, 0, 0)).save(paths[-1])
    embedder = ig.Embedder(str(tiny_clip), store=tmp_path / "store", engine="ray", actors=1, **OPTIONS)
    runner = ImageJobRunner(
        KillingJob(embedder, (77, 55)), cache=embedder.image_cache, batch_size=2, progress=False, engine="ray", actors=1
    )
    with pytest.raises(ResourceError, match=f"killed its Ray actor {BATCH_ATTEMPTS} times") as caught:
        list(runner.run_chunks(paths))
    assert "\n" not in str(caught.value)
    # what was committed before (Ray Data may drop outputs it held when it aborts) holds each key once
    kept = (
        cache_keys(tmp_path / "store") if list((tmp_path / "store" / "lance").glob("image_*.lance/_versions")) else []
    )
    assert content_hash(Path(paths[3]).read_bytes()) not in kept and len(set(kept)) == len(kept)


def test_an_actor_that_cannot_build_its_job_fails_with_the_cause_not_as_out_of_memory(tmp_path, tiny_clip):
    import functools
    from types import SimpleNamespace

    import ray

    from iconograph.engine.ray_engine import RaySettings, run_pipeline

    embedder = ig.Embedder(str(tiny_clip), store=tmp_path / "store", **OPTIONS)
    job = SimpleNamespace(
        make_preprocess=embedder.make_preprocess, for_worker=lambda: functools.partial(int, "not a model")
    )
    paths = [str(p) for p in cifar_images(per_class=1)[:2]]
    with pytest.raises(ray.exceptions.RayActorError) as caught:
        list(run_pipeline([list(enumerate(paths))], job, RaySettings(actors=1), max_pixels=None, min_size=None))
    assert caught.value.actor_init_failed and "invalid literal for int()" in str(caught.value)
