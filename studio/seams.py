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
