"""Which dtype each part of an SA3 model runs in, chosen from what the hardware computes natively.

bf16 halves the weights' memory and, where the hardware multiplies bf16 natively (CUDA cards
from Ampere on; x86 CPUs with AVX512-BF16 or AMX), runs matrix multiplies 2-4x faster than
fp32. Where it does not, bf16 is emulated and slower than fp32, so ``auto`` picks fp32 there.
The choice is read from the hardware's own flags (torch's CPU capability probes, else
/proc/cpuinfo), never guessed from a vendor name.

Precision-critical arithmetic stays fp32 whatever the weights' dtype (the rest of models/
does it; tests/test_precision.py proves it): the sampler's state, sigmas and update
(models/sa3.py, models/sampling.py), the timestep and seconds Fourier features
(models/dit.py, models/conditioners.py), norms' statistics and softmax (torch computes them
in fp32 for bf16 inputs), the collapsed-context log-count bias (models/dit.py,
models/transformer.py ``attend``), rotary angles (models/transformer.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

CHOICES = ("auto", "fp32", "bf16")
_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Precision:
    """The dtypes a model runs in, and why they were chosen.

    dit: the DiT's weights and activations (the sampling cost).
    text: the T5Gemma text encoder.
    same: the SAME autoencoder (fp32 on CPU: see ``choose_precision``).
    reason: one sentence for logs and benchmarks.
    """

    dit: torch.dtype
    text: torch.dtype
    same: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        """What the DiT runs in: "fp32", "bf16" or "fp16" (what benchmarks report)."""
        return _NAMES[self.dit]

    def describe(self) -> dict:
        return {"dit": _NAMES[self.dit], "text": _NAMES[self.text], "same": _NAMES[self.same],
                "reason": self.reason}


FP32 = Precision(torch.float32, torch.float32, torch.float32, "fp32 requested")


def native_bf16(device: Union[str, torch.device]) -> Optional[str]:
    """None if ``device`` multiplies bf16 natively, else a sentence saying why not."""
    device = torch.device(device)
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported(including_emulation=False)
        return None if supported else "this GPU has no native bf16 (it needs compute capability 8.0+)"
    if device.type != "cpu":
        return f"bf16 support on {device.type} is not known"
    return None if cpu_has_bf16() else "this CPU has no AVX512-BF16 or AMX: bf16 would be emulated (slower than fp32)"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 dot products natively (AVX512-BF16 or AMX-BF16)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    probes = [p for p in probes if p is not None]
    if probes:
        return any(p() for p in probes)
    try:  # older torch: the kernel's own flags
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_precision(device: Union[str, torch.device], choice: str = "auto") -> Precision:
    """The dtypes for a model on ``device``: ``choice`` is "auto", "fp32" or "bf16".

    auto: bf16 for the DiT and the text encoder where ``device`` computes it natively, else
    fp32. SAME stays fp32 on CPU (its attention runs over thousands of tokens per clip and its
    output is what the musician hears; bf16 there is not measured safe); on CUDA it follows the
    DiT, as the official inference does (the whole model in one dtype). "bf16" forces bf16 even
    where it is emulated (slow; for measurements); "fp32" runs everything in fp32.
    """
    if choice not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}, got {choice!r}")
    device = torch.device(device)
    if choice == "fp32":
        return FP32
    why_not = native_bf16(device)
    if choice == "auto" and why_not:
        return Precision(torch.float32, torch.float32, torch.float32, f"fp32: {why_not}")
    same = torch.bfloat16 if device.type == "cuda" else torch.float32
    if choice == "bf16":
        reason = "bf16 requested" + (f" ({why_not})" if why_not else "")
    else:
        reason = f"bf16: {device.type} computes bf16 natively"
    return Precision(torch.bfloat16, torch.bfloat16, same, reason)
