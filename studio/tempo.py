"""Tempo analysis: a clip's beats, its constant-tempo bar grid, and how far a take's beats drift from it.

The one home of beat tracking. ``detect`` finds the beats (Beat This! when installed, else librosa's
dynamic-programming tracker), fits one constant tempo to them, picks the metrical level and the meter
from the accents, and places bar 1 on the most accented beat of the bar. ``drift_ms`` measures the
beats of a span against a grid (a take's borders, item 6 of issue 19).

Audio is (2, N) float32 at SAMPLE_RATE; times are seconds on the clip's axis. BPM counts quarter notes
(see ``studio.meter``).
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np

from studio.api import SAMPLE_RATE
from studio.meter import Grid

log = logging.getLogger(__name__)

TRACKER_SR = 22050      # both trackers work at 22.05 kHz on the mono mix
HOP = 512               # onset-envelope frame: ~23 ms (librosa's default)
# librosa's beat times lie this long after the attack they mark (the onset envelope of centred
# 2048-sample windows peaks a frame late); measured on clicks and drums at 70-170 BPM: 20-28 ms.
ONSET_LAG = 0.022
TEMPO_RANGE = (60.0, 200.0)   # quarter-note BPM a tracked level is moved into (octave errors)
MIN_SECONDS = 4.0        # shorter clips hold too few beats to fit a tempo
MIN_ONSET = 0.5          # mean log-mel rise (dB) the clip's strongest onsets (99th percentile) must reach:
                         # a steady tone ~0.05 (its flux is rounding noise, periodic by chance), pads ~2, drums ~30
MIN_CONFIDENCE = 0.35    # below it: no steady beat (the tests' pads, noise: 0.0-0.1; drums, clicks, arp: 0.5-0.9)
ACCENT_WINDOW = 0.035    # s each side of a beat where its accent (and, for drift, its attack) is read
ATTACK_FRAME = 0.005     # s: the level an attack is read on (drift_ms)
SLACK = 0.05             # s: a beat this far before the clip's start is its first (display rounding, fades)
METER_MARGIN = 0.2       # another meter must beat 4/4 (tried first) by this much of the loudest accent
TIE = 0.05               # accent scores this close are a tie
NO_BEAT = "No steady beat found: set the tempo by hand or tap it."


@dataclass(frozen=True)
class Tempo:
    """What ``detect`` found. ``grid`` is None when there is no steady beat (``reason`` says why)."""
    grid: Grid | None
    beats: tuple[float, ...]       # s: on each beat line of ``grid``, the tracked beat by it (the line if none)
    downbeats: tuple[float, ...]   # s: likewise on each bar line (Beat This!'s downbeats when it ran)
    confidence: float              # 0-1: periodicity of the onsets at the beat x share of beats on the fit x
                                   # how far beat onsets stand out; under MIN_CONFIDENCE: no steady beat
    tracker: str                   # 'librosa' or 'beat_this'
    reason: str                    # one sentence for the musician


@dataclass(frozen=True)
class Drift:
    """How far the beats of a span lie from a grid's beat lines."""
    median_ms: float               # median |offset|; nan when the span has no beats to measure
    max_ms: float                  # largest |offset|; nan likewise
    beats: tuple[float, ...]       # the span's tracked beats, s on the clip's axis


@dataclass(frozen=True)
class _Envelopes:
    """Frame-wise onset strength (what the tracker follows) and accent (how loud each onset is)."""
    onset: np.ndarray    # (frames,) librosa's log-mel spectral flux
    accent: np.ndarray   # (frames,) rise of the frame's amplitude (sqrt of mel power), loudness-weighted
    seconds: float       # the clip's length

    def at(self, env: np.ndarray, times) -> np.ndarray:
        """The largest value of ``env`` within ACCENT_WINDOW of each time (shifted by ONSET_LAG)."""
        out = []
        for t in np.atleast_1d(times):
            lo = max(0, int(math.floor((t + ONSET_LAG - ACCENT_WINDOW) * TRACKER_SR / HOP)))
            hi = min(len(env), int(math.ceil((t + ONSET_LAG + ACCENT_WINDOW) * TRACKER_SR / HOP)) + 1)
            out.append(env[lo:hi].max() if hi > lo else 0.0)
        return np.asarray(out)


