"""Tempo analysis on tracks built here with known beats: tempo, meter, downbeats, no-beat clips,
the tracker choice (librosa / Beat This!) and the drift of a span's beats from a grid."""
import functools
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from studio import tempo
from studio.api import SAMPLE_RATE as SR
from studio.meter import Grid

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SECONDS = 12.0
BEAT_THIS = tempo._beat_this  # the real selection, before librosa_only replaces it


@pytest.fixture(autouse=True)
def librosa_only(monkeypatch):
    """Every test but the tracker-choice ones runs librosa's tracker, installed Beat This! or not."""
    monkeypatch.setattr(tempo, "_beat_this", lambda mono: None)


def _decay(n: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / SR
    return np.minimum(1.0, t / attack) * np.exp(-t / decay)


def _put(out: np.ndarray, t: float, x: np.ndarray) -> None:
    at = int(round(t * SR))
    if 0 <= at < len(out):
        out[at:at + len(x)] += x[:len(out) - at]


def _beats(bpm: float, downbeat: float, seconds: float = SECONDS):
    """(k, time) of every beat of a track whose beat k=0 is at ``downbeat`` (pickup beats before it)."""
    beat = 60.0 / bpm
    k = -math.floor(downbeat / beat)
    while downbeat + k * beat < seconds:
        yield k, downbeat + k * beat
        k += 1


@functools.lru_cache(maxsize=None)
def clicks(bpm: float, per_bar: int, downbeat: float, skip: tuple = (), extra: tuple = ()) -> np.ndarray:
    """A metronome: a loud high click on each downbeat, softer low ones on the other beats; beats
    numbered in ``skip`` are left out and soft clicks added at the times in ``extra``."""
    rng = np.random.default_rng(0)
    out = np.zeros(int(SECONDS * SR))
    n = int(0.03 * SR)
    t = np.arange(n) / SR
    hits = [(k, at) for k, at in _beats(bpm, downbeat) if k not in skip] + [(1, at) for at in extra]
    for k, at in hits:
        one = k % per_bar == 0
        click = np.sin(2 * np.pi * (1600 if one else 1000) * t) + 0.3 * rng.standard_normal(n)
        _put(out, at, (1.0 if one else 0.35) * click * _decay(n, 0.0005, 0.006))
    return np.stack([out, out]).astype(np.float32) * 0.5


@functools.lru_cache(maxsize=None)
def drums(bpm: float, per_bar: int, downbeat: float, swing: bool = False, seconds: float = SECONDS) -> np.ndarray:
    """Kick on 1, snare on the backbeats (2 and 4; 2 and 3 in 3/4; 4 of six eighths in 6/8, where
    ``bpm`` counts eighths), hats on every eighth (swung: the off-beat hat a third of a beat late)."""
    rng = np.random.default_rng(1)
    out = np.zeros(int(seconds * SR))
    kn, sn, hn = int(0.3 * SR), int(0.2 * SR), int(0.05 * SR)
    t = np.arange(kn) / SR
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-t * 30)) * t) * _decay(kn, 0.002, 0.1)
    backbeats = {4: (1, 3), 3: (1, 2), 6: (3,)}[per_bar]
    hats = (0.0,) if per_bar == 6 else (0.0, 2 / 3 if swing else 0.5)
    for k, at in _beats(bpm, downbeat, seconds):
        if k % per_bar == 0:
            _put(out, at, 0.9 * kick)
        elif k % per_bar in backbeats:
            tone = 0.6 * np.sin(2 * np.pi * 190 * np.arange(sn) / SR) * _decay(sn, 0.001, 0.04)
            _put(out, at, 0.45 * (rng.standard_normal(sn) * _decay(sn, 0.001, 0.05) + tone))
        for off in hats:
            _put(out, at + off * 60.0 / bpm, 0.15 * np.diff(rng.standard_normal(hn + 1)) * _decay(hn, 0.0005, 0.012))
    return np.stack([out, out]).astype(np.float32) * 0.8


