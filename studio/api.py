"""The engine API the studio is built on: frozen requests in, a Take out, progress as a callable.

Numpy in, numpy out; the UI never sees torch. Audio is always float32 of shape (2, N) at
SAMPLE_RATE (stereo, 44.1 kHz). Times are seconds on the track's axis. A request says everything
a generation depends on, its model included: an engine holds loaded weights and caches, never a
"current model" that one user could switch under another. Requests check their own numbers when
they are made, so a request that exists is a valid one (ValueError with one sentence otherwise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

SAMPLE_RATE = 44100
LATENT_HOP = 4096  # samples per latent frame of SAME (the grid regions snap to)
MAX_STEPS = 500    # sampling steps a request may ask for (the -base models' official default is 50)
MAX_SEED = 2**63 - 1
MAX_REGIONS = 64   # regions one edit accepts; more is almost surely a slip of the brush
MAX_CFG = 25.0     # the official UI's CFG slider range
CROSSFADE_MS = 30.0  # the default equal-power crossfade at each region border

Progress = Callable[[str, int, int], None]  # (stage, done, total); raise Cancelled to stop
# stages: "queue" (done = jobs ahead), "load", "encode", "steps", "decode"


@dataclass(frozen=True)
class Preview:
    """What a take would be if sampling stopped now: the sampler's denoised estimate after ``step``
    of ``steps`` steps, decoded and put in place as the take will be, over the take's regenerated
    span (the hull of its regions). The last preview (``step == steps``) is the take's own audio."""
    step: int           # steps done, 1..steps; previews arrive in increasing step order
    steps: int          # all the steps of the take (every batch of an edit with many prompts)
    start: float        # seconds on the take's axis where ``audio`` begins
    audio: np.ndarray   # (2, N) float32


PreviewSink = Callable[[Preview], None]  # asked for per call (Engine.generate/edit ``preview=``)


def preview_steps(steps: int) -> tuple[int, ...]:
    """The steps (1-based) after which a take is previewed, evenly spaced and ending with the
    last: three at 8 steps, one more each time the steps double (6 at 50), at least one."""
    count = min(steps, max(1, round(3 + math.log2(steps / 8))))
    return tuple(math.ceil(k * steps / count) for k in range(1, count + 1))


class Cancelled(Exception):
    """Raised from a Progress callback to stop the work; the engine lets it propagate."""


class EngineError(Exception):
    """A failure a musician can act on; str(e) is one sentence that names the fix."""


@dataclass(frozen=True)
class ModelInfo:
    name: str           # 'small-music' | 'small-sfx' | 'medium' | a repo id or folder
    label: str          # shown in the model picker
    needs: str          # one sentence: what the machine needs to run it
    max_seconds: float  # longest track the model generates
    prompt_prefix: str  # prepended to every prompt (shown in the UI)
    default_steps: int
    default_cfg: float = 1.0  # > 1: a -base model sampled with guidance (CFG/APG, negative prompt)

    @property
    def guided(self) -> bool:
        return self.default_cfg != 1.0


@dataclass(frozen=True, kw_only=True)
class LoraSpec:
    path: str                                   # a .safetensors adapter file
    strength: float = 1.0
    interval: tuple[float, float] = (0.0, 1.0)  # diffusion times (1 = noise) where it acts
    layer_filter: str = ""                      # comma-separated DiT module patterns it skips

    def __post_init__(self):
        _finite("LoRA strength", self.strength)
        lo, hi = self.interval
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi <= 1):
            raise ValueError(f"A LoRA's active interval must lie within 0–1 with start ≤ end, got {lo}–{hi}.")


@dataclass(frozen=True)
class Region:
    start: float              # seconds, inclusive
    end: float                # seconds, exclusive
    prompt: str | None = None  # per-region prompt; None uses the request's prompt


