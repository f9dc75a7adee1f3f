"""``predict`` and ``index`` with ``--engine ray`` give the local engine's files and collections."""

from __future__ import annotations

import pytest

import iconograph as ig
from iconograph.learning.model_folder import run_predict
from iconograph.search import SearchCollection
from iconograph.search.run import index_collection
from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("ray_cluster")

OPTIONS = {"batch_size": 3, "workers": 0, "progress": False}


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory, tiny_clip, mixed_images):
    """A logistic head on the tiny CLIP, trained on the photos (labelled by their class folder)."""
    root = tmp_path_factory.mktemp("trained")
    photos = [p for p in mixed_images if p.parent.name in ("cat", "dog")]
    truth = root / "truth.csv"
    truth.write_text("path,labels\n" + "".join(f"{p},{p.parent.name}\n" for p in photos))
    ig.train(
        truth, truth, head="logistic", backbone=str(tiny_clip), out=root / "model", store=root / "store", **OPTIONS
    )
    return root / "model"


def test_predict_on_ray_writes_the_local_file(tmp_path, trained_model, mixed_images, ray_cluster):
    run_predict(trained_model, mixed_images, out=tmp_path / "local.jsonl", store=tmp_path / "a", **OPTIONS)
    command = ["predict", *mixed_images, "--model", trained_model, "--batch-size", "3", "--workers", "0"]
    result = run_cli(
        *command,
        "--no-progress",
        "--store",
        tmp_path / "b",
        "--out",
        tmp_path / "ray.jsonl",
        "--engine",
        "ray",
        "--ray-address",
        ray_cluster,
        check=True,
    )
    assert f"{len(mixed_images)} images: " in result.stderr
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


def test_index_on_ray_builds_the_local_collection(tmp_path, tiny_clip, mixed_images):
    options = {"model": str(tiny_clip), "labels": "cat,dog,ship", "top_k": 2, **OPTIONS}
    local = index_collection(mixed_images, "c", store=tmp_path / "a", **options)
    ray = index_collection(mixed_images, "c", store=tmp_path / "b", engine="ray", actors=2, **options)
    assert ray.summary() == local.summary() and ray.failed == local.failed and local.failed
    columns = ("path", "hash", "vector", "labels", "scores")
    expected = SearchCollection("c", tmp_path / "a").vectors.rows(columns).sort_by("path")
    got = SearchCollection("c", tmp_path / "b").vectors.rows(columns).sort_by("path")
    assert got.to_pylist() == expected.to_pylist() and expected.num_rows == len(mixed_images) - len(local.failed)