def detect(audio: np.ndarray, *, meter: str | None = None) -> Tempo:
    """The tempo, beats, meter and first downbeat of ``audio`` ((2, N) float32 at SAMPLE_RATE).

    ``meter`` ('4/4', '3/4', '6/8', ...) forces the meter; otherwise 3 or 4 beats a bar (or 6/8) is
    read from the accents. A clip without a steady beat gets ``grid=None`` and the reason.
    """
    forced = Grid.parse_meter(meter) if meter else None
    mono = _mono(audio)
    if len(mono) < MIN_SECONDS * TRACKER_SR:
        return _none(f"The clip is shorter than {MIN_SECONDS:g} s, too short to find a tempo: set it by hand.")
    if not np.any(np.abs(mono) > 1e-4):
        return _none("The clip is silent, so it has no beat: set the tempo by hand.")
    env = _envelopes(mono)
    if np.percentile(env.onset, 99) < MIN_ONSET:  # nothing strikes: no tracker is asked
        return _none(NO_BEAT)
    tracked, told = _track(mono, env)
    name = "beat_this" if told is not None else "librosa"
    if len(tracked) < 6:
        return _none(NO_BEAT, tracker=name)
    period, phase, fit = _fit(tracked)
    if told is None:
        period, phase = _binary_grouping(env, period, phase)
    period, phase = _refine(env.onset, period, phase)
    confidence = round(float(np.clip(_periodicity(env.onset, period), 0, 1) * fit * _pulse(env, period, phase)), 3)
    if confidence < MIN_CONFIDENCE:
        return _none(NO_BEAT, tracker=name, confidence=confidence)
    if told is None:  # librosa's level and phase are guesses: let the accents choose
        period, phase = _level(env, period, phase)
    period = _in_range(period)
    grid = _grid(env, period, phase, forced, told)
    beats = _nearest(grid.lines(env.seconds, "beat"), tracked, grid)
    downbeats = _nearest(grid.lines(env.seconds, "bar"), tracked if told is None else told, grid)
    reason = (f"{grid.bpm:.1f} BPM in {grid.meter}, found by {_NAMES[name]} "
              f"(confidence {confidence:.2f}); correct the tempo, meter or first downbeat if needed.")
    return Tempo(grid, beats, downbeats, confidence, name, reason)


def beat_times(audio: np.ndarray) -> list[float]:
    """Beat times in seconds of ``audio`` ((2, N) at SAMPLE_RATE): the tracked beats of ``detect``,
    none for a clip without a steady beat."""
    return list(detect(audio).beats)


def drift_ms(audio: np.ndarray, grid: Grid, start: float, end: float) -> Drift:
    """The beats of ``audio[:, start:end]`` (seconds) against ``grid``'s beat lines, in ms.

    The span is tracked at the grid's own tempo (so a take's beats are read at the track's pulse,
    not re-guessed), with up to a beat of context each side for the tracker; only beats inside
    [start, end] count. A span with fewer than two beats gives nan.
    """
    pad = grid.beat_seconds
    lo, hi = max(0.0, start - pad), min(audio.shape[1] / SAMPLE_RATE, end + pad)
    mono = _mono(audio[:, int(round(lo * SAMPLE_RATE)):int(round(hi * SAMPLE_RATE))])
    if len(mono) < 2 * HOP or hi - lo < 2 * grid.beat_seconds:
        return Drift(math.nan, math.nan, ())
    onset = _envelopes(mono).onset
    tracked = _attacks(mono, _librosa_beats(onset, bpm=60.0 / grid.beat_seconds))
    beats = [lo + t for t in tracked if start <= lo + t <= end]
    if len(beats) < 2:
        return Drift(math.nan, math.nan, tuple(beats))
    offsets = np.abs([_offset(grid, b, "beat") for b in beats]) * 1000
    return Drift(float(np.median(offsets)), float(offsets.max()), tuple(beats))


