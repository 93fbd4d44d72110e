"""Helpers shared by the bench/ scripts: peak resident memory, bf16 support, SNR, load average."""

from __future__ import annotations

import math
import os
import threading

import torch
import torch.utils._python_dispatch

from models.precision import native_bf16 as bf16_support  # noqa: F401  (the one place that knows which devices run bf16)


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


def snr_db(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """10 log10(|ref|^2 / |ours - ref|^2), in dB (inf when equal)."""
    ours, ref = ours.double(), ref.double()
    noise = (ours - ref).pow(2).sum().item()
    return round(10 * math.log10(ref.pow(2).sum().item() / noise), 2) if noise > 0 else float("inf")


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: other work sharing the cores skews timings."""
    return [round(x, 2) for x in os.getloadavg()]


class HostSyncs(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts, inside ``with``, the ops that make the host wait for the device: reading a value
    back (``.item()``, ``bool(t)``, ``int(t)``) and ops whose output size depends on the data."""

    SYNCING = frozenset({"_local_scalar_dense", "nonzero", "masked_select", "unique_dim", "_unique2"})

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in self.SYNCING:
            self.calls.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))
