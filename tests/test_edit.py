"""studio.edit: region validation, grid/beat snapping, the equal-power splice, the painter contract."""
from __future__ import annotations

import json

import numpy as np
import pytest

from studio import edit
from studio.api import LATENT_HOP, SAMPLE_RATE, Region

SR = SAMPLE_RATE


def noise(n, seed):
    return np.random.default_rng(seed).standard_normal((2, n)).astype(np.float32)


@pytest.mark.parametrize("regions, message", [
    ([Region(-0.1, 1.0)], "Region 1 (-0.10–1.00 s) lies outside the clip"),
    ([Region(1.0, 2.0), Region(9.0, 10.5)], "Region 2 (9.00–10.50 s) lies outside the clip"),
    ([Region(2.0, 2.0)], "Region 1 has zero length"),
    ([Region(3.0, 2.0)], "Region 1 has zero length"),
    ([Region(5.0, 6.0), Region(1.0, 2.0), Region(5.5, 7.0)], "Regions 1 and 3 overlap"),
    ([Region(float("nan"), 1.0)], "must be numbers"),
])
def test_validate_refuses_with_region_and_value(regions, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        edit.validate_regions(regions, 10.0)


def test_validate_sorts_and_allows_touching_regions():
    out = edit.validate_regions([Region(4.0, 5.0), Region(1.0, 4.0)], 10.0)
    assert out == (Region(1.0, 4.0), Region(4.0, 5.0))


def test_snap_widens_to_the_latent_grid():
    grid = LATENT_HOP / SR
    (r,) = edit.snap_regions([Region(1.0, 2.0)], 10.0)
    assert r.start == pytest.approx(10 * grid) and r.end == pytest.approx(22 * grid)
    assert r.start <= 1.0 and r.end >= 2.0
    assert edit.to_samples(r.start) % LATENT_HOP == 0 and edit.to_samples(r.end) % LATENT_HOP == 0


def test_snap_keeps_the_end_of_the_clip_and_the_region_prompt():
    (r,) = edit.snap_regions([Region(9.5, 10.0, "bells")], 10.0)
    assert r.end == 10.0 and r.prompt == "bells"


def test_snap_to_beats_moves_edges_to_the_nearest_beat_then_the_grid():
    beats = [0.5, 1.0, 1.5, 2.0, 2.5]
    (r,) = edit.snap_regions([Region(0.93, 2.08)], 10.0, beats=beats)
    assert r.start == edit.snap_time(1.0, 10.0) and r.end == edit.snap_time(2.0, 10.0, up=True)


def test_equal_power_gains_keep_power():
    out, into = edit.equal_power(1323)
    np.testing.assert_allclose(out.astype(np.float64) ** 2 + into.astype(np.float64) ** 2, 1.0, atol=1e-6)
    assert out[0] > 0.99 and into[-1] > 0.99 and np.all(np.diff(into) > 0)


def test_splice_is_the_source_outside_regions_sample_for_sample():
    n = 4 * SR
    src, gen = noise(n, 0), noise(n, 1)
    regions = (Region(0.5, 1.0), Region(2.0, 3.25))
    out = edit.splice(src, gen, regions, crossfade_ms=30)
    mask = edit.region_mask(n, regions)
    assert np.array_equal(out[:, ~mask], src[:, ~mask])
    fade = int(round(0.030 * SR))
    a, b = edit.to_samples(2.0), edit.to_samples(3.25)
    assert np.array_equal(out[:, a + fade:b - fade], gen[:, a + fade:b - fade])
    g_out, g_in = edit.equal_power(fade)
    np.testing.assert_allclose(out[:, a:a + fade], src[:, a:a + fade] * g_out + gen[:, a:a + fade] * g_in, atol=1e-6)


def test_splice_crossfade_is_adjustable_and_short_regions_fade_halfway():
    n = SR
    src, gen = np.zeros((2, n), np.float32), np.ones((2, n), np.float32)
    hard = edit.splice(src, gen, (Region(0.1, 0.2),), crossfade_ms=0)
    assert np.array_equal(hard[:, edit.to_samples(0.1):edit.to_samples(0.2)], gen[:, :edit.to_samples(0.1)])
    tiny = edit.splice(src, gen, (Region(0.5, 0.502),), crossfade_ms=200)  # 88 samples, fade 44 each side
    a = edit.to_samples(0.5)
    assert tiny[0, a + 43] == pytest.approx(np.sin((43.5 / 44) * np.pi / 2), abs=1e-6)


def test_splice_appends_the_continuation():
    src, gen = noise(SR, 0), noise(SR + 1000, 1)
    out = edit.splice(src, gen, ())
    assert np.array_equal(out[:, :SR], src) and np.array_equal(out[:, SR:], gen[:, SR:])


def test_splice_refuses_shorter_generation():
    with pytest.raises(ValueError, match="generated"):
        edit.splice(noise(100, 0), noise(99, 1), ())


def test_parse_painter_contract():
    value = json.dumps({"regions": [{"id": "r1", "start": 1, "end": 2.5, "prompt": "  "},
                                    {"id": "r2", "start": "3", "end": 4, "prompt": "choir"}],
                        "continue_seconds": 2.0, "track": None})
    regions, cont = edit.parse_painter(value)
    assert regions == (Region(1.0, 2.5, None), Region(3.0, 4.0, "choir")) and cont == 2.0
    assert edit.parse_painter("") == ((), 0.0)


@pytest.mark.parametrize("value, message", [
    ('{"regions": [{"start": null, "end": 1}]}', "Region 1: start and end must be numbers"),
    ('{"regions": [], "continue_seconds": -1}', "Continue-by must be zero or more"),
    ('[1, 2]', "must be a JSON object"),
])
def test_parse_painter_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        edit.parse_painter(value)
