"""The seam audition: a short loop around one border of a take, cut from the current version (A)
and from the take (B) at the same spot, so a musician can hear each join in isolation.

Positions are samples on the take's time axis (an intro shifts the current version right by the
take's ``shift``); seconds become samples only through ``edit.to_samples``. Nothing here runs a
model: the loops are cut from the audio files the session already holds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from studio import audio_io, session
from studio.api import SAMPLE_RATE
from studio.edit import to_samples

PRE_SECONDS = 2.0   # default audio heard before the border (the pre-roll)
POST_SECONDS = 2.0  # default audio heard after it
MAX_SIDE_SECONDS = 8.0  # the longest pre-roll or tail a loop may have


@dataclass(frozen=True)
class Border:
    label: str   # e.g. "Region 1 start" (neighbours' touching edges share one border)
    sample: int  # on the take's axis

    def choice(self, sr: int = SAMPLE_RATE) -> str:
        return f"{self.label} · {self.sample / sr:.2f} s"


def borders(spans, frames: int, intro: int = 0, continued: int = 0, sr: int = SAMPLE_RATE) -> tuple[Border, ...]:
    """The borders of a take of ``frames`` samples whose regenerated ``spans`` (Regions in seconds
    on its axis, as ``edit.spans`` lays them out: intro first, continuation last) include an intro
    of ``intro`` samples and a continuation of ``continued`` samples.

    Each region gives its start and end; the intro gives the join where the track begins, the
    continuation the join where the track used to end. Sorted by position; borders at the same
    sample are one, their labels joined."""
    spans = [(to_samples(r.start, sr), to_samples(r.end, sr)) for r in spans]
    found: list[tuple[int, str]] = []
    if intro and spans and spans[0] == (0, intro):
        spans.pop(0)
        found.append((intro, "Intro joins the track"))
    if continued and spans and spans[-1] == (frames - continued, frames):
        spans.pop()
        found.append((frames - continued, "Continuation joins the track"))
    for i, (a, b) in enumerate(spans, 1):
        found += [(a, f"Region {i} start"), (b, f"Region {i} end")]
    merged: dict[int, list[str]] = {}
    for sample, label in sorted(found, key=lambda f: f[0]):
        merged.setdefault(sample, []).append(label)
    return tuple(Border(" / ".join(labels), sample) for sample, labels in merged.items())


def loop_span(border: int, frames: int, pre: float = PRE_SECONDS, post: float = POST_SECONDS,
              sr: int = SAMPLE_RATE) -> tuple[int, int]:
    """[start, end) samples of the loop around ``border``: ``pre`` seconds before it and ``post``
    after, clamped to the take's ``frames``. ValueError (a sentence) for a border outside the
    take or a pre-roll/tail that is not a number of seconds in [0, MAX_SIDE_SECONDS]."""
    for name, value in (("pre-roll", pre), ("time after the border", post)):
        if not (math.isfinite(value) and 0 <= value <= MAX_SIDE_SECONDS):
            raise ValueError(f"The {name} must be between 0 and {MAX_SIDE_SECONDS:g} s, got {value}.")
    if not 0 <= border <= frames:
        raise ValueError(f"The border at {border / sr:.2f} s lies outside the take (0–{frames / sr:.2f} s): "
                         "pick one from the list.")
    start, end = max(0, border - to_samples(pre, sr)), min(frames, border + to_samples(post, sr))
    if end <= start:
        raise ValueError("The loop is empty: give it some pre-roll or some time after the border.")
    return start, end


def cut(audio: np.ndarray, start: int, end: int, at: int = 0) -> np.ndarray:
    """(2, end - start) float32: samples [start, end) of an axis on which ``audio`` (2, M) begins
    at sample ``at``; silence where ``audio`` has none (before an intro, after the track's end)."""
    out = np.zeros((2, end - start), np.float32)
    lo, hi = max(start, at), min(end, at + audio.shape[1])
    if hi > lo:
        out[:, lo - start:hi - start] = audio[:, lo - at:hi - at]
    return out


@dataclass(frozen=True)
class Audition:
    a: np.ndarray  # (2, end - start): the current version at the loop's spot
    b: np.ndarray  # (2, end - start): the take
    start: int     # samples on the take's axis
    end: int


def take_borders(s: session.Session, take_id: str) -> tuple[Border, ...]:
    """The borders of take ``take_id`` of session ``s`` (KeyError naming it if there is none)."""
    t = s.take(take_id)
    continued = to_samples(float(t.settings.get("continue_seconds", 0) or 0))
    return borders(t.regions, _frames(s, take_id), t.shift, continued)


def _frames(s: session.Session, take_id: str) -> int:
    """Samples of the take (read from its file for a take stored before records held its length)."""
    return s.take(take_id).frames or audio_io.read_track(session.track_file(s, take_id)).shape[1]


def audition(s: session.Session, take_id: str, border: int, pre: float = PRE_SECONDS,
             post: float = POST_SECONDS) -> Audition:
    """The loop around ``border`` (samples on the take's axis) of A (s.current, placed after the
    take's intro) and B (the take), read from their WAVs: only the loop's frames are read."""
    t = s.take(take_id)
    start, end = loop_span(border, _frames(s, take_id), pre, post)
    b = audio_io.read_track(session.track_file(s, take_id), start, end)
    first = max(0, start - t.shift)  # the current version's frames the loop reaches
    a = audio_io.read_track(session.track_file(s, "current"), first, max(first, end - t.shift))
    return Audition(cut(a, start, end, at=t.shift + first), cut(b, start, end, at=start), start, end)


# --------------------------------------------------------------------------- how big a seam is

FRAME = 2048        # samples per analysis frame (46 ms): long enough for bass, short enough for a click
HOP = 512           # frames start every HOP samples; FRAME // HOP consecutive pairs straddle a point
BANDS = 48          # log-spaced bands from BAND_EDGES_HZ: the spectrum as the ear groups it
BAND_EDGES_HZ = (40.0, 16000.0)
FLOOR_DB = 80.0     # band levels more than this below the loudest band of the context are treated as silence
HEARD_DB = 0.25     # mean band change (dB) added to both sides of the ratio: smaller changes are not heard,
                    # so two inaudible changes (a pure tone's frames) compare as equal, not as 0.001 vs 0.002 dB
LOUDNESS_SECONDS = 0.1    # level measured over this much audio just before and just after the point
CONTEXT_SECONDS = 10.0    # the clip's typical change is measured this far either side of the point


@dataclass(frozen=True)
class SeamMeasure:
    """How much the audio changes across one point, against how much it changes anywhere nearby.

    ``spectral``: the largest change of the band spectrum (mean |dB| over BANDS) between consecutive
    frames that straddle the point, divided by the median of the same statistic at every frame
    position within CONTEXT_SECONDS (1 = as typical as any moment of the clip; 3 = three times
    bigger). ``loudness_db``: RMS level of the LOUDNESS_SECONDS after the point minus that before
    it. ``typical_db``: the median |level change| between consecutive LOUDNESS_SECONDS blocks nearby,
    to read ``loudness_db`` against."""
    spectral: float
    loudness_db: float
    typical_db: float

    def text(self) -> str:
        """'seam 1.1× typical, +0.4 dB (typical ±1.2 dB)': how the studio shows it."""
        return f"seam {self.spectral:.1f}× typical, {self.loudness_db:+.1f} dB (typical ±{self.typical_db:.1f} dB)"


def seam_jump(audio: np.ndarray, at: int, sr: int = SAMPLE_RATE) -> SeamMeasure:
    """The SeamMeasure of ``audio`` (C, N) float at sample ``at`` (the first sample after the seam).
    ValueError (a sentence) when there is less than FRAME samples of audio on either side."""
    n = audio.shape[1]
    if not FRAME <= at <= n - FRAME:
        raise ValueError(f"A seam at {at / sr:.2f} s cannot be measured: it needs {FRAME / sr * 1000:.0f} ms of "
                         f"audio on each side, and the clip is {n / sr:.2f} s long.")
    reach = int(CONTEXT_SECONDS * sr)
    lo = at - (min(at, reach) - FRAME) // HOP * HOP - FRAME  # frames laid so that one starts exactly at ``at``
    hi = min(n, at + reach)
    flux = _band_flux(np.asarray(audio[:, lo:hi], np.float64), sr)
    k = FRAME // HOP  # frames [at - FRAME, at) ... [at, at + FRAME): k pairs straddle the point
    straddle = np.lib.stride_tricks.sliding_window_view(flux, k).max(axis=1)  # straddle[i]: pairs i .. i + k - 1
    at_point = straddle[(at - lo) // HOP - k]
    spectral = (at_point + HEARD_DB) / (float(np.median(straddle)) + HEARD_DB)
    block = to_samples(LOUDNESS_SECONDS, sr)
    levels = [_level_db(audio[:, a:a + block]) for a in range(lo, hi - block + 1, block)]
    typical = float(np.median(np.abs(np.diff(levels)))) if len(levels) > 1 else 0.0
    step = _level_db(audio[:, at:at + block]) - _level_db(audio[:, max(0, at - block):at])
    return SeamMeasure(float(spectral), float(step), typical)


def wrap_jump(loop: np.ndarray, sr: int = SAMPLE_RATE) -> SeamMeasure:
    """The SeamMeasure of a loop (C, N) where its end runs into its start: the loop played twice,
    measured at the join."""
    return seam_jump(np.concatenate([loop, loop], axis=1), loop.shape[1], sr)


def _band_flux(x: np.ndarray, sr: int) -> np.ndarray:
    """(J - 1,) mean |dB| change of the band spectrum between consecutive frames of x (C, M), frames
    of FRAME samples every HOP (Hann window; channels' powers summed; levels floored FLOOR_DB below the
    loudest band)."""
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME, axis=1)[:, ::HOP]   # (C, J, FRAME)
    power = (np.abs(np.fft.rfft(frames * np.hanning(FRAME), axis=-1)) ** 2).sum(axis=0)  # (J, FRAME // 2 + 1)
    freqs = np.fft.rfftfreq(FRAME, 1 / sr)
    edges = np.geomspace(*BAND_EDGES_HZ, BANDS + 1)
    band = np.clip(np.searchsorted(edges, freqs, side="right") - 1, -1, BANDS)
    inside = (band >= 0) & (band < BANDS)
    bands = np.zeros((power.shape[0], BANDS))
    np.add.at(bands.T, band[inside], power[:, inside].T)
    db = 10 * np.log10(bands + 1e-20)
    db = np.maximum(db, db.max() - FLOOR_DB)
    return np.abs(np.diff(db, axis=0)).mean(axis=1)


def _level_db(x: np.ndarray) -> float:
    """RMS level of x in dB (silence is -120 dB)."""
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12)) if x.size else -120.0
