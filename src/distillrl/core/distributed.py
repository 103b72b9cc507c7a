"""The process world of a run: one process, or several started by `torchrun` or `accelerate launch` (data parallel).

A launcher starts one process per rank with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in the
environment; `join_world` joins their process group (NCCL on GPUs, gloo on the CPU). One process without those
variables is the world of size 1, and every collective below is then the identity, so a single-process run
executes the same code as a data-parallel one.

Data parallel, as the trainer does it:
- every rank draws the whole step's prompts from one shared stream and keeps its contiguous share
  (`share_of`), samples and scores them with its own models;
- a loss is sum over the rank's tokens / the step's token count over all ranks (`sum`), and the gradients
  are summed over ranks once per optimizer step (`sum_gradients`; a sharded student's are reduce-scattered as
  sums in its backward pass, see `distillrl.core.sharding`): the same gradient as one process that sees the whole step;
- only rank 0 writes the run directory; the other ranks learn where the run resumes from it (`share`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from distillrl.core.errors import UserError

# a rank waits this long at a collective (rank 0 evaluates the teachers and saves alone while the others wait)
COLLECTIVE_TIMEOUT = timedelta(hours=2)


def launched_world_size() -> int:
    """WORLD_SIZE as torchrun and accelerate launch set it (1 when the process was started alone)."""
    value = os.environ.get("WORLD_SIZE", "1")
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"WORLD_SIZE={value!r} in the environment is not a positive integer")
    return int(value)


def local_rank() -> int:
    """This process's index on its machine (LOCAL_RANK, 0 when started alone): its GPU under data parallel."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s own random streams (sampling): seed + rank * 2^32, so rank 0 keeps `seed`
    (a one-process run is unchanged) and no two ranks of runs with seeds below 2^32 share a stream."""
    return seed + (rank << 32)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")  # where collective tensors live: the rank's GPU under NCCL

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory, logs and prints."""
        return self.rank == 0

    def share_of(self, items: list) -> list:
        """This rank's contiguous share of `items` (len(items) is a multiple of the world size)."""
        per_rank = len(items) // self.size
        return items[self.rank * per_rank:(self.rank + 1) * per_rank]

    def sum(self, value: float | int) -> float | int:
        """The sum of `value` over ranks (the value itself in a world of one)."""
        if self.size == 1:
            return value
        total = torch.tensor(float(value), dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return type(value)(total.item())

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Replace each parameter's gradient by its sum over ranks, in one flat all-reduce (a parameter without a
        gradient on some rank counts as zero there). Sharded (FSDP2) parameters are left alone: their gradients
        were reduce-scattered as sums in the backward pass."""
        parameters = [p for p in parameters if not isinstance(p, DTensor)]
        if self.size == 1 or not parameters:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for parameter, grad in zip(parameters, grads):
            parameter.grad = flat[offset:offset + grad.numel()].view_as(grad).clone()
            offset += grad.numel()

    def gather(self, value: object) -> list:
        """Every rank's `value` (a picklable object), in rank order, on every rank."""
        if self.size == 1:
            return [value]
        values = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def share(self, value: object) -> object:
        """Rank 0's `value` (a picklable object) on every rank."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def sum_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Each metric summed over ranks (for shares of a whole-step total)."""
        if self.size == 1:
            return metrics
        gathered = self.gather(metrics)
        return {name: sum(m[name] for m in gathered) for name in metrics}

    def mean_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Each metric averaged over the ranks that report it (ranks hold equal numbers of prompts and rows, so
        a per-row mean averages exactly; a rank without, e.g., a teacher's prompts does not report it)."""
        if self.size == 1:
            return metrics
        gathered = self.gather(metrics)
        names = list(dict.fromkeys(name for m in gathered for name in m))
        return {name: sum(m[name] for m in gathered if name in m) / sum(name in m for m in gathered) for name in names}


@contextmanager
def join_world(device: torch.device) -> Iterator[World]:
    """The world this process belongs to, for the length of a run: a process group joined from the launcher's
    environment (backend NCCL when the run's device is a GPU, else gloo), left at the end; or the world of one."""
    size = launched_world_size()
    if size == 1:
        yield World()
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    joined_here = not dist.is_initialized()  # a caller's group (e.g. accelerate's) is used and left to its owner
    if joined_here:
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    try:
        yield World(dist.get_rank(), dist.get_world_size(), device if backend == "nccl" else torch.device("cpu"))
    finally:
        if joined_here:
            dist.destroy_process_group()
