"""Noise sources: every random draw of a generation comes from one of these.

A source is a callable ``shape -> float32 standard-normal tensor``. The sampler draws the
initial noise and one tensor per ping-pong step; the SAME decoder, when asked to run as the
official code does, draws its inference-time noise too. ``generator_noise`` makes a seed
reproduce a take; ``recorded_noise`` replays the official code's draws for parity.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

NoiseSource = Callable[[Sequence[int]], Tensor]  # shape -> float32 standard normal draw


def generator_noise(generator: torch.Generator) -> NoiseSource:
    """Draws from one seeded generator, on the generator's device."""

    def draw(shape: Sequence[int]) -> Tensor:
        return torch.randn(tuple(shape), generator=generator, device=generator.device)

    return draw


class recorded_noise:
    """Replays ``draws`` in order (e.g. the official code's, from a parity fixture); a draw of
    another shape, or one too many, is an error; ``remaining`` lists the draws not asked for."""

    def __init__(self, draws: Sequence[Tensor]):
        self.remaining = list(draws)
        self._count = len(self.remaining)

    def __call__(self, shape: Sequence[int]) -> Tensor:
        if not self.remaining:
            raise RuntimeError(f"recorded noise exhausted: all {self._count} draws used")
        d = self.remaining.pop(0)
        if tuple(d.shape) != tuple(shape):
            index = self._count - len(self.remaining) - 1
            raise RuntimeError(f"recorded draw {index} has shape {tuple(d.shape)}, "
                               f"the code asked for {tuple(shape)}")
        return d


def batched_noise(sources: Sequence[NoiseSource]) -> NoiseSource:
    """N takes in one batch, each with its own source (its own seed): a draw of shape (N, ...)
    is each source's own (1, ...) draw, stacked in order. Each source sees the draws it would
    see making its take alone, in the same order, so take k of the batch starts from the same
    noise as take k alone (the sampler draws per step, all of x's shape: models/sampling.py).
    A draw whose first dimension is not N (the SAME decoder's inference noise) is an error."""
    sources = tuple(sources)

    def draw(shape: Sequence[int]) -> Tensor:
        if not shape or shape[0] != len(sources):
            raise ValueError(f"batched noise of {len(sources)} takes cannot draw shape {tuple(shape)}: "
                             "its first dimension must be the number of takes")
        return torch.cat([source((1, *shape[1:])) for source in sources])

    return draw
