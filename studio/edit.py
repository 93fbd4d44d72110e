"""Region arithmetic shared by the studio and the engines: validate, snap, splice.

Pure numpy. Audio is (2, N) float32 at SAMPLE_RATE; times are seconds. Errors are ValueError
whose message names the region (1-based, as the UI lists them) and the offending value.

The snapping rule lives here and only here (`snap_edge`): the painter displays it, the UI,
the CLI and both engines apply it, so what the musician sees is what changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from studio.api import CROSSFADE_MS, LATENT_HOP, SAMPLE_RATE, Preview, Region, check_region_count

GRID_SECONDS = LATENT_HOP / SAMPLE_RATE  # ~92.9 ms: regions are regenerated in whole latent frames
SNAP_TOLERANCE = 1e-3  # s: an edge this close to a grid line is on it (absorbs display rounding)
MAX_CONTINUE_SECONDS = 30.0  # the longest continuation the painter's drag asks for
MAX_INTRO_SECONDS = 30.0     # the longest intro (extend before the start) the painter's drag or typed field asks for


def to_samples(t: float, sr: int = SAMPLE_RATE) -> int:
    """Seconds -> the nearest sample index: the one rule for every region edge and length."""
    return int(round(t * sr))


def snap_edge(t: float, duration: float, up: bool, grid: float = GRID_SECONDS,
              tol: float = SNAP_TOLERANCE) -> float:
    """The grid line (or the clip's end) that edge `t` (seconds) snaps to, in [0, duration].

    An edge within `tol` of a line is on that line; otherwise a start (`up=False`) goes down and an
    end (`up=True`) goes up, so a region is never narrower than painted by more than `tol`.
    Idempotent: a snapped edge snaps to itself. studio/painter/painter.js mirrors this to draw it.
    """
    if abs(t - duration) <= tol:
        return duration
    k = round(t / grid)
    if abs(t - k * grid) > tol:
        k = math.ceil(t / grid) if up else math.floor(t / grid)
    return min(max(k * grid, 0.0), duration)


def _check_region(i: int, r: Region, duration: float) -> None:
    """ValueError naming region `i` (1-based) if it is not a finite, non-empty span of the clip."""
    if not (math.isfinite(r.start) and math.isfinite(r.end)):
        raise ValueError(f"Region {i}: start/end must be numbers, got {r.start} – {r.end}.")
    if r.start < 0 or r.end > duration + 1e-6:
        raise ValueError(f"Region {i} ({r.start:.2f}–{r.end:.2f} s) lies outside the clip "
                         f"(0–{duration:.2f} s).")
    if r.end - r.start <= 0:
        raise ValueError(f"Region {i} has zero length (start {r.start:.2f} s, end {r.end:.2f} s).")


def _overlap(i: int, a: Region, j: int, b: Region) -> ValueError:
    """The error for regions at 0-based positions i and j, named as the painter numbers them."""
    (i, a), (j, b) = sorted([(i, a), (j, b)], key=lambda p: p[0])
    return ValueError(f"Regions {i + 1} and {j + 1} overlap ({a.start:.2f}–{a.end:.2f} s and "
                      f"{b.start:.2f}–{b.end:.2f} s): move or shorten one so they only touch.")


def snap_regions(regions, duration: float, beats=None, grid: float = GRID_SECONDS) -> tuple[Region, ...]:
    """The regions an edit regenerates: each edge snapped by `snap_edge` (after moving it to the
    nearest beat when `beats`, seconds, is given), sorted, neighbours joined.

    Snapping outward can make neighbours touch or share one grid cell: with the same prompt they
    become one region; with different prompts the shared cell is split at its middle. Regions
    that share more than one grid cell overlap and are refused. Idempotent.
    """
    regions = list(regions)
    check_region_count(len(regions))
    snapped = []
    for i, r in enumerate(regions, 1):
        _check_region(i, r, duration)
        start, end = r.start, r.end
        if beats is not None and len(beats):
            start, end = line_for(beats, start, duration, False, grid), line_for(beats, end, duration, True, grid)
            if end <= start:
                start, end = r.start, r.end
        snapped.append(Region(*snap_span(start, end, duration, grid), r.prompt))
    return _join(snapped, grid)


def snap_span(start: float, end: float, duration: float, grid: float = GRID_SECONDS) -> tuple[float, float]:
    """(start, end) seconds snapped by `snap_edge`; a sliver that snaps to nothing becomes the
    grid cell after its line (the one before, at the clip's end)."""
    a, b = snap_edge(start, duration, False, grid), snap_edge(end, duration, True, grid)
    if b <= a:
        b = min(a + grid, duration)
    if b <= a:
        a = snap_edge(a - grid, duration, False, grid)
    return a, b


def _join(regions: list[Region], grid: float) -> tuple[Region, ...]:
    """Snapped regions sorted, with neighbours that touch or share one cell joined or split."""
    order = sorted(range(len(regions)), key=lambda i: (regions[i].start, regions[i].end))
    out: list[tuple[int, Region]] = []
    for i in order:
        r = regions[i]
        if not out:
            out.append((i, r))
            continue
        j, last = out[-1]
        shared = last.end - r.start
        if shared > grid + SNAP_TOLERANCE or r.start < last.start - SNAP_TOLERANCE:
            raise _overlap(j, regions[j], i, r)
        if shared >= -SNAP_TOLERANCE and last.prompt == r.prompt:
            out[-1] = (j, Region(last.start, max(last.end, r.end), last.prompt))
        elif shared > SNAP_TOLERANCE:
            mid = (r.start + last.end) / 2
            if not last.start < mid < r.end:
                raise _overlap(j, regions[j], i, r)
            out[-1] = (j, Region(last.start, mid, last.prompt))
            out.append((i, Region(mid, r.end, r.prompt)))
        else:
            out.append((i, r))
    return tuple(r for _, r in out)


def line_for(lines, t: float, duration: float, up: bool, grid: float = GRID_SECONDS) -> float:
    """The line of ``lines`` (seconds: bar or beat lines) an edge at ``t`` goes to before ``snap_edge``:
    the nearest line, except that an edge some line already snaps to (an edge snapped before)
    keeps that line. So snapping twice is snapping once, however close the lines (beats closer
    than two grid cells would otherwise pull a snapped edge to the next one), and a snapped edge
    names the bar or beat it came from (the painter's rows and the take labels say it).
    studio/painter/painter.js mirrors this (``lineFor``)."""
    values = np.asarray(lines, dtype=np.float64)
    near = np.abs(values - t)
    came = np.zeros(len(values), bool)
    for i in np.flatnonzero(near <= grid + SNAP_TOLERANCE):  # only a line within a cell can snap to t
        came[i] = abs(snap_edge(float(values[i]), duration, up, grid) - t) <= SNAP_TOLERANCE
    if came.any():
        near = np.where(came, near, np.inf)
    return float(values[np.argmin(near)])


def equal_power(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade_out, fade_in) gains of length n with fade_out**2 + fade_in**2 == 1."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return np.cos(t * np.pi / 2).astype(np.float32), np.sin(t * np.pi / 2).astype(np.float32)


def splice(source: np.ndarray, generated: np.ndarray, regions, crossfade_ms: float = CROSSFADE_MS,
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


def region_mask(n: int, regions, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Boolean (n,) that is True inside any region."""
    mask = np.zeros(n, dtype=bool)
    for r in regions:
        mask[to_samples(r.start, sr):to_samples(r.end, sr)] = True
    return mask
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
    n, intro = source.shape[1], to_samples(extend_start_seconds, sr)
    moved, all_spans = spans(regions, n / sr, continue_seconds, extend_start_seconds, sr)
    padded = np.concatenate([np.zeros((source.shape[0], intro), np.float32), source], axis=1) if intro else source
    return Layout(padded, moved, all_spans, intro, intro + n + to_samples(continue_seconds, sr))


def spans(regions, duration: float, continue_seconds: float = 0.0, extend_start_seconds: float = 0.0,
          sr: int = SAMPLE_RATE) -> tuple[tuple[Region, ...], tuple[Region, ...]]:
    """(the regions snapped and moved by the intro, everything regenerated: intro, regions,
    continuation) on the take's axis, for a source of ``duration`` seconds."""
    regions = snap_regions(regions, duration)
    intro, n = to_samples(extend_start_seconds, sr), to_samples(duration, sr)
    total = intro + n + to_samples(continue_seconds, sr)
    shift = intro / sr
    moved = tuple(Region(r.start + shift, r.end + shift, r.prompt) for r in regions)
    out = ((Region(0.0, shift),) if intro else ()) + moved
    if total > intro + n:
        out += (Region((intro + n) / sr, total / sr),)
    if not out:
        raise ValueError("Paint at least one region, or set “continue by” or “extend start by”, before generating.")
    return moved, out


def place_guide(plan: Layout, guide: np.ndarray) -> np.ndarray:
    """(2, total) ``guide`` laid on the take's axis: it starts where the source starts (after the
    intro), cut or padded with silence to the take's length."""
    return fit(guide, plan.total - plan.intro, offset=plan.intro)


def fit(audio: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """(2, offset + n) float32: silence, then ``audio`` cut or padded with silence to ``n`` samples."""
    out = np.zeros((2, offset + n), np.float32)
    k = min(n, audio.shape[1])
    out[:, offset:offset + k] = audio[:, :k]
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


def preview(take: np.ndarray, spans, step: int, steps: int, sr: int = SAMPLE_RATE) -> Preview:
    """The Preview of ``take`` (2, total), the whole take's audio as it stands after ``step`` of
    ``steps`` steps: its samples over the hull of ``spans`` (everything regenerated)."""
    a, b = to_samples(min(r.start for r in spans), sr), to_samples(max(r.end for r in spans), sr)
    return Preview(step, steps, a / sr, np.ascontiguousarray(take[:, a:b], dtype=np.float32))


# --------------------------------------------------------------------------- what the model runs on

LONG_TRACK_CONTEXT = 15.0  # seconds heard on each side of an edit in a track longer than the model


def window(regions, total: int, max_seconds: float, context_seconds: float | None) -> tuple[int, int]:
    """(start, end) samples of the part of a ``total``-sample track an edit runs on.

    The regions' hull plus ``context_seconds`` each side (None: the whole track when it fits
    ``max_seconds``, else ``LONG_TRACK_CONTEXT`` as far as it fits), clipped to the track and aligned
    to the latent grid. A hull longer than ``max_seconds`` is an error naming both lengths.
    """
    limit = int(max_seconds * SAMPLE_RATE) // LATENT_HOP * LATENT_HOP
    first = to_samples(min(r.start for r in regions)) // LATENT_HOP * LATENT_HOP
    last = -(-to_samples(max(r.end for r in regions)) // LATENT_HOP) * LATENT_HOP
    if last - first > limit:
        raise ValueError(f"The regions span {(last - first) / SAMPLE_RATE:.1f} s, more than this model's "
                         f"{max_seconds:.0f} s: edit them in smaller groups.")
    end_of_track = -(-total // LATENT_HOP) * LATENT_HOP
    if context_seconds is None:
        if end_of_track <= limit:
            return 0, total
        context = min(int(LONG_TRACK_CONTEXT * SAMPLE_RATE), (limit - (last - first)) // 2)
    else:
        if context_seconds < 0:
            raise ValueError(f"context_seconds must be >= 0, got {context_seconds}")
        context = min(int(context_seconds * SAMPLE_RATE), (limit - (last - first)) // 2)
    context = context // LATENT_HOP * LATENT_HOP
    start, end = max(0, first - context), min(end_of_track, last + context)
    # Give context cut at one end of the track to the other end.
    spare = 2 * context - (first - start) - (end - last)
    start, end = max(0, start - spare), min(end_of_track, end + spare)
    if end - start > limit:
        end = start + limit
    return start, min(end, total)


def prompt_groups(regions, prompt: str) -> list[tuple[str, tuple[Region, ...]]]:
    """Regions grouped by the prompt they ask for (a region's own, else the edit's)."""
    groups: dict[str, list[Region]] = {}
    for r in regions:
        groups.setdefault(r.prompt or prompt, []).append(r)
    return [(p, tuple(rs)) for p, rs in groups.items()]
