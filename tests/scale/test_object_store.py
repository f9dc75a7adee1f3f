"""A store on object storage (moto's S3 server on 127.0.0.1): both engines, and re-runs compute nothing."""

from __future__ import annotations

import os

import numpy as np

import iconograph as ig
from iconograph.engine.store import Store
from tests.conftest import run_cli


def test_embed_into_s3_then_nothing_is_computed_again(tmp_path, tiny_clip, mixed_images, s3_store, monkeypatch):
    common = ["embed", *mixed_images, "--model", tiny_clip, "--runtime", "torch", "--no-progress"]
    first = run_cli(*common, "--store", s3_store, "--out", tmp_path / "first.npz", check=True)
    ok = len(mixed_images) - int(first.stderr.split(" ok, ")[1].split(" failed")[0])
    distinct = len({path.read_bytes() for path in mixed_images}) - (len(mixed_images) - ok)  # copies: once
    assert f"{distinct} embeddings computed, 0 from cache" in first.stderr

    # endpoint and path style given as --storage-option instead of the environment
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_ALLOW_HTTP")
    options = ["--storage-option", f"aws_endpoint={endpoint}", "--storage-option", "allow_http=true"]
    second = run_cli(*common, "--store", s3_store, *options, "--out", tmp_path / "second.npz", check=True)
    assert f"0 embeddings computed, {ok} from cache" in second.stderr
    first, second = np.load(tmp_path / "first.npz"), np.load(tmp_path / "second.npz")
    np.testing.assert_array_equal(second["vectors"], first["vectors"])
    assert list(second["errors"]) == list(first["errors"])

    assert run_cli(*common, "--store", s3_store, "--storage-option", "no-equals-sign").returncode == 2


def test_both_engines_share_an_s3_store(tmp_path, tiny_clip, mixed_images, s3_store, ray_cluster):
    paths = [str(p) for p in mixed_images]
    options = {"labels": ["cat", "dog", "ship"], "batch_size": 4, "runtime": "torch", "progress": False}
    expected = ig.classify(paths, model=str(tiny_clip), store=tmp_path / "local", **options)

    on_ray = ig.Embedder(str(tiny_clip), store=Store(s3_store), engine="ray", batch_size=4, runtime="torch")
    assert ig.classify(paths, embedder=on_ray, **{k: v for k, v in options.items() if k == "labels"}) == expected
    ok = sum(p.error is None for p in expected)
    assert 0 < on_ray.stats.computed <= ok  # identical files are computed once

    # the local engine finds every embedding the Ray run stored (and the model's scoring metadata)
    local = ig.Embedder(str(tiny_clip), store=Store(s3_store), runtime="torch", batch_size=4)
    assert ig.classify(paths, embedder=local, labels=options["labels"]) == expected
    assert local.stats.computed == 0 and local.stats.cached == ok
    assert Store(s3_store).read_meta(f"scoring_{local.model.fingerprint}") is not None
