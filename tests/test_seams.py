"""Loudness matching at the seams (studio.edit.match_loudness) through the engines' assembly."""
from __future__ import annotations

import numpy as np

from studio import edit
from studio.api import SAMPLE_RATE, EditRequest, Region
from studio.fake_engine import FakeEngine

SR = SAMPLE_RATE


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_each_region_takes_the_loudness_of_its_surroundings():
    rng = np.random.default_rng(0)
    source = np.concatenate([0.05 * rng.standard_normal((2, 5 * SR)), 0.4 * rng.standard_normal((2, 5 * SR))],
                            axis=1).astype(np.float32)
    generated = (0.15 * rng.standard_normal((2, 10 * SR))).astype(np.float32)
    quiet, loud = Region(2.0, 3.0), Region(7.0, 8.0)  # each with 2 s of its own level either side
    out = edit.match_loudness(source, generated, (quiet, loud))
    for r, level in ((quiet, 0.05), (loud, 0.4)):  # within ±12 dB of 0.15
        a, b = edit.to_samples(r.start), edit.to_samples(r.end)
        assert abs(_rms(out[:, a:b]) / level - 1) < 0.05
    outside = ~edit.region_mask(10 * SR, (quiet, loud))
    assert np.array_equal(out[:, outside], generated[:, outside])


def test_gain_is_bounded_and_silence_is_left_alone():
    source = np.full((2, 3 * SR), 0.5, np.float32)
    generated = np.full((2, 3 * SR), 0.001, np.float32)
    out = edit.match_loudness(source, generated, (Region(1.0, 2.0),))
    assert np.isclose(out[0, SR + 10], 0.001 * 10 ** (edit.MAX_GAIN_DB / 20), rtol=1e-5)
    silent = edit.match_loudness(np.zeros_like(source), generated, (Region(1.0, 2.0),))
    assert np.array_equal(silent, generated)


def test_the_engine_matches_only_when_asked_and_keeps_the_outside_exact():
    src = (0.02 * np.random.default_rng(1).standard_normal((2, 3 * SR))).astype(np.float32)
    req = dict(model="small-music", source=src, regions=(Region(1.0, 2.0),), prompt="x", seed=3, crossfade_ms=0.0)
    plain = FakeEngine().edit(EditRequest(**req)).audio
    take = FakeEngine().edit(EditRequest(**req, match_loudness=True))
    matched = take.audio
    inside = edit.region_mask(3 * SR, take.regions)
    assert _rms(plain[:, inside]) > 2 * _rms(src)  # the fake's region is far louder than its surroundings
    assert abs(_rms(matched[:, inside]) / _rms(src[:, ~inside]) - 1) < 0.1
    assert np.array_equal(matched[:, ~inside], src[:, ~inside])
