import json

import numpy as np
import pyarrow.parquet as pq

import iconograph as ig
from tests.conftest import cifar_images, run_cli


def test_embed_writes_vectors_that_equal_the_api(tmp_path, tiny_clip):
    images = cifar_images(per_class=3)
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    sources = [*images, broken]
    expected = ig.Embedder(str(tiny_clip), store=tmp_path / "api-store").embed_images(images).vectors

    store = tmp_path / "store"
    for name in ("v.npz", "v.parquet", "v.jsonl"):
        result = run_cli(
            "embed", *sources, "--model", tiny_clip, "--store", store, "--out", tmp_path / name, check=True
        )
        assert "1 failed" in result.stderr and "broken.jpg: not a recognised image format" in result.stderr

    npz = np.load(tmp_path / "v.npz")
    assert list(npz["paths"]) == [str(p) for p in sources]
    np.testing.assert_allclose(npz["vectors"][:-1], expected, atol=1e-6)
    assert list(npz["errors"][:-1]) == [""] * len(images) and npz["errors"][-1]

    table = pq.read_table(tmp_path / "v.parquet")
    np.testing.assert_allclose(np.stack(table.column("vector").to_pylist()[:-1]), expected, atol=1e-6)

    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert rows[-1]["vector"] is None and rows[-1]["error"]
    np.testing.assert_allclose(np.array([r["vector"] for r in rows[:-1]]), expected, atol=1e-6)

    strict = run_cli("embed", *sources, "--model", tiny_clip, "--store", store, "--strict")
    assert strict.returncode == 3 and "0 embeddings computed" in strict.stderr
