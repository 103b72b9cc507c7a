"""Where models and tensors live and in what precision. Everything that asks "which device?" asks here.

- `resolve_device("auto" | "cpu" | "cuda" | "cuda:N")`: auto is the process's GPU when there is one, else the CPU;
  the process's GPU (for auto and cuda) is GPU LOCAL_RANK under data parallel, GPU 0 otherwise.
- `resolve_precision("auto" | "fp32" | "bf16", device)`: auto is bf16 on a GPU that supports it, fp32 elsewhere.
  bf16 means bf16 compute (autocast) over fp32 master weights for the trained student, and bf16 weights for
  frozen models (teachers, references), which are never updated.
- `autocast(precision, device)`: the one autocast context of the project (the student's forward passes, the
  scoring passes and evaluation all run under it, so pi_old, pi_theta and the teachers share one precision).
- `fork_rng(device)`: a private RNG stream on the device that samples (evaluation must not move the training RNG).
- `apply_cpu_threads()`: torch's CPU threads = the CPUs this process may use (affinity, cgroup quota), unless
  OMP_NUM_THREADS says otherwise. The thread count changes the order of float sums, so a run's numbers depend on it.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import torch

from distillrl.config import DEVICE_SPEC
from distillrl.core.distributed import local_rank
from distillrl.core.errors import UserError

DEVICE_PATTERN = re.compile(DEVICE_SPEC)


class DeviceError(UserError):
    """A device the configuration names that this machine does not have."""


def resolve_device(spec: str, field: str = "device") -> torch.device:
    """The torch.device for a config value; `field` names the config field in errors."""
    if not DEVICE_PATTERN.match(spec):
        raise DeviceError(f"{field}: {spec!r} is not a device (use auto, cpu, cuda or cuda:N)")
    if spec == "auto":
        return torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{field}: {spec!r} but torch sees no CUDA GPU (torch {torch.__version__}); use cpu or auto")
        index = local_rank() if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise DeviceError(f"{field}: {spec!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        device = torch.device("cuda", index)
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """fp32 or bf16: `auto` is bf16 on a GPU with bf16 support, fp32 on the CPU (where bf16 is slower)."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def frozen_dtype(precision: str) -> torch.dtype:
    """Weights of models that are never trained: bf16 under bf16 precision (half the memory), else fp32."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast(precision: str, device: torch.device | str = "cpu"):
    """bf16 autocast for `precision: bf16`, nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def fork_rng(device: torch.device | str, seed: int):
    """Run the body with the RNG of `device` (and the CPU's) seeded to `seed`, restoring both afterwards."""
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        torch.manual_seed(seed)
        yield


def rng_state() -> dict:
    """The torch RNG states of the CPU and of every visible GPU (for checkpoints)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for phase timings; a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_quota(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """The CPUs a cgroup (v2) quota allows this process, rounded up (`quota period` in cpu.max); None without one."""
    try:
        quota, period = cgroup.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else max(1, -(-int(quota) // int(period)))


def cpu_threads() -> int:
    """The CPU threads a run should use: the CPUs this process may run on (its affinity), capped by a cgroup quota.
    torch's own default counts the machine's cores, so a container limited to fewer CPUs oversubscribes them."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota()
    return min(allowed, quota) if quota else allowed


def apply_cpu_threads() -> None:
    """Set torch's CPU threads to cpu_threads() unless the user chose (OMP_NUM_THREADS set, or fewer already set)."""
    if "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() > cpu_threads():
        torch.set_num_threads(cpu_threads())
