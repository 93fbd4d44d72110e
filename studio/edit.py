"""Region arithmetic shared by the studio and the engines: validate, snap, splice.

Pure numpy. Audio is (2, N) float32 at SAMPLE_RATE; times are seconds. Errors are ValueError
whose message names the region (1-based, as the UI lists them) and the offending value.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from studio.api import LATENT_HOP, SAMPLE_RATE, Region

GRID_SECONDS = LATENT_HOP / SAMPLE_RATE  # ~92.9 ms


def validate_regions(regions, duration: float) -> tuple[Region, ...]:
    """Sorted regions, or ValueError for one outside [0, duration], of zero length, or overlapping."""
    for i, r in enumerate(regions, 1):
        if not (math.isfinite(r.start) and math.isfinite(r.end)):
            raise ValueError(f"Region {i}: start/end must be numbers, got {r.start} – {r.end}.")
        if r.start < 0 or r.end > duration + 1e-6:
            raise ValueError(f"Region {i} ({r.start:.2f}–{r.end:.2f} s) lies outside the clip "
                             f"(0–{duration:.2f} s).")
        if r.end - r.start <= 0:
            raise ValueError(f"Region {i} has zero length (start {r.start:.2f} s, end {r.end:.2f} s).")
    ordered = sorted(regions, key=lambda r: r.start)
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.end - 1e-9:
            raise ValueError(f"Regions {_label(regions, a)} and {_label(regions, b)} overlap "
                             f"({a.start:.2f}–{a.end:.2f} s and {b.start:.2f}–{b.end:.2f} s).")
    return tuple(ordered)


def _label(regions, r: Region) -> int:
    return list(regions).index(r) + 1


def snap_time(t: float, duration: float, grid: float = GRID_SECONDS, up: bool = False) -> float:
    """t rounded down (or up) to the latent grid, clipped to [0, duration]."""
    k = math.ceil(t / grid - 1e-9) if up else math.floor(t / grid + 1e-9)
    return min(max(k * grid, 0.0), duration)


def snap_regions(regions, duration: float, beats=None, grid: float = GRID_SECONDS) -> tuple[Region, ...]:
    """Regions widened to the latent grid (start down, end up); first moved to the nearest beat
    when `beats` (seconds) is given. Widening never shrinks a region, so no painted sample is lost."""
    out = []
    for r in regions:
        start, end = r.start, r.end
        if beats is not None and len(beats):
            start, end = _nearest(beats, start), _nearest(beats, end)
            if end <= start:
                start, end = r.start, r.end
        out.append(Region(snap_time(start, duration, grid), snap_time(end, duration, grid, up=True),
                          r.prompt))
    return validate_regions(out, duration)


def _nearest(values, t: float) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values[np.argmin(np.abs(values - t))])


def beat_times(audio: np.ndarray, sr: int = SAMPLE_RATE) -> list[float]:
    """Beat positions in seconds (librosa's beat tracker on the mono mix at 22.05 kHz)."""
    import librosa
    mono = librosa.resample(audio.mean(axis=0), orig_sr=sr, target_sr=22050)
    _, frames = librosa.beat.beat_track(y=mono, sr=22050, units="time")
    return [round(float(t), 4) for t in frames]


def equal_power(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade_out, fade_in) gains of length n with fade_out**2 + fade_in**2 == 1."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return np.cos(t * np.pi / 2).astype(np.float32), np.sin(t * np.pi / 2).astype(np.float32)


def splice(source: np.ndarray, generated: np.ndarray, regions, crossfade_ms: float = 30.0,
           sr: int = SAMPLE_RATE) -> np.ndarray:
    """The full track: `source` outside `regions`, `generated` inside, continuation appended.

    source: (2, N); generated: (2, M) with M >= N, aligned to the source from sample 0 and
    holding the continuation in [N, M). Each region crossfades from the source into the new
    audio over its first `crossfade_ms` and back over its last, all inside the region, so every
    sample outside the regions equals the source exactly. Returns (2, M) float32.
    """
    n, m = source.shape[1], generated.shape[1]
    if source.ndim != 2 or generated.shape[0] != source.shape[0] or m < n:
        raise ValueError(f"generated must be (C, M>=N) like source; got {generated.shape} vs {source.shape}")
    if crossfade_ms < 0:
        raise ValueError(f"crossfade_ms must be >= 0, got {crossfade_ms}")
    out = np.empty_like(generated, dtype=np.float32)
    out[:, :n] = source
    out[:, n:] = generated[:, n:]
    for r in regions:
        a, b = to_samples(r.start, sr), min(to_samples(r.end, sr), n)
        fade = min(int(round(crossfade_ms * sr / 1000)), (b - a) // 2)
        out[:, a:b] = generated[:, a:b]
        if fade > 0:
            g_out, g_in = equal_power(fade)
            out[:, a:a + fade] = source[:, a:a + fade] * g_out + generated[:, a:a + fade] * g_in
            out[:, b - fade:b] = generated[:, b - fade:b] * g_out + source[:, b - fade:b] * g_in
    return out


def to_samples(t: float, sr: int = SAMPLE_RATE) -> int:
    return int(round(t * sr))


def region_mask(n: int, regions, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Boolean (n,) that is True inside any region."""
    mask = np.zeros(n, dtype=bool)
    for r in regions:
        mask[to_samples(r.start, sr):to_samples(r.end, sr)] = True
    return mask


def parse_painter(value: str | dict | None) -> tuple[tuple[Region, ...], float]:
    """(regions, continue_seconds) from the painter's JSON (see studio/painter/README.md).

    Regions come back in the painter's order and unvalidated; validate_regions judges them.
    """
    if not value:
        return (), 0.0
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, dict):
        raise ValueError(f"painter value must be a JSON object, got {type(data).__name__}")
    regions = []
    for i, item in enumerate(data.get("regions") or [], 1):
        try:
            start, end = float(item["start"]), float(item["end"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"Region {i}: start and end must be numbers, got {item!r}.") from None
        prompt = (item.get("prompt") or "").strip() or None
        regions.append(Region(start, end, prompt))
    cont = float(data.get("continue_seconds") or 0.0)
    if not math.isfinite(cont) or cont < 0:
        raise ValueError(f"Continue-by must be zero or more seconds, got {cont}.")
    return tuple(regions), cont


@dataclass(frozen=True)
class Layout:
    """Where an edit's new audio goes, on the take's time axis.

    source: the request's source with ``intro`` samples of silence in front (the same array when
    nothing is prepended); regions: the request's regions, validated and shifted by the intro;
    spans: everything regenerated (intro, regions, continuation), what the model fills in;
    total: samples of the take.
    """
    source: np.ndarray
    regions: tuple[Region, ...]
    spans: tuple[Region, ...]
    intro: int
    total: int


def layout(source: np.ndarray, regions, continue_seconds: float = 0.0, extend_start_seconds: float = 0.0,
           sr: int = SAMPLE_RATE) -> Layout:
    """The Layout of an edit of ``source`` (2, N); ValueError when there is nothing to generate."""
    regions = validate_regions(regions, source.shape[1] / sr)
    intro, n = to_samples(extend_start_seconds, sr), source.shape[1]
    total = intro + n + to_samples(continue_seconds, sr)
    shift = intro / sr
    moved = tuple(Region(r.start + shift, r.end + shift, r.prompt) for r in regions)
    spans = ((Region(0.0, shift),) if intro else ()) + moved
    if total > intro + n:
        spans += (Region((intro + n) / sr, total / sr),)
    if not spans:
        raise ValueError("Paint at least one region, or set “continue by” or “extend start by”, before generating.")
    padded = np.concatenate([np.zeros((source.shape[0], intro), np.float32), source], axis=1) if intro else source
    return Layout(padded, moved, spans, intro, total)


def place_guide(plan: Layout, guide: np.ndarray) -> np.ndarray:
    """(2, total) ``guide`` laid on the take's axis: it starts where the source starts (after the
    intro), cut or padded with silence to the take's length."""
    out = np.zeros((2, plan.total), np.float32)
    k = min(guide.shape[1], plan.total - plan.intro)
    out[:, plan.intro:plan.intro + k] = guide[:, :k]
    return out


LOUDNESS_SECONDS = 2.0  # audio each side of a region its loudness is matched to
MAX_GAIN_DB = 12.0      # loudness matching never moves a region by more than this


def match_loudness(source: np.ndarray, generated: np.ndarray, regions, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``generated`` with each region scaled so its RMS equals the source's RMS in the
    ``LOUDNESS_SECONDS`` around it (the region's surroundings, which the take keeps), within
    ±MAX_GAIN_DB; regions with silent surroundings or silent new audio are left as they are."""
    out = generated.copy()
    n = source.shape[1]
    for r in regions:
        a, b = to_samples(r.start, sr), min(to_samples(r.end, sr), n)
        k = to_samples(LOUDNESS_SECONDS, sr)
        around = np.concatenate([source[:, max(0, a - k):a], source[:, b:b + k]], axis=1)
        new = generated[:, a:b]
        if around.size == 0 or new.size == 0:
            continue
        want, have = _rms(around), _rms(new)
        if want < 1e-6 or have < 1e-6:
            continue
        limit = 10 ** (MAX_GAIN_DB / 20)
        out[:, a:b] = new * float(np.clip(want / have, 1 / limit, limit))
    return out


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def assemble(plan: Layout, generated: np.ndarray, crossfade_ms: float, match: bool = False,
             sr: int = SAMPLE_RATE) -> np.ndarray:
    """The take (2, total): ``generated`` (2, total) in the intro and the continuation (joined
    without a fade, so the source after the intro is untouched), crossfaded into the regions
    (``match``: at the loudness of their surroundings), the source exactly everywhere else."""
    if match:
        generated = match_loudness(plan.source, generated, plan.regions, sr)
    out = splice(plan.source, generated, plan.regions, crossfade_ms, sr)
    out[:, :plan.intro] = generated[:, :plan.intro]
    return out
