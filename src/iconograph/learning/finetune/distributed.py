"""Data-parallel fine-tuning: one process per device, launched by ``torchrun --nproc-per-node N``
or by Ray Train (``--engine ray``, :mod:`.ray_train`).

torchrun tells every process its place through the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and the process joins the group itself; Ray
Train's ``TorchTrainer`` sets the same variables and has already joined the group (gloo on CPU,
NCCL on GPU) and chosen the GPU (``torch.cuda.set_device``) when the training function starts.
A process started by neither is a world of one and nothing here changes what it does. In a
world of N:

* the process group uses gloo on CPU and NCCL on CUDA (one GPU per process: ``cuda:LOCAL_RANK``
  under torchrun, the GPU Ray Train gave the worker under Ray);
* the network is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`, which starts
  every replica from rank 0's weights and all-reduces (averages) the gradients of every step;
* each epoch's permutation is :class:`~torch.utils.data.DistributedSampler`'s (seed + epoch),
  shared out between the ranks, so the N per-rank batches of a step together are the global
  batch a single process would take at that step;
* counts and sums (losses, correct predictions) are summed over the ranks, so every rank sees the
  same validation loss and takes the same early-stopping decisions;
* rank 0 alone writes checkpoints and the model folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from iconograph.errors import OptionError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """The process that writes files and reports progress."""
        return self.rank == 0


def current_ranks() -> Ranks:
    """This process's place: the process group's when a launcher (Ray Train) has joined one,
    else as torchrun's variables give it; a world of one without either."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return Ranks()
        return Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError):
        raise OptionError("WORLD_SIZE is set but RANK is not a number: launch with torchrun") from None


def join_process_group(ranks: Ranks, device: str) -> str:
    """Join the job's process group (gloo on CPU, NCCL on CUDA); this process's device.

    A group that is already there was set up by the launcher (Ray Train), which has also made
    this worker's GPU the current CUDA device."""
    import torch.distributed as dist

    if dist.is_initialized():
        return f"cuda:{torch.cuda.current_device()}" if device.startswith("cuda") else device
    if device.startswith("cuda"):
        device = f"cuda:{ranks.local_rank}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def leave_process_group(ranks: Ranks) -> None:
    """Wait for every rank (rank 0 has written its files), then leave the group."""
    import torch.distributed as dist

    if ranks.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(network: torch.nn.Module, ranks: Ranks, device: str) -> torch.nn.Module:
    """``network`` as the training steps call it: DDP-wrapped in a world of several."""
    if not ranks.distributed:
        return network
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(network, device_ids=[device] if device.startswith("cuda") else None)


def summed(values: list[float], ranks: Ranks, device: str) -> list[float]:
    """``values`` summed over the ranks (float64, so counts stay exact)."""
    if not ranks.distributed:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def per_rank_batch(batch_size: int, ranks: Ranks) -> int:
    """Each rank's share of the global ``--batch-size``."""
    if batch_size % ranks.world_size:
        raise OptionError(
            f"--batch-size {batch_size} is the global batch and must divide by the {ranks.world_size} processes"
        )
    return batch_size // ranks.world_size
