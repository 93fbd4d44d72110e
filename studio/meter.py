"""Musical time: a track's bar grid (tempo, meter, first downbeat) and bar positions <-> seconds.

Pure Python. The one home of how bars map to time: the painter's ruler, typed bar ranges, the
CLI's ``--bars``, loops and their exported lengths all go through ``Grid``.

Conventions (those of every DAW, so a loop exported here drops onto an Ableton, Logic or Reaper
grid at the same BPM):
* BPM counts quarter notes. A bar of ``m/d`` lasts ``m * 4 / d`` quarter notes: 4/4 and 3/4 bars
  are 4 and 3 quarters, a 6/8 bar is 3 (six eighths).
* The meter's beat is its ``1/d`` note (eighths in 6/8): beats on the ruler and ``bar.beat``
  positions count those.
* Bars are 1-based and bar 1 begins at the first downbeat; audio before it (a pickup) lies in bar
  0, -1, ... Positions are ``bar.beat`` with a 1-based beat: ``9.3`` is the third beat of bar 9.
* A typed range names whole units, both ends included: ``9-12`` is bars 9 to 12 (from the start of
  bar 9 to the start of bar 13), ``9.3-10`` from beat 3 of bar 9 to the end of bar 10, ``9-9.2``
  from the start of bar 9 to the end of its second beat.
* A loop of N bars is ``loop_samples`` long: N bars' length rounded to the nearest sample (within
  half a sample of the exact length; at 44.1 kHz every whole BPM from 30 to 300 with 4 bars of 4/4
  is exact to within that half sample).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from studio.api import SAMPLE_RATE

MIN_BPM, MAX_BPM = 20.0, 400.0     # tempos the grid accepts (trackers are asked for 60-200)
METERS = ("4/4", "3/4", "6/8", "2/4", "5/4", "7/8", "12/8")  # offered by the UI; any m/d with d in 2,4,8,16 works
MAX_LOOP_BARS = 64                 # the longest loop "Make it loop" and "Generate a loop" accept

_POSITION = r"(-?\d+)(?:\.(\d+))?"
_RANGE = re.compile(rf"^\s*{_POSITION}\s*(?:-|–|—|:|to)\s*{_POSITION}\s*$")


@dataclass(frozen=True)
class Grid:
    """A constant-tempo bar grid: ``bpm`` quarter notes a minute, bars of ``beats_per_bar`` beats of
    a ``1/beat_unit`` note, bar 1 starting at ``downbeat`` seconds on the track's axis."""
    bpm: float
    beats_per_bar: int = 4
    beat_unit: int = 4
    downbeat: float = 0.0

    def __post_init__(self):
        if isinstance(self.bpm, bool) or not isinstance(self.bpm, (int, float)) or not math.isfinite(self.bpm) \
                or not MIN_BPM <= self.bpm <= MAX_BPM:
            raise ValueError(f"The tempo must be from {MIN_BPM:g} to {MAX_BPM:g} BPM, got {self.bpm!r}.")
        if not (isinstance(self.beats_per_bar, int) and 1 <= self.beats_per_bar <= 32
                and self.beat_unit in (2, 4, 8, 16)):
            raise ValueError(f"The meter must be beats/unit like 4/4, 3/4 or 6/8, got "
                             f"{self.beats_per_bar}/{self.beat_unit}.")
        if not isinstance(self.downbeat, (int, float)) or not math.isfinite(self.downbeat):
            raise ValueError(f"The first downbeat must be a time in seconds, got {self.downbeat!r}.")

    @classmethod
    def parse_meter(cls, meter: str) -> tuple[int, int]:
        """'6/8' -> (6, 8); ValueError with one sentence for anything else."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", meter or "")
        if not m:
            raise ValueError(f"The meter must be written beats/unit, like 4/4, 3/4 or 6/8, got {meter!r}.")
        return int(m.group(1)), int(m.group(2))

    @property
    def meter(self) -> str:
        return f"{self.beats_per_bar}/{self.beat_unit}"

    @property
    def beat_seconds(self) -> float:
        """Length of the meter's beat (its 1/beat_unit note)."""
        return 60.0 / self.bpm * 4 / self.beat_unit

    @property
    def bar_seconds(self) -> float:
        return self.beats_per_bar * self.beat_seconds

    def time(self, bar: int, beat: int = 1) -> float:
        """Seconds where beat ``beat`` (1-based) of bar ``bar`` (1-based; 0 and below: before the
        first downbeat) begins."""
        return self.downbeat + (bar - 1) * self.bar_seconds + (beat - 1) * self.beat_seconds

    def position(self, t: float) -> tuple[int, int, float]:
        """(bar, beat, fraction of that beat) at ``t`` seconds; the inverse of ``time``."""
        beats = (t - self.downbeat) / self.beat_seconds
        whole = math.floor(beats + 1e-9)
        bar, beat = divmod(whole, self.beats_per_bar)
        return bar + 1, beat + 1, max(0.0, beats - whole)

    def label(self, t: float) -> str:
        """'9' at a bar line, '9.3' on a beat, '9.3+' between beats: how rows and takes name a time."""
        bar, beat, frac = self.position(t)
        if frac * self.beat_seconds > 1e-3 and (1 - frac) * self.beat_seconds > 1e-3:
            return f"{bar}.{beat}+"
        if frac > 0.5:  # within 1 ms below the next beat
            bar, beat, _ = self.position(t + 2e-3)
        return str(bar) if beat == 1 else f"{bar}.{beat}"

    def span_label(self, start: float, end: float) -> str:
        """A region's bars as typed: 'bars 9–12', 'bars 9.3–10' (ends named inclusively)."""
        last = end - 1e-3  # the end is exclusive: the unit it closes is the one just before it
        bar, beat, _ = self.position(last)
        end_bar, end_beat, _ = self.position(end)
        tail = str(bar) if end_beat == 1 and abs(self.time(end_bar) - end) < 1e-3 else f"{bar}.{beat}"
        return f"bars {self.label(start)}–{tail}"

    def lines(self, duration: float, unit: str = "bar") -> list[float]:
        """Times of every bar (``unit='bar'``) or beat (``'beat'``) line within [0, duration] seconds."""
        step = self.bar_seconds if unit == "bar" else self.beat_seconds
        first = math.ceil((0.0 - self.downbeat) / step - 1e-9)
        last = math.floor((duration - self.downbeat) / step + 1e-9)
        return [round(self.downbeat + k * step, 6) for k in range(first, last + 1)]

    def parse_range(self, text: str) -> tuple[float, float]:
        """Typed bars ('9-12', '9.3–10', '9:12') -> (start, end) seconds, ends included (see the
        module's conventions). ValueError with one sentence for anything else."""
        m = _RANGE.match(text or "")
        if not m:
            raise ValueError(f"Write bars as first–last, like 9–12 or 9.3–10 (bar.beat), got {text!r}.")
        a_bar, a_beat, b_bar, b_beat = m.groups()
        start = self._edge(int(a_bar), a_beat, text)
        if b_beat is None:
            end = self.time(int(b_bar) + 1)
        else:
            end = self._edge(int(b_bar), b_beat, text) + self.beat_seconds
        if end <= start:
            raise ValueError(f"Bars {text.strip()} end before they start: write the earlier position first.")
        return start, end

    def _edge(self, bar: int, beat: str | None, text: str) -> float:
        b = 1 if beat is None else int(beat)
        if not 1 <= b <= self.beats_per_bar:
            raise ValueError(f"A bar of {self.meter} has beats 1 to {self.beats_per_bar}; "
                             f"beat {b} in {text.strip()!r} does not exist.")
        return self.time(bar, b)

    def loop_samples(self, bars: int, sr: int = SAMPLE_RATE) -> int:
        """Samples in a loop of ``bars`` bars: their exact length rounded to the nearest sample."""
        if isinstance(bars, bool) or not isinstance(bars, int) or not 1 <= bars <= MAX_LOOP_BARS:
            raise ValueError(f"A loop is from 1 to {MAX_LOOP_BARS} whole bars, got {bars!r}.")
        return int(round(bars * self.bar_seconds * sr))


def prompt_bpm(prompt: str) -> float | None:
    """The tempo a prompt states ('lofi house, 90 BPM' -> 90.0), or None."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*bpm\b", prompt or "", re.IGNORECASE)
    if not m:
        return None
    bpm = float(m.group(1))
    return bpm if MIN_BPM <= bpm <= MAX_BPM else None


def with_bpm(prompt: str, bpm: float) -> str:
    """``prompt`` stating ``bpm`` as 'N BPM' (replacing any tempo it already states that way)."""
    text = re.sub(r"\s*,?\s*\d+(?:\.\d+)?\s*bpm\b", "", prompt or "", flags=re.IGNORECASE).strip(" ,")
    stated = f"{bpm:g} BPM"
    return f"{text}, {stated}" if text else stated
