"""How well a take keeps to its track: the seam at each of its borders and how far the beats of its
regenerated regions drift from the track's bar grid (``tempo.drift_ms``).

A border's seam is ``seams.seam_jump`` of the take at that point, read against the jump the track it
was made from (its base version) had at the very same point: a border on a drum hit jumps in the
original too, so "1.0× the original's" is a border the ear will not find, and "+12 dB" a region that
came out louder than what surrounds it. Where the original has no audio on one side (an intro, a
continuation) the take's jump is read against its own typical change, as ``SeamMeasure`` says.

The takes list shows each take's worst seam and its drift and can be sorted by them, so the musician
hears the likely best take first. A take never changes, so its fit is measured once per grid and kept
in memory (``of_take``); nothing here runs a model.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from studio import seams, session, tempo
from studio.meter import Grid


@dataclass(frozen=True)
class BorderFit:
    border: seams.Border
    seam: seams.SeamMeasure | None      # the take's jump; None: too near an end of the take to measure
    original: seams.SeamMeasure | None  # the base version's at the same point; None where it has no audio

    @property
    def excess(self) -> float:
        """The take's spectral jump over the original's at this point (nan if not measured)."""
        if self.seam is None:
            return math.nan
        return self.seam.spectral / self.original.spectral if self.original else self.seam.spectral

    @property
    def step_db(self) -> float:
        """The take's loudness step here less the original's, in dB (nan if not measured)."""
        if self.seam is None:
            return math.nan
        return self.seam.loudness_db - (self.original.loudness_db if self.original else 0.0)

    def choice(self) -> str:
        """'Region 1 start · 4.00 s · jump 1.8× the original's, +12.1 dB': the seam picker's words."""
        if self.seam is None:
            return self.border.choice()
        if self.original is None:
            return f"{self.border.choice()} · {self.seam.text()}"
        step = round(self.step_db, 1) + 0.0  # never "-0.0 dB"
        return f"{self.border.choice()} · jump {self.excess:.1f}× the original's, {step:+.1f} dB"


@dataclass(frozen=True)
class Fit:
    borders: tuple[BorderFit, ...]
    drift: tempo.Drift | None         # the region with the largest median drift; None without a grid

    @property
    def seam(self) -> float:
        """The largest ``excess`` at any border; nan if none was measured."""
        found = [b.excess for b in self.borders if b.seam]
        return max(found) if found else math.nan

    @property
    def step_db(self) -> float:
        """The largest loudness step (either way) at any border, against the original's; nan if none measured."""
        found = [abs(b.step_db) for b in self.borders if b.seam]
        return max(found) if found else math.nan

    @property
    def drift_ms(self) -> float:
        """The median distance of the take's beats from the grid's beat lines; nan when not measured."""
        return self.drift.median_ms if self.drift else math.nan

    def text(self) -> str:
        """'seams ≤1.3×, ≤0.4 dB · drift 5 ms': the takes list's words (parts not measured are left out)."""
        parts = []
        if not math.isnan(self.seam):
            parts.append(f"seams ≤{self.seam:.1f}×, ≤{self.step_db:.1f} dB")
        if not math.isnan(self.drift_ms):
            parts.append(f"drift {self.drift_ms:.0f} ms")
        return " · ".join(parts)


def measure(audio: np.ndarray, borders, regions, grid: Grid | None, original: np.ndarray | None = None,
            shift: int = 0) -> Fit:
    """The Fit of a take ``audio`` (2, N) with ``borders`` (seams.Border, samples on its axis) and
    regenerated ``regions`` (seconds on its axis) against ``grid`` (on its axis; None: no drift).
    ``original``: the version it was made from, which starts ``shift`` samples into the take."""
    found = [BorderFit(b, _jump(audio, b.sample), _jump(original, b.sample - shift)) for b in borders]
    drift = None
    if grid is not None:
        drifts = [d for d in (tempo.drift_ms(audio, grid, r.start, r.end) for r in regions)
                  if not math.isnan(d.median_ms)]
        drift = max(drifts, key=lambda d: d.median_ms, default=tempo.Drift(math.nan, math.nan, ()))
    return Fit(tuple(found), drift)


def _jump(audio: np.ndarray | None, at: int) -> seams.SeamMeasure | None:
    """seams.seam_jump of ``audio`` at ``at``; None where there is too little audio around it."""
    if audio is None or not seams.FRAME <= at <= audio.shape[1] - seams.FRAME:
        return None
    return seams.seam_jump(audio, at)


FITS_KEPT = 512  # fits kept in memory (a few hundred bytes each), the oldest dropped first
_fits: dict[tuple, Fit] = {}
_fits_lock = threading.Lock()


def of_take(s: session.Session, take_id: str, grid: Grid | None) -> Fit:
    """The Fit of take ``take_id`` of ``s`` against ``grid`` (the take's grid, on its axis), measured
    once (KeyError naming the take if there is none)."""
    key = (s.folder, take_id, grid)
    with _fits_lock:
        if key in _fits:
            return _fits[key]
    t = s.take(take_id)
    original = session.audio(s, t.base) if t.base else None
    found = measure(session.audio(s, take_id), seams.take_borders(s, take_id), t.regions, grid, original, t.shift)
    with _fits_lock:
        _fits[key] = found
        while len(_fits) > FITS_KEPT:
            del _fits[next(iter(_fits))]
    return found


ORDERS = {"made": "as made", "seams": "smoothest seams first", "drift": "steadiest beat first"}


def ordered(items: list, order: str, fit_of=lambda item: item) -> list:
    """``items`` in ``order`` (a key of ORDERS), ``fit_of(item)`` giving each one's Fit. Items whose
    measure is missing go last; ties and "made" keep the order they came in."""
    if order not in ("seams", "drift"):
        return list(items)
    measured = [fit_of(item).seam if order == "seams" else fit_of(item).drift_ms for item in items]
    rank = sorted(range(len(items)), key=lambda i: (math.isnan(measured[i]), np.nan_to_num(measured[i]), i))
    return [items[i] for i in rank]
