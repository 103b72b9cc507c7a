"""Peak memory of a block of work: CUDA's allocator peak on a GPU, the process's resident set on a CPU.

- cuda: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats` at the start (tensors only: weights,
  optimizer state, activations, caches; not the allocator's reserve).
- cpu: the largest resident set size (RSS) of the whole process seen by a thread that samples it every
  `interval` seconds. It includes Python, the libraries and whatever earlier work left in the allocator, so it
  compares blocks run in the same process, not across processes.
"""

from __future__ import annotations

import threading

import psutil
import torch


class PeakMemory:
    """`with PeakMemory(device) as peak: ...` then `peak.bytes` (and `peak.kind`, what was measured)."""

    def __init__(self, device: str, interval: float = 0.05):
        self.cuda = device.startswith("cuda")
        self.kind = "cuda max_memory_allocated" if self.cuda else "process RSS peak (sampled)"
        self.interval = interval
        self.bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.bytes = max(self.bytes, process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.bytes = max(self.bytes, psutil.Process().memory_info().rss)