def _attacks(mono: np.ndarray, times) -> list[float]:
    """Each beat in ``times`` (s on ``mono``'s axis) moved onto its attack: the steepest rise of the
    level (ATTACK_FRAME windows, a millisecond apart) within ACCENT_WINDOW of it. librosa's beats
    are onset frames (23 ms) apart; an attack is read to about a millisecond."""
    hop, n = TRACKER_SR // 1000, int(ATTACK_FRAME * TRACKER_SR)
    if len(mono) < n + hop:
        return list(times)
    energy = np.lib.stride_tricks.sliding_window_view(np.square(mono, dtype=np.float64), n)[::hop].mean(axis=1)
    rise = np.diff(10 * np.log10(energy + 1e-10))  # rise[i]: frame i to i + 1, as the attack enters frame i + 1
    out = []
    for t in times:
        a = max(0, int((t - ACCENT_WINDOW) * TRACKER_SR - n) // hop)
        b = min(len(rise), int((t + ACCENT_WINDOW) * TRACKER_SR - n) // hop + 1)
        out.append(((a + int(np.argmax(rise[a:b]))) * hop + n + hop / 2) / TRACKER_SR if b > a else t)
    return out


_NAMES = {"librosa": "librosa", "beat_this": "Beat This!"}


def _none(reason: str, tracker: str = "librosa", confidence: float = 0.0) -> Tempo:
    return Tempo(None, (), (), confidence, tracker, reason)


def _mono(audio: np.ndarray) -> np.ndarray:
    """(2, N) at SAMPLE_RATE -> mono float32 at TRACKER_SR."""
    import librosa
    if audio.ndim != 2 or audio.shape[0] != 2:
        raise ValueError(f"Audio must be stereo (2, samples), got shape {audio.shape}.")
    mono = np.asarray(audio, dtype=np.float32).mean(axis=0)
    return librosa.resample(mono, orig_sr=SAMPLE_RATE, target_sr=TRACKER_SR).astype(np.float32)


def _envelopes(mono: np.ndarray) -> _Envelopes:
    import librosa
    mel = librosa.feature.melspectrogram(y=mono, sr=TRACKER_SR, hop_length=HOP)  # (128, frames) power
    onset = librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=TRACKER_SR, hop_length=HOP)
    loud = np.sqrt(mel.sum(axis=0))
    accent = np.maximum(0.0, np.diff(loud, prepend=0.0))  # a clip that starts on a beat starts loud
    return _Envelopes(onset.astype(np.float64), accent.astype(np.float64), len(mono) / TRACKER_SR)


def _track(mono: np.ndarray, env: _Envelopes) -> tuple[np.ndarray, np.ndarray | None]:
    """(beat times, downbeat times or None): Beat This! when it is installed and runs, else librosa."""
    found = _beat_this(mono)
    if found is not None:
        return found
    return np.asarray(_librosa_beats(env.onset)), None


def _librosa_beats(onset: np.ndarray, bpm: float | None = None) -> list[float]:
    """librosa's beats on an onset envelope, moved back by ONSET_LAG onto the attacks (s)."""
    import librosa
    _, times = librosa.beat.beat_track(onset_envelope=onset, sr=TRACKER_SR, hop_length=HOP, bpm=bpm,
                                       units="time")
    return [max(0.0, float(t) - ONSET_LAG) for t in times]


@functools.lru_cache(maxsize=1)
def _beat_this_model():
    """Beat This!'s tracker (CPJKU), or None when the package is missing or its weights cannot load."""
    try:
        from beat_this.inference import Audio2Beats
    except ImportError:
        return None
    try:
        return Audio2Beats(checkpoint_path="final0", device="cpu", dbn=False)
    except Exception as e:  # no network for the first download, a broken cache: librosa will do
        log.warning("Beat This! is installed but could not load its model (%s); using librosa.", e)
        return None


def _beat_this(mono: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    model = _beat_this_model()
    if model is None:
        return None
    try:
        beats, downbeats = model(mono, TRACKER_SR)
    except Exception as e:
        log.warning("Beat This! failed on this clip (%s); using librosa.", e)
        return None
    return np.asarray(beats, dtype=np.float64), np.asarray(downbeats, dtype=np.float64)


def _fit(beats: np.ndarray) -> tuple[float, float, float]:
    """(period s, phase s, fraction of beats that fit): one constant tempo through tracked beats.

    Least squares of beat time against beat index. Indices come from the local steps between beats
    (a missed beat is a step of two, an extra one a step of zero), so tempo errors do not accumulate
    along the clip; beats off the line by more than a fifth of a period are dropped and the fit redone.
    """
    beats = np.asarray(beats, dtype=np.float64)
    period = float(np.median(np.diff(beats)))
    steps = np.round(np.diff(beats) / period)
    index = np.concatenate([[0.0], np.cumsum(steps)])
    keep = np.concatenate([[True], steps > 0])
    for _ in range(3):
        period, phase = np.polyfit(index[keep], beats[keep], 1)
        index = np.round((beats - phase) / period)
        residual = beats - (phase + index * period)
        keep = np.abs(residual) < 0.2 * period
        if keep.sum() < 2:
            return float(period), float(phase), 0.0
    period, phase = np.polyfit(index[keep], beats[keep], 1)
    return float(period), float(phase), float(keep.mean())


def _binary_grouping(env: _Envelopes, period: float, phase: float) -> tuple[float, float]:
    """(period, phase), or a binary multiple of the tatum when ``period`` groups an odd number (5, 7).

    The tatum is the fastest regular pulse: the shortest period / n (n up to 8, at least 70 ms)
    at which the onsets are nearly as periodic as at ``period``. Beats group tatums by twos or threes;
    a tracker that settled on five sixteenths (librosa does on an even arpeggio) is moved to the
    power-of-two multiple of the tatum nearest 120 BPM, where accents (if any) later pick the level,
    through the tatum line nearest the clip's first onset (the tracker's phase among tatums is a guess).
    """
    at_period = _periodicity(env.onset, period)
    n = max((k for k in range(1, 9) if period / k >= 0.07
             and _periodicity(env.onset, period / k) >= 0.75 * at_period), default=1)
    if n not in (5, 7):
        return period, phase
    tatum = period / n
    first = np.flatnonzero(env.accent >= 0.3 * env.accent.max())[0] * HOP / TRACKER_SR - ONSET_LAG
    phase += tatum * round((first - phase) / tatum)
    return min((tatum * 2 ** k for k in range(8)), key=lambda p: abs(math.log2(p / 0.5))), phase


def _refine(onset: np.ndarray, period: float, phase: float) -> tuple[float, float]:
    """(period, phase) within 1.5 % and 40 ms of the given ones where the onset envelope summed on
    the beat lines is largest: sub-frame precision where a tracker's beats keep to whole frames."""
    frames = np.arange(len(onset))
    smooth = np.convolve(onset, np.hanning(5) / np.hanning(5).sum(), mode="same")
    seconds = len(onset) * HOP / TRACKER_SR
    best = (-np.inf, period, phase)
    for p in period * np.linspace(0.985, 1.015, 61):
        for ph in phase + np.linspace(-0.04, 0.04, 33):
            at = (_lines(ph, p, seconds) + ONSET_LAG) * TRACKER_SR / HOP
            score = float(np.interp(at, frames, smooth).mean())
            if score > best[0]:
                best = (score, p, ph)
    return float(best[1]), float(best[2])


def _periodicity(onset: np.ndarray, period: float) -> float:
    """Autocorrelation of the mean-removed onset envelope at one period, over its value at lag 0:
    near 1 for a steady pulse, near 0 for noise or a pad."""
    x = onset - onset.mean()
    energy = float(np.dot(x, x))
    if energy <= 0:
        return 0.0
    lag = period * TRACKER_SR / HOP
    lo = int(math.floor(lag))
    if lo < 1 or lo + 1 >= len(x):
        return 0.0
    below, above = (float(np.dot(x[:-k], x[k:])) / energy for k in (lo, lo + 1))
    return below + (lag - lo) * (above - below)


def _pulse(env: _Envelopes, period: float, phase: float) -> float:
    """0-1: how much the onsets on the beat lines stand out from the clip's mean onset strength.

    A periodic but flat onset envelope (a pad's slow swells, noise) has beat onsets about 1-2x the
    mean; drums and plucks 3-15x. Normalised autocorrelation alone cannot tell them apart."""
    contrast = env.at(env.onset, _lines(phase, period, env.seconds)).mean() / (env.onset.mean() or 1.0)
    return float(np.clip((contrast - 1.3) / 1.5, 0.0, 1.0))


def _level(env: _Envelopes, period: float, phase: float) -> tuple[float, float]:
    """The metrical level whose beats carry the accents: the tracked one, half or double it, or
    the tracked one shifted half a beat (a tracker that locked onto the off-beats).

    A level's salience is the mean accent on its beats less that on its midpoints: the true beat
    has loud beats and quiet midpoints; double time puts half its beats on quiet midpoints; half time
    puts the other beats (a snare on 2 and 4) on its midpoints. Ties keep the tracker's choice.
    """
    options = [(period, phase), (period, phase + period / 2), (period / 2, phase),
               (2 * period, phase), (2 * period, phase + period)]
    scores = []
    for p, ph in options:
        bpm = 60.0 / p
        if not TEMPO_RANGE[0] <= bpm <= TEMPO_RANGE[1]:
            scores.append(-np.inf)
            continue
        on = _lines(ph, p, env.seconds)
        scores.append(env.at(env.accent, on).mean() - env.at(env.accent, on + p / 2).mean())
    scale = env.accent.max() or 1.0
    best = int(np.argmax(scores))
    if np.isfinite(scores[0]) and scores[best] - scores[0] < 0.05 * scale:
        best = 0
    return options[best]


def _in_range(period: float) -> float:
    """``period`` doubled or halved until its tempo lies in TEMPO_RANGE."""
    while 60.0 / period > TEMPO_RANGE[1]:
        period *= 2
    while 60.0 / period < TEMPO_RANGE[0]:
        period /= 2
    return period


def _lines(phase: float, period: float, seconds: float) -> np.ndarray:
    """Times phase + k * period within [-SLACK, seconds): a beat a hair before 0 is the clip's first."""
    first = math.ceil((-SLACK - phase) / period - 1e-9)
    last = math.floor((seconds - phase) / period - 1e-9)
    return phase + period * np.arange(first, last + 1)


def _grid(env: _Envelopes, period: float, phase: float, forced: tuple[int, int] | None,
          told: np.ndarray | None) -> Grid:
    """The grid whose beats include the tracked level (``period``, ``phase``), bar 1 on the beat
    that starts most bars. The meter is the forced one, or Beat This!'s (from its downbeats), or
    the one whose bars best match the accents: 4/4 unless 3/4 or 6/8 beats it by METER_MARGIN."""
    if forced is not None:
        readings = _readings(period, *forced)
    elif told is not None and len(told) >= 2:
        per_bar = int(round(float(np.median(np.diff(told))) / period))
        readings = _readings(period, *{2: (2, 4), 3: (3, 4), 6: (6, 8)}.get(per_bar, (4, 4)))
    else:  # 6/8 only as six tracked beats: a 4/4 with kicks on 1 and 3 also groups its beats in twos
        readings = [(4, 4, period), (3, 4, period)]
        if 30.0 / period >= TEMPO_RANGE[0]:
            readings.append((6, 8, 2 * period))
    scored = []
    for per_bar, unit, quarter in readings:
        grid = Grid(round(60.0 / float(quarter), 3), per_bar, unit, 0.0)
        downbeat, score = _downbeat(env, grid, phase, told)
        log.debug("%s at %.2f BPM: bar score %.3f", grid.meter, grid.bpm, score)
        scored.append((score, Grid(grid.bpm, per_bar, unit, downbeat)))
    default, rivals = scored[0], scored[1:]
    margin = TIE if forced is not None else METER_MARGIN
    rivals = [r for r in rivals if r[0] > default[0] + margin]
    if not rivals:
        return default[1]
    return next(grid for score, grid in rivals if score >= max(r[0] for r in rivals) - TIE)


def _readings(period: float, per_bar: int, unit: int) -> list[tuple[int, int, float]]:
    """(per_bar, unit, quarter-note seconds) for each way the tracked beat (``period`` s) can sit in
    the meter, most likely first: a quarter in x/2, x/4 and x/16; in x/8 an eighth, a dotted quarter
    (compound meters: 6/8, 9/8, 12/8) or a quarter, those whose tempo lies in TEMPO_RANGE."""
    if unit != 8:
        return [(per_bar, unit, period)]
    eighths = (1, 3, 2) if per_bar % 3 == 0 else (1, 2)
    quarters = [2 * period / n for n in eighths if TEMPO_RANGE[0] <= 60.0 * n / (2 * period) <= TEMPO_RANGE[1]]
    return [(per_bar, unit, q) for q in quarters or [2 * period]]


def _downbeat(env: _Envelopes, grid: Grid, phase: float, told: np.ndarray | None) -> tuple[float, float]:
    """(first downbeat s, score): the beat position of ``grid`` (its beats through ``phase``) whose
    beats are loudest against the others (or, given Beat This!'s downbeats, nearest most of them).
    The downbeat is the first bar line at or after the clip's start."""
    beats = _lines(phase % grid.beat_seconds, grid.beat_seconds, env.seconds)
    per_bar = grid.beats_per_bar
    if len(beats) < 2 * per_bar:
        return _first_bar(float(beats[0]) if len(beats) else phase, grid), 0.0
    position = np.arange(len(beats)) % per_bar
    if told is not None and len(told):
        nearest = np.abs(beats[None, :] - np.asarray(told)[:, None]).argmin(axis=1)
        scores = np.bincount(position[nearest], minlength=per_bar).astype(float) / len(told)
    else:
        accents = env.at(env.accent, beats) / (env.accent.max() or 1.0)
        scores = np.array([accents[position == p].mean() - accents[position != p].mean() for p in range(per_bar)])
    p = int(np.flatnonzero(scores >= scores.max() - TIE)[0])  # ties: the earliest (clips start on one)
    return _first_bar(float(beats[p]), grid), float(scores[p])


def _first_bar(t: float, grid: Grid) -> float:
    """The bar line through ``t`` that comes first at or after 0 (SLACK early still counts)."""
    bar = grid.bar_seconds
    return round(t - bar * math.floor((t + SLACK) / bar), 4)


def _nearest(lines: list[float], tracked: np.ndarray, grid: Grid) -> tuple[float, ...]:
    """Each line moved to the tracked time within a fifth of a beat of it, if there is one: the
    beats as tracked, at the grid's level (the tracker may have followed eighths or off-beats)."""
    out = []
    for line in lines:
        near = tracked[np.abs(tracked - line) < 0.2 * grid.beat_seconds] if len(tracked) else tracked
        out.append(round(float(near[np.abs(near - line).argmin()] if len(near) else line), 4))
    return tuple(out)


def _offset(grid: Grid, t: float, unit: str) -> float:
    """Seconds from ``t`` to the nearest bar (``unit='bar'``) or beat line of ``grid``."""
    step = grid.bar_seconds if unit == "bar" else grid.beat_seconds
    k = round((t - grid.downbeat) / step)
    return t - (grid.downbeat + k * step)