@dataclass(frozen=True, kw_only=True)
class Guidance:
    """Classifier-free guidance for -base models (post-trained models ignore it: they need none)."""
    cfg_scale: float | None = None  # None: the model's default_cfg (official UI: 7 for -base)
    apg_scale: float = 1.0          # 1 = full adaptive projected guidance, 0 = vanilla CFG
    negative_prompt: str = ""       # what the unconditional branch hears instead of silence

    def __post_init__(self):
        if self.cfg_scale is not None:
            _finite("CFG scale", self.cfg_scale)
            if not 0 <= self.cfg_scale <= MAX_CFG:
                raise ValueError(f"CFG scale must be from 0 to {MAX_CFG:g}, got {self.cfg_scale:g}.")
        _finite("APG scale", self.apg_scale)
        if not 0 <= self.apg_scale <= 1:
            raise ValueError(f"APG scale must be from 0 to 1, got {self.apg_scale:g}.")
        check_prompt(self.negative_prompt, "The negative prompt")


@dataclass(frozen=True, kw_only=True)
class Request:
    """What every generation names: the model, the prompt, the seed and how to sample."""
    model: str                             # a name from Engine.models(), a repo id or a folder
    prompt: str                            # as the user typed it; the engine adds ModelInfo.prompt_prefix
    seed: int
    steps: int | None = None               # None: the model's default_steps
    guidance: Guidance = field(default_factory=Guidance)
    loras: tuple[LoraSpec, ...] = ()       # in stacking order

    def __post_init__(self):
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("Pick a model: the request names none.")
        check_prompt(self.prompt)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"The seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}.")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer))
                                       or not 1 <= self.steps <= MAX_STEPS):
            raise ValueError(f"Steps must be a whole number from 1 to {MAX_STEPS}, got {self.steps!r}.")


@dataclass(frozen=True, kw_only=True)
class GenerateRequest(Request):
    seconds: float
    init_audio: np.ndarray | None = None   # (2, N) float32 at SAMPLE_RATE, for audio-to-audio
    init_strength: float = 1.0             # 1 ignores init_audio; lower keeps more of it (> 0)

    def __post_init__(self):
        super().__post_init__()
        _positive("Length", self.seconds, "seconds")
        _strength("Audio-to-audio strength", self.init_strength)


@dataclass(frozen=True, kw_only=True)
class EditRequest(Request):
    source: np.ndarray                 # (2, N) float32 at SAMPLE_RATE; never modified
    regions: tuple[Region, ...]        # inside the source; the engines snap them (studio.edit.snap_regions)
    continue_seconds: float = 0.0      # > 0 appends that much new audio after the source
    extend_start_seconds: float = 0.0  # > 0 puts that much new audio before it (an intro, a pickup)
    context_seconds: float | None = None  # audio heard each side of the regions; None: the engine's default
    crossfade_ms: float = CROSSFADE_MS  # equal-power crossfade at each region border
    match_loudness: bool = False       # scale each region to the loudness of the audio around it
    strength: float = 1.0              # 1 regenerates regions from noise; lower keeps their shape (> 0)
    guide: np.ndarray | None = None    # (2, K) audio from the track's start that strength < 1 restyles
                                       # instead of the source (audio-to-audio from another file)

    def __post_init__(self):
        super().__post_init__()
        if self.guide is not None and self.strength >= 1:
            raise ValueError("A guide file only shapes the take when the strength is below 1: lower the strength "
                             "(e.g. 0.6) or remove the guide.")
        _not_negative("Continue-by", self.continue_seconds, "seconds")
        _not_negative("Extend-start-by", self.extend_start_seconds, "seconds")
        if self.context_seconds is not None:
            _not_negative("Context", self.context_seconds, "seconds")
        _not_negative("Crossfade", self.crossfade_ms, "ms")
        _strength("Strength", self.strength)
        check_region_count(len(self.regions))
        for i, r in enumerate(self.regions, 1):
            if r.prompt is not None:
                check_prompt(r.prompt, f"The prompt of region {i}")


@dataclass(frozen=True)
class Estimate:
    heard_seconds: float          # audio the model hears: the regions and their context
    seconds: float | None = None  # expected wall time of one take here; None until a take has run


