"""``train --head finetune --engine ray`` (Ray Train's TorchTrainer, 2 workers, gloo on CPU) trains
the model one process trains with the same global batch, held to the torchrun test's tolerances,
and ``--resume`` on Ray continues from the checkpoint a killed run left."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

import iconograph as ig
from iconograph.errors import OptionError
from iconograph.learning.finetune import FineTuneConfig
from tests.conftest import run_cli
from tests.learn.conftest import cifar_rows, write_truth
from tests.learn.test_distributed import assert_same_training, history, run, train_command, wait_for_epoch

pytest.importorskip("ray.train.torch")


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    return write_truth(tmp_path_factory.mktemp("ray-train") / "truth.csv", cifar_rows(per_class=5))


@pytest.fixture(scope="module")
def one_process(truth, tiny_timm, tmp_path_factory):
    """The model folder of a one-process run with the same global batch."""
    out = tmp_path_factory.mktemp("one") / "one"
    run([sys.executable, "-m", "iconograph", *train_command(truth, tiny_timm, out)])
    return out


def on_ray(command: list[str], ray_cluster: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "iconograph", *command, "--engine", "ray", "--ray-address", ray_cluster])


def test_two_ray_train_workers_train_what_one_process_trains(truth, tiny_timm, one_process, ray_cluster, tmp_path):
    result = on_ray(train_command(truth, tiny_timm, tmp_path / "ray"), ray_cluster)
    assert "Ray Train: 2 workers (gloo on CPU)" in result.stderr
    assert "x 2 processes" in result.stderr  # rank 0's lines, relayed to the driver
    assert result.stderr.count("epoch 2/2") == 1 and result.stderr.count("model ->") == 1
    assert_same_training(one_process, tmp_path / "ray", tiny_timm)
    assert (tmp_path / "ray" / "backbone" / "model.safetensors").is_file()
    model = ig.TrainedModel.load(tmp_path / "ray")
    assert model.info["training"]["finetune"]["result"]["history"] == history(tmp_path / "ray")


def test_resume_on_ray_continues_a_killed_run(truth, tiny_timm, one_process, ray_cluster, tmp_path):
    """A one-process run killed after epoch 1, resumed by 2 Ray Train workers: the checkpoint is
    the same file whichever way the processes were started, and epoch 2 follows from it."""
    command = train_command(truth, tiny_timm, tmp_path / "m")
    last = tmp_path / "m" / "checkpoints" / "last.pt"
    for _ in range(3):  # the tiny run may write epoch 2 between the poll and the kill: start it again
        shutil.rmtree(tmp_path / "m", ignore_errors=True)
        shutil.rmtree(tmp_path / "store-m", ignore_errors=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        local = subprocess.Popen([sys.executable, "-m", "iconograph", *command], env=env, stderr=subprocess.DEVNULL)
        try:
            wait_for_epoch(last, 1, local)
        finally:
            os.kill(local.pid, signal.SIGKILL)
            local.wait()
        if torch.load(last, weights_only=True)["epoch"] == 1:
            break
    assert torch.load(last, weights_only=True)["epoch"] == 1, "killed too late three times"

    resumed = on_ray([*command, "--resume"], ray_cluster)
    assert "resumed after epoch 1" in resumed.stderr and "x 2 processes" in resumed.stderr
    assert_same_training(one_process, tmp_path / "m", tiny_timm)
    assert history(tmp_path / "m")[:2] == history(one_process)[:2]  # epochs 0 and 1 come from the checkpoint


def test_a_global_batch_the_workers_cannot_share_is_refused_before_they_start(truth, tiny_timm, ray_cluster, tmp_path):
    with pytest.raises(OptionError, match="--batch-size 5 is the global batch and must divide by the 2 processes"):
        ig.train(
            truth,
            head="finetune",
            backbone=str(tiny_timm),
            out=tmp_path / "m",
            finetune=FineTuneConfig(batch_size=5, workers=0),
            engine="ray",
            processes=2,
        )
    assert not (tmp_path / "m").exists()


def test_engine_ray_is_for_finetune_only(truth, tmp_path):
    result = run_cli("train", truth, "--out", tmp_path / "m", "--head", "logistic", "--engine", "ray")
    assert result.returncode == 2
    assert "--engine ray applies to --head finetune only" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(OptionError, match="--processes applies with --engine ray"):
        ig.train(truth, head="finetune", out=tmp_path / "m", processes=2)
