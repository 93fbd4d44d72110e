"""The arithmetic of a generation: lengths, masks and noise, as the official ``generate`` does it.

Pure functions of numbers and small tensors, shared by the model-level ``generate``
(models/sa3.py) and the studio's edit logic. Each follows a named piece of the official
``stable_audio_3/model.py`` and ``inference/sampling.py`` (@636f906).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from models.config import SameConfig
from models.sampling import effective_seq_len

def audio_length(same: SameConfig, sample_size: int, seconds_total: float, padding_seconds: float,
                 sample_rate: int) -> int:
    """Samples to generate for a clip of ``seconds_total`` (official ``_adapt_sample_size``).

    The clip plus ``padding_seconds`` of headroom, rounded up to whole latents and to the
    encoder's attention chunk, capped at the model's ``sample_size``.
    """
    if seconds_total <= 0:
        return sample_size
    n = int((seconds_total + padding_seconds) * sample_rate)
    ratio = same.downsampling_ratio
    # The official code reads encoder chunk_size with a default of 32 here, whatever the
    # network's own default: SAME-L configs have no chunk_size, so they align to 32 too.
    chunk = same.encoder.chunk_size or 32
    align = ratio * (chunk // same.encoder.strides[0])
    n = _round_up(_round_up(n, ratio), align)
    return min(n, sample_size)


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def keep_mask(regions: Sequence[tuple[float, float]], n_samples: int, seconds_total: float,
              sample_rate: int) -> torch.Tensor:
    """(1, n_samples) float mask: 1 keeps the reference, 0 regenerates (official semantics).

    Regions are (start, end) seconds; past ``seconds_total`` the mask is 0, as in training
    (``random_inpaint_mask`` zeroes the mask past the real length).
    """
    mask = torch.ones(1, n_samples)
    for start, end in regions:
        a = min(int(start * sample_rate), n_samples)
        b = min(int(end * sample_rate), n_samples)
        mask[:, a:b] = 0
    effective = int(seconds_total * sample_rate)
    if effective < n_samples:
        mask[:, effective:] = 0
    return mask


def to_latent_mask(mask: torch.Tensor, n_latents: int) -> torch.Tensor:
    """(B, n_samples) -> (B, n_latents) by nearest neighbour, as the official code does."""
    return F.interpolate(mask.unsqueeze(1), size=n_latents, mode="nearest").squeeze(1)


def padding_mask(seconds: Sequence[float], headroom_seconds: float, sample_rate: int, ratio: int,
                 n_latents: int) -> torch.Tensor:
    """(B, n_latents) bool, True = attended: each item's length plus the headroom."""
    headroom = int(headroom_seconds * sample_rate / ratio)
    valid = (effective_seq_len(seconds, sample_rate, ratio) + headroom).clamp(max=n_latents).long()
    return torch.arange(n_latents)[None, :] < valid[:, None]