@dataclass(frozen=True)
class Take:
    audio: np.ndarray                        # (2, M) float32: the FULL track (M >= N for edits)
    request: GenerateRequest | EditRequest
    seed: int
    model: str                               # the model that made it (always the request's)
    regions: tuple[Region, ...]              # what was regenerated (continuation included)
    elapsed: float = 0.0                     # seconds of wall time
    notes: tuple[str, ...] = ()              # sentences the musician should see (e.g. a cut prompt)


class Engine(Protocol):
    def models(self) -> list[ModelInfo]: ...

    def prepare(self, name: str, progress: Progress | None = None) -> ModelInfo:
        """Load ``name`` ahead of its first request (downloads report "load"); optional to call."""

    def generate(self, req: GenerateRequest, progress: Progress | None = None,
                 preview: PreviewSink | None = None) -> Take:
        """The take ``req`` asks for; ``preview`` (if given) hears a Preview at each of
        ``preview_steps`` (the take is the same with or without it; without, previews cost nothing)."""

    def edit(self, req: EditRequest, progress: Progress | None = None,
             preview: PreviewSink | None = None) -> Take:
        """The edit ``req`` asks for; ``preview`` as for ``generate``."""

    def estimate(self, model: str, track_seconds: float, spans, steps: int | None = None,
                 context_seconds: float | None = None) -> Estimate:
        """What an edit of ``spans`` (Regions on the take's axis) would cost, before it runs."""

    def encode_ahead(self, model: str, audio: np.ndarray, progress: Progress | None = None) -> bool:
        """Prepare edits of ``audio`` with ``model`` now; gives way to requests; True when done."""

    def made_on(self, model: str) -> dict:
        """What a replay of a take of ``model`` must match (precision, device, revision), as JSON."""


NOT_FINITE = ("The model produced invalid audio (NaN or infinite samples), so the take was not kept; "
              "its weights may be damaged: delete the downloaded model and load it again.")


def report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    """Tell ``progress`` (if any) where a job is; it may raise Cancelled."""
    if progress is not None:
        progress(stage, done, total)


def check_finite(audio) -> None:
    """EngineError unless every sample of a generation is a number (such a take is never stored)."""
    if not np.isfinite(np.asarray(audio)).all():
        raise EngineError(NOT_FINITE)


def check_length(seconds: float, info: ModelInfo) -> None:
    """ValueError unless a clip of ``seconds`` is one the model ``info`` can make (at least one latent frame)."""
    shortest = LATENT_HOP / SAMPLE_RATE
    if not shortest <= seconds <= info.max_seconds:
        raise ValueError(f"The length must be from {shortest:.2f} to {info.max_seconds:.0f} seconds "
                         f"for {info.label}, got {seconds:g}.")


def check_region_count(n: int) -> None:
    if n > MAX_REGIONS:
        raise ValueError(f"There are {n} regions; an edit takes at most {MAX_REGIONS}: "
                         "join neighbouring regions or clear some and edit in several passes.")


def check_prompt(prompt: str, what: str = "The prompt") -> None:
    """ValueError for text a tokenizer cannot take (lone UTF-16 surrogates, e.g. from a bad paste)."""
    if not isinstance(prompt, str):
        raise ValueError(f"{what} must be text, got {type(prompt).__name__}.")
    for i, ch in enumerate(prompt):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise ValueError(f"{what} holds an invalid character at position {i + 1} "
                             "(half of an emoji or symbol, often from a bad paste): retype that part.")


def _finite(what: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value):
        raise ValueError(f"{what} must be a number, got {value!r}.")


def _positive(what: str, value, unit: str) -> None:
    _finite(what, value)
    if value <= 0:
        raise ValueError(f"{what} must be more than 0 {unit}, got {value:g}.")


def _not_negative(what: str, value, unit: str) -> None:
    _finite(what, value)
    if value < 0:
        raise ValueError(f"{what} must be 0 {unit} or more, got {value:g}.")


def _strength(what: str, value) -> None:
    _finite(what, value)
    if not 0 < value <= 1:
        raise ValueError(f"{what} must be more than 0 and at most 1, got {value:g}.")
