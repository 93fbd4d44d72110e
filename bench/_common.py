"""Helpers shared by the bench/ scripts: peak resident memory, bf16 support, load average."""

from __future__ import annotations

import os
import threading

import torch

from models.text import default_dtype  # the one place that knows which CPUs run bf16


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory of this process while the ``with`` block runs (sampled every 5 ms)."""

    def __enter__(self):
        self.start = rss_bytes()
        self.peak, self._stop = self.start, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def bf16_support(device) -> str | None:
    """None if bf16 runs natively here, else why not."""
    device = torch.device(device)
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else "this GPU has no bf16"
    if default_dtype(device) == torch.bfloat16:
        return None
    return "CPU has no avx512_bf16/amx_bf16: bf16 matmuls would be emulated (slower than fp32)"


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: other work sharing the cores skews timings."""
    return [round(x, 2) for x in os.getloadavg()]
