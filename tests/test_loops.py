"""Loops (studio.loops): exact lengths, healing that changes only the healed span and leaves the
wrap inside generated audio, generated loops at a BPM, replay of healed loops, file names."""
from __future__ import annotations

import numpy as np
import pytest

from studio import edit, loops, recipe, seams
from studio.api import CROSSFADE_MS, SAMPLE_RATE
from studio.engine import RealEngine
from studio.fake_engine import FakeEngine
from studio.meter import Grid

SR = SAMPLE_RATE
FAKE = dict(model="small-music", prompt="dusty breakbeat", seed=3)


def ramped(bars: int, grid: Grid, loops_in_track: int = 3, seed: int = 0) -> np.ndarray:
    """A track of ``loops_in_track`` loops of noise, each swelling from quiet to three times as loud:
    every loop of it has a loud end running into a quiet start (a wrap you hear)."""
    n = grid.loop_samples(bars)
    swell = np.tile(1 + 2 * np.arange(n) / n, loops_in_track)
    noise = np.random.default_rng(seed).standard_normal((2, n * loops_in_track))
    return (0.05 * noise * swell).astype(np.float32)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Indices of the samples (either channel) where a and b differ bitwise."""
    return np.flatnonzero(np.any(a.view(np.uint32) != b.view(np.uint32), axis=0))


def test_a_healed_loop_differs_only_in_the_span_across_its_wrap():
    grid = Grid(120.0)
    track = ramped(2, grid)
    healed = loops.heal(FakeEngine(), track, grid, 2, first_bar=3, **FAKE)
    start, n = loops.cut(track, grid, 2, 3)
    assert start == edit.to_samples(grid.time(3)) == 4 * SR and n == 4 * SR == healed.loop.shape[1]
    original = track[:, start:start + n]
    after, before = (edit.to_samples(r.end - r.start) for r in healed.take.regions)  # loop start, loop end
    assert healed.take.regions[0].start == 0 and healed.take.regions[1].end == n / SR
    moved = changed(healed.loop, original)
    # every change lies in the healed pieces: the loop's first `after` samples and its last `before`
    assert np.all((moved < after) | (moved >= n - before))
    assert moved.min() == 0 and moved.max() == n - 1  # and the wrap itself was regenerated
    # the healed span is what the one snapping rule makes of the default span (2 beats = 1 s at 120 BPM)
    span = loops.healed_span(grid, n)
    assert (before + after) == edit.to_samples(span.end - span.start) and span == edit.snap_regions([span], n / SR)[0]


def test_the_wrap_lies_inside_generated_audio_not_in_a_crossfade():
    """Around the wrap the healed loop is the model's audio itself: the same as a heal without any
    crossfade (the fake engine's new audio does not depend on the crossfade), as far as the fades reach."""
    grid = Grid(96.0)
    track = ramped(1, grid, loops_in_track=2)
    faded = loops.heal(FakeEngine(), track, grid, 1, **FAKE).loop
    bare = loops.heal(FakeEngine(), track, grid, 1, crossfade_ms=0.0, **FAKE).loop
    fade = edit.to_samples(CROSSFADE_MS / 1000)
    n = faded.shape[1]
    wrap_side = np.r_[n - 4 * fade:n, 0:4 * fade]  # samples either side of the wrap, well inside the span
    assert np.array_equal(faded[:, wrap_side], bare[:, wrap_side])
    assert not np.array_equal(faded, bare)  # the crossfades at the span's borders do differ


def test_the_seam_at_the_wrap_shrinks_when_healed():
    grid = Grid(120.0)
    track = ramped(2, grid)
    healed = loops.heal(FakeEngine(), track, grid, 2, **FAKE)
    before, after = seams.wrap_jump(track[:, :healed.loop.shape[1]]), seams.wrap_jump(healed.loop)
    assert before.spectral > 2.5 and before.loudness_db < -8  # loud end, quiet start: ~ -9.5 dB
    assert after.spectral < 1.5 and abs(after.loudness_db) < 3


def test_in_place_keeps_the_track_and_puts_the_healed_loop_at_its_bars():
    grid = Grid(110.0, 3, 4, downbeat=0.25)
    track = ramped(2, grid, seed=4)
    alone = loops.heal(FakeEngine(), track, grid, 2, first_bar=2, **FAKE)
    placed = loops.heal(FakeEngine(), track, grid, 2, first_bar=2, in_place=True, **FAKE)
    start, n = alone.step["start"], alone.step["samples"]
    assert placed.take.audio.shape == track.shape and np.array_equal(placed.loop, alone.loop)
    assert np.array_equal(placed.take.audio[:, :start], track[:, :start])
    assert np.array_equal(placed.take.audio[:, start + n:], track[:, start + n:])
    assert [r.start - start / SR for r in placed.take.regions] == pytest.approx([r.start for r in alone.take.regions])


def test_a_real_engine_heal_keeps_every_sample_outside_the_span(tiny_checkpoint):
    """The real engine's splice is what guarantees it; proven on the tiny checkpoint."""
    grid = Grid(150.0)
    track = ramped(1, grid, loops_in_track=2, seed=2)
    healed = loops.heal(RealEngine(device="cpu"), track, grid, 1, model=str(tiny_checkpoint), prompt="pads", seed=1)
    n = healed.loop.shape[1]
    after, before = (edit.to_samples(r.end - r.start) for r in healed.take.regions)
    moved = changed(healed.loop, track[:, :n])
    assert np.all((moved < after) | (moved >= n - before)) and moved.min() == 0 and moved.max() == n - 1


@pytest.mark.parametrize("bpm, meter, bars, samples", [
    (120.0, "4/4", 4, 352800),   # 8 s exactly
    (93.0, "3/4", 3, 256065),    # 5.8064516... s: 256064.52 samples, rounded to the nearest
    (140.0, "6/8", 2, 113400),   # six eighths = three quarters a bar
])
def test_a_generated_loop_is_exactly_its_bars_long_at_the_bpm_its_prompt_states(bpm, meter, bars, samples):
    grid = Grid(bpm, *Grid.parse_meter(meter))
    made, healed = loops.generate_loop(FakeEngine(), grid, bars, **FAKE)
    assert grid.loop_samples(bars) == samples == made.audio.shape[1] == healed.loop.shape[1]
    assert made.request.prompt == f"dusty breakbeat, {bpm:g} BPM" == healed.take.request.prompt
    assert changed(healed.loop, made.audio).size > 0 and healed.step["start"] == 0


def test_replay_remakes_a_healed_loop_from_its_file_and_a_generated_one_from_its_chain(tmp_path):
    from studio import audio_io
    grid = Grid(120.0)
    track = ramped(2, grid)
    path = tmp_path / "track.wav"
    audio_io.write_audio(path, track, "wav32f")
    engine = FakeEngine()
    healed = loops.heal(engine, track, grid, 2, first_bar=2, in_place=True, **FAKE)
    side = recipe.to_recipe(healed.take, {"source": path}, loop=healed.step, **engine.made_on("small-music"))
    assert side["source"]["sha256"] == recipe.audio_hash(healed.take.request.source)  # the turned loop
    again = recipe.replay(side, audio_io.read_track, engine.edit)
    assert np.array_equal(again.audio, healed.take.audio)

    made, looped = loops.generate_loop(engine, grid, 1, **FAKE)
    chain = recipe.chained([recipe.to_recipe(made, {}), recipe.to_recipe(looped.take, {"source": None},
                                                                          loop=looped.step)])
    make = lambda req: (engine.edit if hasattr(req, "source") else engine.generate)(req)  # noqa: E731
    assert np.array_equal(recipe.replay(chain, audio_io.read_track, make).audio, looped.loop)
    audio_io.write_audio(path, track * 0.5, "wav32f")
    with pytest.raises(ValueError, match="has changed since the take was made"):
        recipe.replay(side, audio_io.read_track, engine.edit)


def test_loops_that_cannot_be_cut_or_healed_are_one_sentence():
    grid = Grid(120.0)
    track = ramped(1, grid, loops_in_track=2)
    with pytest.raises(ValueError, match=r"4 bars of 4/4 at 120 BPM last 8.00 s, but the track holds 4.00 s from bar"):
        loops.cut(track, grid, 4)
    with pytest.raises(ValueError, match="more than half of this 2.00 s loop"):
        loops.heal(FakeEngine(), track, grid, 1, span_seconds=1.5, **FAKE)
    with pytest.raises(ValueError, match="Bar 0 begins before the track does"):
        loops.cut(track, Grid(120.0, downbeat=1.0), 1, first_bar=0)


@pytest.mark.parametrize("prompt, bpm, bars, tag, name", [
    ("TrackType: Music, VocalType: Instrumental, Lofi house, 120 BPM", 120.0, 4, "t003",
     "lofi-house_120bpm_4bars_t003.wav"),
    ("Café au lait / ../../etc/passwd", 97.5, "9–12", "t1", "cafe-au-lait-etc-passwd_97p5bpm_bars9-12_t1.wav"),
    ("", None, 1, "", "sa3_1bar.wav"),
    ("a " * 200, 90.0, None, "v002", "a" + "-a" * 23 + "_90bpm_v002.wav"),
])
def test_take_names_are_safe_and_say_prompt_tempo_and_bars(prompt, bpm, bars, tag, name):
    got = loops.take_name(prompt, bpm, bars, tag)
    assert got == name and len(got) < 100