@functools.lru_cache(maxsize=None)
def pad(seed: int = 0) -> np.ndarray:
    """Slow sine chords, each swelling in and out over 4.5 s: no beat."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SECONDS * SR)) / SR
    out = np.zeros_like(t)
    for i, chord in enumerate([(57, 60, 64), (53, 57, 60), (60, 64, 67), (55, 59, 62), (57, 60, 64)]):
        swell = np.sin(np.pi * np.clip((t - 3.0 * i + 1.5) / 4.5, 0, 1)) ** 2
        for note in chord:
            out += 0.05 * swell * np.sin(2 * np.pi * 440 * 2 ** ((note - 69) / 12) * t + rng.uniform(0, 6.3))
    return np.stack([out, out]).astype(np.float32)


def _load(name: str) -> np.ndarray:
    audio, sr = sf.read(ASSETS / name, dtype="float32", always_2d=True)
    assert sr == SR
    return np.ascontiguousarray(audio.T)


def _assert_grid(found: tempo.Tempo, bpm: float, meter: str, downbeat: float, seconds: float = SECONDS):
    """Tempo within 1 %, the meter, and every bar line of the clip (so the first downbeat too)
    within 30 ms of the true one; the downbeats the tracker reports lie on true bar lines."""
    grid = found.grid
    assert grid is not None, found.reason
    assert grid.bpm == pytest.approx(bpm, rel=0.01)
    assert grid.meter == meter
    truth = Grid(bpm, grid.beats_per_bar, grid.beat_unit, downbeat)
    bars = truth.lines(seconds - 0.1, "bar")
    assert grid.downbeat == pytest.approx(bars[0], abs=0.03)
    assert all(abs(tempo._offset(grid, t, "bar")) < 0.03 for t in bars)
    assert found.downbeats and all(abs(tempo._offset(truth, t, "bar")) < 0.03 for t in found.downbeats)
    assert found.tracker == "librosa" and found.confidence >= tempo.MIN_CONFIDENCE


@pytest.mark.parametrize("make, bpm, meter, downbeat", [
    (lambda: clicks(70, 4, 0.4), 70, "4/4", 0.4),
    (lambda: clicks(120, 4, 0.0), 120, "4/4", 0.0),
    (lambda: clicks(170, 3, 0.3), 170, "3/4", 0.3),
    (lambda: clicks(100, 3, 1.1), 100, "3/4", 1.1),            # two pickup beats before bar 1
    (lambda: drums(70, 4, 0.5), 70, "4/4", 0.5),                # hats at 140/min: not double time
    (lambda: drums(120, 4, 1.5), 120, "4/4", 1.5),              # a three-beat pickup
    (lambda: drums(170, 4, 0.7), 170, "4/4", 0.7),              # kick and snare alternate: not half time
    (lambda: drums(100, 4, 0.2, swing=True), 100, "4/4", 0.2),
    (lambda: drums(90, 3, 0.2), 90, "3/4", 0.2),
    (lambda: drums(160, 3, 0.9, swing=True), 160, "3/4", 0.9),
], ids=["clicks70", "clicks120", "clicks170-3/4", "clicks100-3/4", "drums70", "drums120", "drums170",
        "drums100-swung", "drums90-3/4", "drums160-3/4-swung"])
def test_tempo_meter_and_downbeats_of_synthetic_tracks(make, bpm, meter, downbeat):
    _assert_grid(tempo.detect(make()), bpm, meter, downbeat)


def test_six_eight_is_read_from_its_eighths_and_bpm_counts_quarters():
    found = tempo.detect(drums(180, 6, 0.3))  # 180 eighths a minute: a 6/8 bar is 2 s
    _assert_grid(found, 90, "6/8", 0.3)


def test_a_forced_meter_sets_the_bars_and_the_beat_it_counts():
    found = tempo.detect(drums(240, 6, 0.2), meter="6/8")  # eighths too fast to track: followed in pairs
    _assert_grid(found, 120, "6/8", 0.2)
    four = tempo.detect(drums(90, 3, 0.2), meter="4/4").grid  # the musician's word beats the accents
    assert (four.meter, four.bpm) == ("4/4", pytest.approx(90, rel=0.01))
    with pytest.raises(ValueError, match="meter must be written"):
        tempo.detect(drums(90, 3, 0.2), meter="waltz")


def test_missed_and_extra_beats_do_not_move_the_tempo():
    beat = 60 / 100
    found = tempo.detect(clicks(100, 4, 0.25, skip=(5, 13), extra=(0.25 + 8.4 * beat,)))
    _assert_grid(found, 100, "4/4", 0.25)


def test_the_demo_clips_have_the_tempo_in_their_names():
    _assert_grid(tempo.detect(_load("drums-96bpm.wav")), 96, "4/4", 0.0, seconds=10.0)
    arp = tempo.detect(_load("arp-120bpm.wav"))  # even sixteenths: no accents, librosa alone says 96
    assert arp.grid.bpm == pytest.approx(120, rel=0.01) and arp.grid.downbeat == pytest.approx(0, abs=0.03)
    pads = tempo.detect(_load("pads-am.wav"))
    assert pads.grid is None and pads.reason == tempo.NO_BEAT


def noise() -> np.ndarray:
    return (0.1 * np.random.default_rng(5).standard_normal((2, int(SECONDS * SR)))).astype(np.float32)


def tone() -> np.ndarray:
    """A steady 220 Hz sine: its onset envelope is rounding noise, which the tracker once read as 112 BPM."""
    return np.tile(0.3 * np.sin(2 * np.pi * 220 * np.arange(int(SECONDS * SR)) / SR), (2, 1)).astype(np.float32)


@pytest.mark.parametrize("make", [pad, lambda: pad(3), noise, tone], ids=["pad", "another-pad", "noise", "tone"])
def test_a_clip_without_a_beat_is_said_to_have_none(make):
    found = tempo.detect(make())
    assert found.grid is None and found.beats == () and found.downbeats == ()
    assert found.reason == tempo.NO_BEAT and found.confidence < tempo.MIN_CONFIDENCE


def test_short_silent_and_misshapen_clips_get_one_sentence():
    assert "too short" in tempo.detect(drums(120, 4, 0.0)[:, :3 * SR]).reason
    assert "silent" in tempo.detect(np.zeros((2, 6 * SR), np.float32)).reason
    with pytest.raises(ValueError, match="stereo"):
        tempo.detect(np.zeros(6 * SR, np.float32))


def _fake_beat_this(monkeypatch, audio2beats) -> None:
    """Install a stand-in ``beat_this.inference`` module whose Audio2Beats is ``audio2beats``."""
    package, inference = types.ModuleType("beat_this"), types.ModuleType("beat_this.inference")
    inference.Audio2Beats = audio2beats
    monkeypatch.setitem(sys.modules, "beat_this", package)
    monkeypatch.setitem(sys.modules, "beat_this.inference", inference)


@pytest.fixture
def beat_this_path(monkeypatch):
    """Undo librosa_only: the real selection, with the model cache cleared before and after."""
    monkeypatch.setattr(tempo, "_beat_this", BEAT_THIS)
    tempo._beat_this_model.cache_clear()
    yield monkeypatch
    tempo._beat_this_model.cache_clear()


def test_without_beat_this_librosa_tracks_and_is_named(beat_this_path):
    beat_this_path.setitem(sys.modules, "beat_this", None)  # import fails as if not installed
    beat_this_path.setitem(sys.modules, "beat_this.inference", None)
    found = tempo.detect(clicks(120, 4, 0.0))
    assert found.tracker == "librosa" and "librosa" in found.reason


def test_beat_this_when_installed_gives_the_beats_and_its_downbeats(beat_this_path):
    beat = 60 / 100
    truth = [t for _, t in _beats(100, 0.3)]

    class Audio2Beats:  # says bars of 3 starting on the second click: unlike the clicks' accents (4/4 at 0.3)
        def __init__(self, checkpoint_path, device, dbn):
            assert (checkpoint_path, device, dbn) == ("final0", "cpu", False)

        def __call__(self, signal, sr):
            assert sr == tempo.TRACKER_SR and signal.ndim == 1
            return np.array(truth), np.array(truth[1::3])

    _fake_beat_this(beat_this_path, Audio2Beats)
    found = tempo.detect(clicks(100, 4, 0.3))
    assert found.tracker == "beat_this" and "Beat This!" in found.reason
    assert found.grid.meter == "3/4" and found.grid.bpm == pytest.approx(100, rel=0.01)
    assert found.grid.downbeat == pytest.approx(0.3 + beat, abs=0.03)  # its first downbeat, not the accent


def test_beat_this_that_cannot_load_its_model_falls_back_to_librosa(beat_this_path):
    class Audio2Beats:
        def __init__(self, **kwargs):
            raise OSError("no network to download final0")

    _fake_beat_this(beat_this_path, Audio2Beats)
    assert tempo.detect(clicks(120, 4, 0.0)).tracker == "librosa"


def _take(shift: float = 0.0, bpm: float = 120.0, start: float = 4.0, end: float = 10.0) -> np.ndarray:
    """drums at 120 BPM whose [start, end] s is replaced by drums ``shift`` s late, or at ``bpm``."""
    base = drums(120, 4, 0.0, seconds=16.0)
    other = drums(bpm, 4, start + shift if bpm != 120 else shift, seconds=16.0)
    take = base.copy()
    take[:, int(start * SR):int(end * SR)] = other[:, int(start * SR):int(end * SR)]
    return take


def test_drift_measures_a_known_offset_of_a_takes_beats():
    grid = Grid(120, 4, 4, 0.0)
    on_grid = tempo.drift_ms(_take(), grid, 4.0, 10.0)
    late = tempo.drift_ms(_take(0.040), grid, 4.0, 10.0)
    assert on_grid.median_ms < 2 and on_grid.max_ms < 3      # attacks are read to about a millisecond
    assert late.median_ms == pytest.approx(40, abs=2) and late.max_ms < 43
    assert len(late.beats) >= 10 and all(4.0 <= t <= 10.0 for t in late.beats)


def test_drift_grows_along_a_take_at_another_tempo():
    found = tempo.drift_ms(_take(bpm=126), Grid(120, 4, 4, 0.0), 4.0, 10.0)
    offsets = [abs(tempo._offset(Grid(120), t, "beat")) for t in found.beats[:6]]
    assert offsets == sorted(offsets)       # 24 ms more behind at each beat (until half a beat)
    assert found.max_ms > 100 and found.median_ms > 50


def test_drift_of_a_span_too_short_to_measure_is_nan():
    found = tempo.drift_ms(_take(), Grid(120, 4, 4, 0.0), 4.0, 4.3)
    assert math.isnan(found.median_ms) and math.isnan(found.max_ms)
