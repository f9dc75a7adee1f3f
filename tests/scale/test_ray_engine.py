"""``--engine ray`` gives the local engine's results: same records, order, errors and numbers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import iconograph as ig
from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_embedder_on_ray_equals_local(tmp_path, tiny_clip, mixed_images):
    paths = [str(p) for p in mixed_images + mixed_images[:2]]  # repeats are computed once
    options = {"batch_size": 3, "workers": 0, "runtime": "torch", "progress": False}
    local = ig.Embedder(str(tiny_clip), store=tmp_path / "local", **options)
    ray = ig.Embedder(str(tiny_clip), store=tmp_path / "ray", engine="ray", actors=2, **options)
    expected, got = local.embed_images(paths), ray.embed_images(paths)

    assert got.paths == expected.paths and got.hashes == expected.hashes
    failed = sum(e is not None for e in expected.errors)
    assert got.errors == expected.errors and failed >= 3  # truncated, zero-byte, text (and more)
    np.testing.assert_array_equal(got.vectors, expected.vectors)  # the same batches: bit-identical
    assert ray.stats == local.stats

    # the results went to the store: a second run computes nothing and reads the same vectors
    again = ig.Embedder(str(tiny_clip), store=tmp_path / "ray", engine="ray", **options)
    np.testing.assert_array_equal(again.embed_images(paths).vectors, expected.vectors)
    assert again.stats.computed == 0 and again.stats.cached == len(paths) - failed


def test_small_chunks_keep_order_and_count_repeats_as_cached(tmp_path, tiny_clip, mixed_images):
    paths = [str(p) for p in mixed_images[:5] + mixed_images[:5] + mixed_images[-4:]]
    options = {"batch_size": 2, "workers": 0, "runtime": "torch", "progress": False, "chunk_size": 4}
    local = ig.Embedder(str(tiny_clip), store=tmp_path / "local", **options)
    ray = ig.Embedder(str(tiny_clip), store=tmp_path / "ray", engine="ray", **options)
    expected = [(c.paths, c.errors, c.vectors) for c in local.iter_images(paths)]
    got = [(c.paths, c.errors, c.vectors) for c in ray.iter_images(paths)]
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    for (_, _, a), (_, _, b) in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert ray.stats == local.stats


def test_classify_and_embed_commands_on_ray_write_the_local_files(tmp_path, tiny_clip, mixed_images, ray_cluster):
    common = ["--model", tiny_clip, "--batch-size", "4", "--runtime", "torch", "--no-progress"]
    classify = ["classify", *mixed_images, "--labels", "cat,dog,ship", "--multi-label", "--threshold", "0.3", *common]
    run_cli(*classify, "--store", tmp_path / "s1", "--out", tmp_path / "local.jsonl", check=True)
    result = run_cli(
        *classify,
        "--store",
        tmp_path / "s2",
        "--out",
        tmp_path / "ray.jsonl",
        "--engine",
        "ray",
        "--ray-address",
        ray_cluster,
        check=True,
    )
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    records = [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in mixed_images]
    failed = sum(r["error"] is not None for r in records)
    assert f"{len(mixed_images)} images: {len(mixed_images) - failed} ok, {failed} failed" in result.stderr

    embed = ["embed", *mixed_images, *common]
    run_cli(*embed, "--store", tmp_path / "s1", "--out", tmp_path / "local.npz", check=True)
    result = run_cli(
        *embed,
        "--store",
        tmp_path / "s3",
        "--out",
        tmp_path / "ray.npz",
        "--ray-address",
        ray_cluster,
        env={"ICONOGRAPH_ENGINE": "ray"},
        check=True,
    )
    assert "truncated.jpg: cannot decode image" in result.stderr
    local, ray = np.load(tmp_path / "local.npz"), np.load(tmp_path / "ray.npz")
    for key in ("paths", "vectors", "errors"):
        np.testing.assert_array_equal(ray[key], local[key])


def test_an_unknown_engine_is_a_usage_error(tiny_clip, mixed_images):
    result = run_cli("embed", mixed_images[0], "--model", tiny_clip, "--engine", "spark")
    assert result.returncode == 2 and "--engine must be one of local, ray" in result.stderr


def test_detect_and_caption_on_ray_equal_local(tmp_path, tiny_owlvit_model, tiny_blip_model, mixed_images):
    paths = [str(p) for p in mixed_images[6:]]  # two photos and the bad files
    options = {"batch_size": 3, "workers": 0, "progress": False}
    local = ig.detect(paths, "cat,dog", model=str(tiny_owlvit_model), store=tmp_path / "a", **options)
    ray = ig.detect(paths, "cat,dog", model=str(tiny_owlvit_model), store=tmp_path / "b", engine="ray", **options)
    assert [r.to_record() for r in ray] == [r.to_record() for r in local]
    assert any(r.error for r in local) and any(r.detections is not None and len(r.detections) for r in local)

    local = ig.caption(paths, model=str(tiny_blip_model), store=tmp_path / "a", max_new_tokens=5, **options)
    ray = ig.caption(
        paths, model=str(tiny_blip_model), store=tmp_path / "b", max_new_tokens=5, engine="ray", actors=2, **options
    )
    assert [c.to_record() for c in ray] == [c.to_record() for c in local]
    assert any(c.error for c in local) and any(c.text for c in local)


def test_model_actors_write_fragments_and_one_driver_commit_shows_them(tmp_path, tiny_clip, mixed_images):
    """Issue 13: the workers write the results into the store; the driver only commits."""
    from iconograph.engine.ray_engine import RaySettings, run_pipeline

    paths = [str(p) for p in mixed_images]
    embedder = ig.Embedder(str(tiny_clip), store=tmp_path / "ray", engine="ray", runtime="torch", progress=False)
    cache = embedder.image_cache
    batches = [list(enumerate(paths))[i : i + 3] for i in range(0, len(paths), 3)]
    yielded = list(run_pipeline(batches, embedder, RaySettings(actors=1), max_pixels=None, min_size=None, cache=cache))

    results = [
        (h, v) for *_, hashes, values, errors, _ in yielded for h, v, e in zip(hashes, values, errors) if e is None
    ]
    written = [w for *_, w in yielded if w is not None]
    assert results and sorted(k for w in written for k in w.keys) == sorted(h for h, _ in results)  # all, by actors
    assert cache.dataset() is None  # written by the actors, not visible before the commit
    computed = dict(results)  # the collection holds identical copies: stored once
    assert cache.commit(written) == len(computed) < len(results) and len(cache.dataset().versions()) == 1
    found = ig.Embedder(str(tiny_clip), store=tmp_path / "ray").image_cache.lookup(list(computed))
    assert all(np.array_equal(found[h], v) for h, v in computed.items())


def test_an_actor_on_another_node_than_a_local_store_sends_its_results_back(tmp_path):
    from iconograph.engine.store import Store

    writer = Store(tmp_path).record_cache("records").fragment_writer(node_id="another-machine")
    assert not writer.reaches_store()
    assert Store(tmp_path).record_cache("records").fragment_writer().reaches_store()  # object storage: any node


def test_relative_paths_on_a_joined_cluster_mean_the_drivers_files(tmp_path, tiny_clip, ray_cluster):
    """The cluster's workers run in another directory than the CLI (this test process's): the
    images, a relative --model and a relative --store must still be the ones the user named."""
    from tests.conftest import cifar_images

    (tmp_path / "photos").mkdir()
    images = cifar_images(per_class=3)[:6]
    for i, path in enumerate(images):
        (tmp_path / "photos" / f"{i}-{path.name}").write_bytes(path.read_bytes())
    assert len({path.read_bytes() for path in images}) == 6
    shutil.copytree(tiny_clip, tmp_path / "clip")
    common = ["embed", "photos", "--model", "clip", "--runtime", "torch", "--no-progress", "--batch-size", "2"]
    run_cli(*common, "--store", "local", "--out", "local.npz", cwd=tmp_path, check=True)
    options = ["--store", "ray", "--engine", "ray", "--ray-address", ray_cluster]
    first = run_cli(*common, *options, "--out", "ray.npz", cwd=tmp_path, check=True)
    assert "6 embeddings computed, 0 from cache" in first.stderr
    local, ray = np.load(tmp_path / "local.npz"), np.load(tmp_path / "ray.npz")
    np.testing.assert_array_equal(ray["vectors"], local["vectors"])
    again = run_cli(*common, *options, "--out", "again.npz", cwd=tmp_path, check=True)  # the actors' fragments
    assert "0 embeddings computed, 6 from cache" in again.stderr
