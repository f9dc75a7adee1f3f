"""The same per-image jobs on a Ray cluster (``--engine ray``): a Ray Data pipeline.

The driver does what the local runner does before computing: it reads and hashes every file and
looks the hashes up in the job's cache (so a re-run computes only what is missing). The misses
then flow through one Ray Data pipeline::

    one row per model batch -> decode + preprocess (CPU tasks) -> the model (an actor pool,
    ``map_batches`` with a callable class, one job replica per actor) -> the driver

and the driver yields the results chunk by chunk in input order. The actors write their results
into the cache table as Lance data files (fragments) and the driver commits them, many batches in
one commit: nothing is visible before that commit, and an actor whose results are lost (killed
after writing) leaves only unreferenced files. Where an actor cannot reach the store (a local
store, an actor on another machine) its results travel back and the driver appends them.
Every step is the local engine's own code: decoding and preprocessing are
:class:`~iconograph.engine.jobs.DecodeDataset` and :func:`~iconograph.engine.jobs.collate`, the
model step is the job's ``run_batch``. The batches are the ones the local engine forms (the same
images, in the same groups), so the numbers are the same: a model's output for one image can
depend on which others share its batch.

Faults: a model actor that dies is restarted by Ray Data and its unfinished batches are sent
again (the job completes); a driver that dies loses what it had not yet appended to the cache
(at most ``flush_every`` images or ``flush_seconds``), and the same command run again computes
only that.

A job reaches the actors as a recipe (``job.for_worker()``), or as a copy without its loaded
weights, which each actor loads again from the same model folder.
"""

from __future__ import annotations

import copy
import functools
import os
import pickle
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from iconograph.engine.store import FragmentWriter, WrittenFragments, is_uri
from iconograph.errors import OptionError, ResourceError

ENGINES = ("local", "ray")
DECODE_TASK_MEMORY = 256 * 2**20
BATCH_ATTEMPTS = 4  # a batch whose actor dies this many times fails the job


def resolve_engine(engine: str | None) -> str:
    """``engine``, else ``$ICONOGRAPH_ENGINE``, else ``local``; one of :data:`ENGINES`."""
    chosen = engine or os.environ.get("ICONOGRAPH_ENGINE") or "local"
    if chosen not in ENGINES:
        raise OptionError(f"--engine must be one of {', '.join(ENGINES)}, not {chosen!r}")
    if chosen == "ray":
        try:
            import ray.data  # noqa: F401
        except ImportError:
            raise OptionError("--engine ray needs Ray Data: pip install 'iconograph[ray]'") from None
    return chosen


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide: ``address`` as ``ray.init`` takes it (None: ``$RAY_ADDRESS`` or a new
    local cluster; ``auto``: the running one), ``actors`` model replicas (None: one per GPU, or one
    per 4 CPUs of the cluster)."""

    address: str | None = None
    actors: int | None = None

    def __post_init__(self):
        if self.actors is not None and self.actors < 1:
            raise OptionError(f"--actors must be at least 1, not {self.actors}")


def connect(address: str | None = None) -> None:
    """Join (or start) the Ray cluster once per process."""
    import logging

    import ray

    # iconograph's own progress bar and summary line report the run; Ray Data's INFO lines and
    # its note that its bars are off would only bury them, and a failed job's error reaches the
    # caller as the exception iteration raises (a bug's with its traceback), not as a log line.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    if ray.is_initialized():
        return
    # Ray Data 2.60 logs one harmless "E ... core_worker.cc: Actor ... has constructor arguments
    # in the object store" line per actor pool (ray-project/ray#57733); it is left as it is.
    ray.init(
        address=address,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        configure_logging=True,
        ignore_reinit_error=True,
    )


def pool_shape(actors: int | None) -> tuple[int, float, float]:
    """(actors, CPUs per actor, GPUs per actor) for this cluster.

    With GPUs, one actor per GPU. On CPUs the actors share half of the cluster's CPUs and the
    decoding tasks get the other half: actors that reserve every CPU starve the decoding tasks
    and the pipeline stops.
    """
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 1))
    if gpus:
        return actors or gpus, 1.0, 1.0
    actors = actors or max(1, int(cpus // 4))
    return actors, max(0.25, cpus / 2 / actors), 0.0


def worker_factory(job) -> Callable[[], Any]:
    """A picklable zero-argument callable that builds ``job`` again in a worker process."""
    if hasattr(job, "for_worker"):
        return job.for_worker()
    return functools.partial(_identity, without_weights(job))


def _identity(value):
    return value


def without_weights(job):
    """A shallow copy of ``job`` without the loaded networks it caches (``cached_property``
    values that are torch modules): they are loaded again, lazily, where the copy runs."""
    import torch

    clone = copy.copy(job)
    for name, value in list(vars(clone).items()):
        if isinstance(value, torch.nn.Module):
            delattr(clone, name)
    return clone


# ---- the pipeline steps -------------------------------------------------------------------


def decode_row(row: dict, preprocess, max_pixels, min_size) -> dict:
    """One model batch: read, decode and preprocess its files as the local engine's workers do."""
    import torch

    from iconograph.engine.jobs import DecodeDataset, collate

    torch.set_num_threads(1)  # as the local decoding workers: the model has the cores
    dataset = DecodeDataset(row["paths"], preprocess, max_pixels, min_size)
    batch = collate([dataset[i] for i in range(len(dataset))])
    batch.positions = [int(p) for p in row["positions"]]
    return {"row": row["row"], "batch": pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)}


