"""``torchrun --nproc-per-node 2 -m iconograph train --head finetune`` (gloo, CPU) trains the model
one process trains with the same global batch, and ``--resume`` after a kill continues it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.learn.conftest import cifar_rows, write_truth

# Two processes give the same result up to float rounding: the same permutation is shared out,
# every image gets the same augmentation (seeded per image), DDP starts both replicas from rank
# 0's weights, and the mean of the two half-batch gradients is the full batch's mean gradient,
# summed in another order. Those differences (~1e-7 relative) pass through AdamW, which divides
# by sqrt(v): measured, every weight stays within 1.2e-7 of the one-process run after 2 epochs,
# while training moves weights by more than 1e-3; the tolerance, 1e-6, is far below what one
# wrong step (a gradient summed rather than averaged, a rank that saw other images) would change.
# One exception: the attention's key biases. Softmax ignores a shift shared by all keys, so their
# true gradient is exactly zero and what they get is rounding noise, which Adam's normalisation
# turns into steps of the learning rate's size in any two runs that add in another order (as
# two runs with another batch split would). They are held to lr x steps instead.
WEIGHTS_TOLERANCE = 1e-6
LOSS_TOLERANCE = 1e-5


def train_command(truth, backbone, out, *extra) -> list[str]:
    return [
        *("train", str(truth), "--truth", str(truth), "--head", "finetune", "--backbone", str(backbone)),
        *("--out", str(out), "--store", str(out.parent / f"store-{out.name}"), "--epochs", "2"),
        *("--batch-size", "4", "--lr", "1e-3", "--val", "0.25", "--test", "0", "--workers", "0"),
        *("--no-progress", "--keep-checkpoints", *extra),
    ]


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def history(out) -> list[dict]:
    description = json.loads((out / "iconograph-model.json").read_text())
    return description["training"]["finetune"]["result"]["history"]


def weights(out) -> dict[str, torch.Tensor]:
    """The network (backbone and classifier) after the last epoch."""
    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]


def key_bias(name: str, value: torch.Tensor) -> torch.Tensor | None:
    """The key third of a fused q, k, v bias (zero true gradient), else None."""
    return value.view(3, -1)[1] if name.endswith("attn.qkv.bias") else None


def without_key_bias(name: str, value: torch.Tensor) -> torch.Tensor:
    return value.view(3, -1)[[0, 2]] if name.endswith("attn.qkv.bias") else value


def assert_same_training(one, two, tiny_timm) -> None:
    """``two`` trained what ``one`` trained, up to float rounding (the tolerances above)."""
    assert [r["epoch"] for r in history(two)] == [0, 1, 2]
    for a, b in zip(history(one), history(two)):
        for key in ("train_loss", "val_loss"):
            assert (a[key] is None and b[key] is None) or abs(a[key] - b[key]) < LOSS_TOLERANCE, (key, a, b)
    expected, got = weights(one), weights(two)
    assert got.keys() == expected.keys()
    difference = max(
        float((without_key_bias(k, v) - without_key_bias(k, got[k])).abs().max()) for k, v in expected.items()
    )
    assert difference < WEIGHTS_TOLERANCE, difference
    steps = 2 * 20 // 4  # at most: 2 epochs of (fewer than) 20 training images in global batches of 4
    key_biases = max(
        float((key_bias(k, v) - key_bias(k, got[k])).abs().max())
        for k, v in expected.items()
        if key_bias(k, v) is not None
    )
    assert key_biases <= 1e-3 * steps
    trained = max(float((v - got[k]).abs().max()) for k, v in weights_before(tiny_timm).items())
    assert trained > 1000 * WEIGHTS_TOLERANCE, trained  # training did move the weights


def weights_before(tiny_timm) -> dict:
    return {f"encoder.model.{k}": v for k, v in load_file(tiny_timm / "model.safetensors").items()}


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    return write_truth(tmp_path_factory.mktemp("ddp") / "truth.csv", cifar_rows(per_class=5))


@pytest.fixture(scope="module")
def two_processes(truth, tiny_timm, tmp_path_factory):
    """The model folder of an uninterrupted 2-process run."""
    out = tmp_path_factory.mktemp("ddp-run") / "two"
    ddp = run(torchrun("-m", "iconograph", *train_command(truth, tiny_timm, out)))
    assert "x 2 processes" in ddp.stderr and ddp.stderr.count("model ->") == 1  # rank 0 reports
    return out


def test_two_processes_train_what_one_trains(truth, tiny_timm, two_processes, tmp_path):
    run([sys.executable, "-m", "iconograph", *train_command(truth, tiny_timm, tmp_path / "one")])

    assert_same_training(tmp_path / "one", two_processes, tiny_timm)
    assert (two_processes / "backbone" / "model.safetensors").is_file()


def test_resume_after_killing_every_process_continues_exactly(truth, tiny_timm, two_processes, tmp_path):
    out = tmp_path / "two"
    command = torchrun("-m", "iconograph", *train_command(truth, tiny_timm, out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for_epoch(out / "checkpoints" / "last.pt", 1, launcher)
    finally:
        for pid in [*descendants(launcher.pid), launcher.pid]:  # both training processes, then torchrun
            os.kill(pid, signal.SIGKILL)
        launcher.wait()
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1, "killed too late"
    assert not (out / "iconograph-model.json").exists()

    resumed = run([*command, "--resume"])
    assert "resumed after epoch 1" in resumed.stderr
    assert [r["epoch"] for r in history(out)] == [0, 1, 2]
    assert history(out) == history(two_processes)
    expected = weights(two_processes)
    for name, value in weights(out).items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid``, and theirs (torchrun's workers run in sessions of their own)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [c for child in children for c in (child, *descendants(child))]


def wait_for_epoch(checkpoint, epoch: int, process: subprocess.Popen, timeout: float = 300) -> None:
    """Poll until ``checkpoint`` records ``epoch``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before the kill"
        try:
            if torch.load(checkpoint, weights_only=True)["epoch"] >= epoch:
                return
        except (OSError, RuntimeError, EOFError):  # not written yet
            pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of epoch {epoch} in time")


def test_a_global_batch_that_does_not_split_is_a_usage_error(tiny_timm, monkeypatch):
    from iconograph.backends import load_model
    from iconograph.errors import OptionError
    from iconograph.learning.finetune import FineTuneConfig, FineTuner

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(OptionError, match="--batch-size 30 is the global batch and must divide by the 4 processes"):
        FineTuner(load_model(str(tiny_timm)), ["a", "b"], False, FineTuneConfig(batch_size=30, workers=0))
