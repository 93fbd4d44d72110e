"""The engine API the studio is built on: frozen requests in, a Take out, progress as a callable.

Numpy in, numpy out; the UI never sees torch. Audio is always float32 of shape (2, N) at
SAMPLE_RATE (stereo, 44.1 kHz). Times are seconds on the track's axis. An engine holds loaded
weights and nothing else: every generation is fully described by its request and seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol

import numpy as np

SAMPLE_RATE = 44100
LATENT_HOP = 4096  # samples per latent frame of SAME (the grid regions snap to)

Stage = Literal["load", "encode", "steps", "decode"]
Progress = Callable[[str, int, int], None]  # (stage, done, total); raise Cancelled to stop


class Cancelled(Exception):
    """Raised from a Progress callback to stop the work; the engine lets it propagate."""


class EngineError(Exception):
    """A failure a musician can act on; str(e) is one sentence that names the fix."""


@dataclass(frozen=True)
class ModelInfo:
    name: str           # 'small-music' | 'small-sfx' | 'medium'
    label: str          # shown in the model picker
    kind: str           # 'music' | 'sfx'
    needs: str          # one sentence: what the machine needs to run it
    max_seconds: float  # longest track the model generates
    prompt_prefix: str  # prepended to every prompt (shown in the UI)
    default_steps: int


@dataclass(frozen=True)
class Region:
    start: float              # seconds, inclusive
    end: float                # seconds, exclusive
    prompt: str | None = None  # per-region prompt; None uses the request's prompt


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str                            # as the user typed it; the engine adds ModelInfo.prompt_prefix
    seconds: float
    seed: int
    steps: int | None = None               # None: the model's default_steps
    init_audio: np.ndarray | None = None   # (2, N) float32 at SAMPLE_RATE, for audio-to-audio
    init_strength: float = 1.0             # 1.0 ignores init_audio entirely; 0.0 returns it


@dataclass(frozen=True)
class EditRequest:
    source: np.ndarray                 # (2, N) float32 at SAMPLE_RATE; never modified
    regions: tuple[Region, ...]        # validated, sorted, non-overlapping, inside the source
    prompt: str                        # as typed; the engine adds the prefix; Region.prompt overrides
    seed: int
    steps: int | None = None
    continue_seconds: float = 0.0      # > 0 appends that much new audio after the source
    context_seconds: float | None = None  # audio around regions the model sees; None: all (15 s on long tracks)
    crossfade_ms: float = 30.0         # equal-power crossfade at each region border
    strength: float = 1.0              # 1.0 regenerates regions from noise; < 1 keeps their shape


@dataclass(frozen=True)
class Take:
    audio: np.ndarray                        # (2, M) float32: the FULL track (M >= N for edits)
    request: GenerateRequest | EditRequest
    seed: int
    model: str
    regions: tuple[Region, ...]              # what was regenerated (continuation included)
    elapsed: float = 0.0                     # seconds of wall time


class Engine(Protocol):
    def models(self) -> list[ModelInfo]: ...

    def load(self, name: str, progress: Progress | None = None) -> ModelInfo:
        """Make `name` the loaded model (a no-op if it already is); downloads report "load"."""

    def generate(self, req: GenerateRequest, progress: Progress | None = None) -> Take: ...

    def edit(self, req: EditRequest, progress: Progress | None = None) -> Take: ...