class ModelActor:
    """One job replica; runs ``run_batch`` on each decoded batch (Ray Data calls it with batches
    of one row, one row being one model batch) and, given a ``writer``, writes the batch's
    results into the cache table as an uncommitted fragment."""

    def __init__(
        self, factory: Callable[[], Any], threads: int, writer: FragmentWriter | None = None, directory: str = ""
    ):
        import torch

        if os.path.isdir(directory):  # the driver's: relative model and store paths mean the same here
            os.chdir(directory)
        torch.set_num_threads(threads)
        self.job = factory()
        self.writer = writer if writer is not None and writer.reaches_store() else None

    def __call__(self, rows: dict) -> dict:
        results = []
        for payload in rows["batch"]:
            batch = pickle.loads(payload)
            valid_sizes = [s for s, e in zip(batch.sizes, batch.errors) if e is None]
            outputs = iter(self.job.run_batch(batch.pixels, valid_sizes) if valid_sizes else [])
            values = [next(outputs) if error is None else None for error in batch.errors]
            written = self._write(batch.hashes, values, batch.errors)
            results.append(
                pickle.dumps(
                    (batch.positions, batch.hashes, values, batch.errors, written), protocol=pickle.HIGHEST_PROTOCOL
                )
            )
        return {"row": rows["row"], "result": results}

    def _write(self, hashes, values, errors) -> WrittenFragments | None:
        done = [(h, v) for h, v, e in zip(hashes, values, errors) if e is None]
        if self.writer is None or not done:
            return None
        return self.writer.write([h for h, _ in done], [v for _, v in done])


def absolute(path: str) -> str:
    """``path`` as a worker must be given it: a worker of a cluster joined with ``--ray-address``
    runs in its own directory, not the driver's, so a relative path would name another file."""
    return path if is_uri(path) else os.path.abspath(path)


def fragment_writer(cache) -> FragmentWriter | None:
    """The writer the actors use for ``cache``: any node for object storage, only the driver's
    node for a local store (another machine's disk is not this one's); None without a cache."""
    import ray

    if cache is None or not hasattr(cache, "fragment_writer"):
        return None
    return cache.fragment_writer(None if cache.store.remote else ray.get_runtime_context().get_node_id())


def object_store_environment() -> dict[str, str]:
    """The driver's object-storage settings and credentials (the variables Lance reads), for the
    actors that write to the same store: a worker process does not see the driver's environment."""
    return {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "GOOGLE_", "AZURE_"))}


def run_pipeline(
    batches: list[list[tuple[int, str]]],
    job,
    settings: RaySettings,
    *,
    max_pixels: int | None,
    min_size: int | None,
    cache=None,
) -> Iterator[tuple[int, list[int], list[str | None], list, list[str | None], WrittenFragments | None]]:
    """Run ``batches`` (each a list of (position, path)) through decode tasks and the model
    actors; yields (row, positions, hashes, values, errors, written) per batch, in the order of
    ``batches``; ``written``: the batch's results as uncommitted fragments of ``cache``, or None."""
    import ray
    import ray.data

    connect(settings.address)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # results stream back in input order
    context.enable_progress_bars = False  # the runner's bar counts the images
    actors, cpus, gpus = pool_shape(settings.actors)
    writer = fragment_writer(cache)
    forwarded = writer is not None and writer.node_id is None
    runtime_env = {"env_vars": object_store_environment()} if forwarded else None
    rows = [
        {"row": i, "positions": [p for p, _ in batch], "paths": [absolute(path) for _, path in batch]}
        for i, batch in enumerate(batches)
    ]
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for an actor pool's restarts and retries and warns
        # that passing them as remote arguments goes away in Ray 2.64 (hence ray<2.64 in pyproject).
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        dataset = _pipeline(rows, job, writer, runtime_env, actors, cpus, gpus, max_pixels, min_size)
    try:
        for row in dataset.iter_rows():
            yield row["row"], *pickle.loads(row["result"])
    except ray.exceptions.RayActorError as exc:
        if exc.actor_init_failed:  # the job could not be built in the actor: Ray's message has its traceback
            raise
        raise ResourceError(
            f"a model batch killed its Ray actor {BATCH_ATTEMPTS} times (out of memory?): lower --batch-size "
            "or give the actors more memory; what was committed is kept and the same command resumes"
        ) from None


def _pipeline(rows, job, writer, runtime_env, actors, cpus, gpus, max_pixels, min_size):
    """The Ray Data dataset: decode tasks, then the model actor pool (see :func:`run_pipeline`)."""
    import ray.data

    return (
        ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 1000)))
        .map(
            decode_row,
            fn_kwargs={"preprocess": job.make_preprocess(), "max_pixels": max_pixels, "min_size": min_size},
            num_cpus=1,
            # A decode task's working set (one batch of decoded images). Declaring it also keeps
            # Ray Data from fusing the decoding into the model actors, which it does to steps
            # with equal resource requests: decoding belongs in tasks on any CPU of the cluster.
            memory=DECODE_TASK_MEMORY,
        )
        .map_batches(
            ModelActor,
            fn_constructor_args=(worker_factory(job), max(1, int(cpus)), writer, os.getcwd()),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus,
            num_gpus=gpus,
            # A model actor whose process dies (killed, out of memory, a lost node) is started
            # again and its unfinished batches are sent again. Ray Data's default would resend a
            # batch forever; one that kills its actor every time (out of memory) fails the job.
            max_restarts=-1,
            max_task_retries=BATCH_ATTEMPTS - 1,
            runtime_env=runtime_env,
        )
    )
