"""Start-up stays light (issue 10): heavy libraries load only where they are used.

Each check runs in a fresh interpreter and reads ``sys.modules`` at its end, so a module-level
``import torch`` anywhere on the path of ``import iconograph``, ``iconograph --help`` or a fully
cached ``classify`` fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import cifar_images

HEAVY = ("torch", "transformers", "lancedb", "lance", "pyarrow", "sklearn", "scipy", "open_clip", "timm", "onnxruntime")

# Runs the command line in this process (as `python -m iconograph` does), then prints the heavy
# top-level packages it imported as JSON on the last line of stdout.
PROBE = """
import json, runpy, sys
args, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
code = 0
if args is None:
    import iconograph
else:
    sys.argv = ["iconograph", *args]
    try:
        runpy.run_module("iconograph", run_name="__main__")
    except SystemExit as exc:
        code = exc.code or 0
print(json.dumps({"code": code, "loaded": sorted({name.split(".")[0] for name in sys.modules} & set(heavy))}))
"""


def heavy_imports(args: list | None) -> dict:
    """Run ``iconograph ARGS`` (``None``: just ``import iconograph``) in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(None if args is None else [str(a) for a in args]), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]) | {"stderr": result.stderr}


def test_import_iconograph_loads_no_heavy_library():
    probe = heavy_imports(None)
    assert probe["loaded"] == [], probe


def test_help_loads_no_heavy_library():
    probe = heavy_imports(["--help"])
    assert probe["code"] == 0 and probe["loaded"] == [], probe
    probe = heavy_imports(["classify", "--help"])
    assert probe["code"] == 0 and probe["loaded"] == [], probe


def test_fully_cached_classify_loads_neither_torch_nor_transformers(tmp_path, tiny_clip):
    out = tmp_path / "out.jsonl"
    args = ["classify", *cifar_images(per_class=2), "--labels", "cat,dog", "--model", tiny_clip, "--out", out]
    args += ["--multi-label", "--no-progress"]  # multi-label: the neutral prompt and sigmoid too
    first = heavy_imports(args)
    assert first["code"] == 0 and "torch" in first["loaded"], first  # the first run computes
    computed = out.read_text()

    again = heavy_imports(args)
    assert again["code"] == 0, again
    assert "0 embeddings computed, 4 from cache" in again["stderr"]
    assert not {"torch", "transformers", "sklearn", "scipy"} & set(again["loaded"]), again
    assert out.read_text() == computed


def test_every_public_name_resolves_lazily():
    import iconograph as ig

    assert set(ig.__all__) <= set(dir(ig))
    for name in ig.__all__:
        value = getattr(ig, name)
        if name != "__version__":
            assert value is getattr(__import__(ig._LAZY[name], fromlist=[name]), name), name
    from iconograph import Embedder, classify  # noqa: F401  (the from-import form works too)

    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        ig.not_a_name  # noqa: B018


def test_softmax_and_sigmoid_match_scipy():
    from scipy.special import expit
    from scipy.special import softmax as scipy_softmax

    from iconograph.classification.decisions import sigmoid, softmax

    rng = np.random.default_rng(0)
    for logits in (
        rng.normal(size=(200, 9)) * 30,
        rng.normal(size=(20, 3)).astype(np.float32),
        np.array([[-800.0, 0.0, 800.0]]),
    ):
        assert softmax(logits).dtype == scipy_softmax(logits, axis=-1).dtype
        np.testing.assert_array_max_ulp(softmax(logits), scipy_softmax(logits, axis=-1), maxulp=1)
        assert sigmoid(logits).dtype == expit(logits).dtype
        np.testing.assert_array_max_ulp(sigmoid(logits), expit(logits), maxulp=2)  # libm vs NumPy exp


def test_remembered_processor_class_gives_the_same_cache_key(tiny_clip):
    """The cache key of a run that never loads the image processor is the one that loads it."""
    import transformers

    from iconograph.backends.hf import HFBackend

    loaded = HFBackend(str(tiny_clip))
    picked = type(transformers.AutoImageProcessor.from_pretrained(tiny_clip)).__name__
    expected = loaded.hf.preprocess_fingerprint(picked)
    assert loaded.preprocess_fingerprint == expected  # first time: found by loading the processor

    fresh = HFBackend(str(tiny_clip))
    assert fresh.preprocess_fingerprint == expected  # then remembered
    assert "image_processor" not in fresh.__dict__  # ... without loading it
    assert fresh.image_cache_key() == loaded.image_cache_key()
