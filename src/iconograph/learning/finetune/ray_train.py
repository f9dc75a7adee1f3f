"""``train --head finetune --engine ray``: the data-parallel fine-tuning of :mod:`.distributed`,
launched by Ray Train's ``TorchTrainer`` instead of torchrun.

Every Ray Train worker runs :func:`iconograph.learning.train.train` itself, as every torchrun
process does; only the launcher differs. Ray Train sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``, joins the process group (gloo on CPU, NCCL on GPU) and makes the worker's GPU the
current device before the function starts, and :func:`.distributed.current_ranks` reads the
worker's place from that group. So rank 0 writes the checkpoints and the model folder in ``out``
as under torchrun, and ``resume`` continues from ``out/checkpoints`` as under torchrun: every
worker must reach ``out`` (on one machine it does; on a cluster of several nodes ``out`` must be
shared storage mounted at the same path on every node). A worker works in the driver's
working directory where it has one, so relative paths mean the same to it.

The driver only checks the settings, starts the workers, relays rank 0's progress lines and
reads back the model folder rank 0 wrote.
"""

from __future__ import annotations

import contextlib
import os
import queue as queues
import tempfile
import threading
from collections.abc import Callable

from iconograph.errors import OptionError, UserError
from iconograph.learning.finetune.distributed import Ranks, per_rank_batch

RUN_NAME = "iconograph-finetune"


def check_ray_train() -> None:
    try:
        import ray.train.torch  # noqa: F401
    except ImportError:
        raise OptionError("--engine ray needs Ray Train: pip install 'iconograph[ray]'") from None


def worker_shape(processes: int | None, device: str | None) -> tuple[int, bool, dict[str, float]]:
    """(workers, whether they use GPUs, resources per worker) on the connected cluster.

    One worker per GPU (default: every GPU); without GPUs (or with ``device="cpu"``) 2 workers,
    as the torchrun example does on CPU.
    The CPUs are shared out so that the workers fit in the cluster: at most 1 CPU per worker."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    use_gpu = gpus > 0 and not (device or "").startswith("cpu")
    workers = processes or (gpus if use_gpu else 2)
    if workers < 1:
        raise OptionError(f"--processes must be at least 1, not {workers}")
    if use_gpu and workers > gpus:  # Ray Train would wait for GPUs that never come
        raise OptionError(f"--processes {workers} needs one GPU each; the Ray cluster has {gpus}")
    per_worker = {"CPU": min(1.0, float(resources.get("CPU", 1)) / workers)}
    if use_gpu:
        per_worker["GPU"] = 1.0
    return workers, use_gpu, per_worker


def train_on_ray(
    arguments: dict,
    *,
    address: str | None,
    processes: int | None,
    batch_size: int,
    device: str | None,
    log: Callable[[str], None] | None,
) -> None:
    """Run ``train(**arguments)`` in every worker of a ``TorchTrainer``; returns when rank 0 has
    written the model folder. ``batch_size`` is the global batch, checked before anything starts."""
    check_ray_train()
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from iconograph.engine.ray_engine import connect

    connect(address)
    workers, use_gpu, per_worker = worker_shape(processes, device)
    per_rank_batch(batch_size, Ranks(0, workers))
    if log:
        log(f"Ray Train: {workers} workers ({'NCCL, one GPU each' if use_gpu else 'gloo on CPU'})")
    # Ray Train's own checkpointing is not used: the checkpoints rank 0 writes in out/checkpoints
    # are the truth (--resume reads them), so the workers report nothing to Ray, and the run
    # state Ray Train keeps goes to a temporary folder, not to ~/ray_results.
    with tempfile.TemporaryDirectory(prefix="iconograph-ray-train-") as storage, relayed(log) as lines:
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config={"arguments": arguments, "lines": lines, "directory": os.getcwd()},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=per_worker),
            run_config=RunConfig(name=RUN_NAME, storage_path=storage),
        )
        try:
            trainer.fit()
        except Exception as exc:  # a worker's usage or data error is the run's, said in one line
            raise _worker_error(exc) from None


def _train_worker(config: dict) -> None:
    """One Ray Train worker: the same ``train`` a torchrun process runs (rank 0 logs)."""
    from iconograph.learning.train import train

    if os.path.isdir(config["directory"]):  # relative paths mean what they meant to the driver
        os.chdir(config["directory"])
    lines = config["lines"]
    train(**config["arguments"], log=lines.put if lines is not None else None)


@contextlib.contextmanager
def relayed(log: Callable[[str], None] | None):
    """A Ray queue the workers put their log lines in, printed here with ``log`` as they come."""
    if log is None:
        yield None
        return
    from ray.util.queue import Queue

    lines = Queue(actor_options={"num_cpus": 0})
    finished = threading.Event()

    def relay():
        while not finished.is_set() or not lines.empty():
            try:
                log(lines.get(timeout=0.2))
            except queues.Empty:
                continue

    thread = threading.Thread(target=relay, name="ray-train-log", daemon=True)
    thread.start()
    try:
        yield lines
    finally:
        finished.set()
        thread.join()
        lines.shutdown()


def _worker_error(exc: Exception) -> Exception:
    """The first worker's :class:`UserError` behind a Ray Train failure, else the failure."""
    failures = getattr(exc, "worker_failures", None) or {}
    for _, failure in sorted(failures.items()):
        cause = failure
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__cause__ or getattr(cause, "cause", None)
        if isinstance(cause, UserError):
            return cause
    return exc
