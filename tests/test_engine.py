"""The real engine end to end on a tiny checkpoint in the released layout (random weights)."""

import hashlib
import time

import numpy as np
import pytest

from studio import edit
from studio.api import LATENT_HOP, SAMPLE_RATE, Cancelled, EditRequest, EngineError, GenerateRequest, Region
from studio.engine import RealEngine
from studio.edit import window as plan_window
from tests.conftest import GOLDEN


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    global MODEL
    MODEL = str(tiny_checkpoint)
    e = RealEngine()
    e.prepare(MODEL)
    return e


MODEL = ""  # the tiny checkpoint's folder, set by the engine fixture


def gen(prompt, seconds, **kw):
    return GenerateRequest(model=MODEL, prompt=prompt, seconds=seconds, **kw)


def ed(source, regions, prompt, **kw):
    return EditRequest(model=MODEL, source=source, regions=regions, prompt=prompt, **kw)


@pytest.fixture(scope="module")
def track(engine):
    return engine.generate(gen("warm pads", 2.5, seed=3)).audio


def _outside_equal(take, source):
    n = source.shape[1]
    inside = edit.region_mask(n, take.regions)
    return np.array_equal(take.audio[:, :n][:, ~inside], source[:, ~inside])


def test_generate_length_seed_and_progress(engine):
    seen = []
    take = engine.generate(gen("rain", 1.3, seed=7), progress=lambda *a: seen.append(a))
    assert take.audio.shape == (2, int(1.3 * SAMPLE_RATE)) and take.audio.dtype == np.float32
    again = engine.generate(gen("rain", 1.3, seed=7))
    other = engine.generate(gen("rain", 1.3, seed=8))
    assert np.array_equal(take.audio, again.audio)
    assert not np.array_equal(take.audio, other.audio)
    steps = [s for s in seen if s[0] == "steps"]
    assert steps[-1] == ("steps", 8, 8) and ("decode", 1, 1) in seen


def test_audio_to_audio_strength(engine, track):
    with pytest.raises(ValueError, match="more than 0 and at most 1"):
        gen("warm pads", 2.5, seed=4, init_audio=track, init_strength=0.0)
    slight = engine.generate(gen("warm pads", 2.5, seed=4, init_audio=track, init_strength=0.05))
    varied = engine.generate(gen("warm pads", 2.5, seed=4, init_audio=track, init_strength=0.7))
    plain = engine.generate(gen("warm pads", 2.5, seed=4))
    assert not np.allclose(varied.audio, plain.audio, atol=1e-3)
    assert not np.allclose(varied.audio, slight.audio, atol=1e-3)
    # the lower the strength, the closer to the init's own round trip through the codec
    import torch
    model = engine._loaded[MODEL].model
    latents = model.encode(torch.from_numpy(track)[None])[..., : -(-track.shape[1] // LATENT_HOP)]
    roundtrip = model.decode(latents)[0, :, : track.shape[1]].clamp(-1, 1).numpy()
    assert np.abs(slight.audio - roundtrip).mean() < 0.5 * np.abs(varied.audio - roundtrip).mean()


def test_one_region(engine, track):
    take = engine.edit(ed(track, (Region(0.5, 1.2),), "drums", seed=1))
    assert take.audio.shape == track.shape
    assert _outside_equal(take, track)
    a, b = edit.to_samples(0.6), edit.to_samples(1.1)
    assert not np.allclose(take.audio[:, a:b], track[:, a:b])


def test_two_regions_with_their_own_prompts(engine, track):
    regions = (Region(0.3, 0.8, "bass"), Region(1.5, 2.0))
    take = engine.edit(ed(track, regions, "drums", seed=2))
    assert _outside_equal(take, track) and take.regions == edit.snap_regions(regions, track.shape[1] / SAMPLE_RATE)
    same_prompt = engine.edit(ed(track, (Region(0.3, 0.8), Region(1.5, 2.0)), "drums", seed=2))
    a, b = edit.to_samples(0.4), edit.to_samples(0.7)
    assert not np.allclose(take.audio[:, a:b], same_prompt.audio[:, a:b])


def test_painted_neighbours_are_one_edit_and_change_only_what_snapping_shows(engine, track):
    # issue 9: 0.5-0.6 s and 0.61-0.7 s were refused as overlapping; the end of 0.557-1.672 moved a grid step
    painted = (Region(0.5, 0.6, "bass"), Region(0.61, 0.7), Region(1.3, 1.672))
    take = engine.edit(ed(track, painted, "drums", seed=3))
    shown = edit.snap_regions(painted, track.shape[1] / SAMPLE_RATE)
    assert take.regions == shown and len(shown) == 3 and shown[0].end == shown[1].start
    assert shown[2].end == pytest.approx(18 * LATENT_HOP / SAMPLE_RATE)
    assert _outside_equal(take, track)


def test_continuation(engine, track):
    take = engine.edit(ed(track, (), "drums", seed=5, continue_seconds=1.0))
    n = track.shape[1]
    assert take.audio.shape == (2, n + SAMPLE_RATE)
    assert np.array_equal(take.audio[:, :n], track)
    assert take.regions[-1] == Region(n / SAMPLE_RATE, (n + SAMPLE_RATE) / SAMPLE_RATE)
    assert np.abs(take.audio[:, n:]).max() > 0


def test_source_is_encoded_once(engine, track, monkeypatch):
    engine.edit(ed(track, (Region(0.5, 1.0),), "x", seed=1))
    calls = []
    same = engine._loaded[MODEL].model.same
    original = same.encode
    monkeypatch.setattr(same, "encode", lambda *a, **k: calls.append(1) or original(*a, **k))
    engine.edit(ed(track, (Region(1.0, 1.5),), "y", seed=2))
    assert calls == []


def test_an_edit_encodes_only_its_window_and_encode_ahead_does_the_rest(engine, monkeypatch):
    long = engine.generate(gen("pads", 6.0, seed=9)).audio
    frames = -(-long.shape[1] // LATENT_HOP)
    cold = engine.edit(ed(long, (Region(1.0, 1.5),), "x", seed=1, context_seconds=0.5))
    cached = next(t for k, t in engine._latents.items() if k[2] == long.shape)
    assert 0 < int(cached.known.sum()) < frames / 2  # the window and its margins, not the track
    assert engine.encode_ahead(MODEL, long) and bool(cached.known.all())
    calls = []
    same = engine._loaded[MODEL].model.same
    original = same.encode
    monkeypatch.setattr(same, "encode", lambda *a, **k: calls.append(1) or original(*a, **k))
    warm = engine.edit(ed(long, (Region(1.0, 1.5),), "x", seed=1, context_seconds=0.5))
    assert calls == []  # everything was encoded ahead
    np.testing.assert_allclose(warm.audio, cold.audio, atol=1e-5)  # span encoding == whole-track encoding


def test_encode_ahead_gives_way_to_a_waiting_request(engine, monkeypatch):
    audio = engine.generate(gen("pads", 6.0, seed=11)).audio
    monkeypatch.setattr("studio.engine.ENCODE_PIECE", 4)
    monkeypatch.setattr(engine._jobs, "waiting", lambda: 1)  # someone pressed Generate
    assert engine.encode_ahead(MODEL, audio) is False
    track = next(t for k, t in engine._latents.items() if k[1] == hashlib.sha1(audio.tobytes()).hexdigest())
    assert not bool(track.known.any())


def test_windowed_edit_keeps_everything_outside(engine, track):
    take = engine.edit(ed(track, (Region(1.0, 1.4),), "x", seed=1, context_seconds=0.3))
    assert _outside_equal(take, track)


def test_cancel_from_progress(engine, track):
    def cancel(stage, done, total):
        if stage == "steps" and done == 2:
            raise Cancelled()
    with pytest.raises(Cancelled):
        engine.edit(ed(track, (Region(0.5, 1.0),), "x", seed=1), progress=cancel)


@pytest.mark.parametrize("regions, message", [
    ((Region(2.0, 3.5),), "outside the clip"),
    ((Region(0.5, 1.0), Region(0.8, 1.2)), "overlap"),
    ((Region(1.0, 1.0),), "zero length"),
    ((), "Paint at least one region"),
])
def test_bad_regions(engine, track, regions, message):
    with pytest.raises(ValueError, match=message):
        engine.edit(ed(track, regions, "x", seed=1))


def test_bad_durations_and_audio(engine):
    with pytest.raises(ValueError, match="length must be from"):
        engine.generate(gen("x", 500.0, seed=1))
    with pytest.raises(ValueError, match="source is empty"):
        engine.edit(ed(np.zeros((2, 0), np.float32), (Region(0, 1),), "x", seed=1))
    with pytest.raises(ValueError, match="stereo"):
        engine.edit(ed(np.zeros((1, 100), np.float32), (Region(0, 0.001),), "x", seed=1))


def test_missing_weights_is_one_sentence(tmp_path):
    with pytest.raises(EngineError, match="model.safetensors is missing"):
        (tmp_path / "model_config.json").write_text("{}")
        RealEngine().prepare(str(tmp_path))


def test_plan_window():
    sr, hop = SAMPLE_RATE, LATENT_HOP
    total = 300 * sr  # a 5-minute track, a 4 s fix, a 120 s model
    start, end = plan_window((Region(150.0, 154.0),), total, 114.0, None)
    assert start % hop == 0 and start <= 150 * sr and end >= 154 * sr
    assert 33 * sr < end - start <= 34.2 * sr  # 15 s of context each side: cost follows the edit
    start, end = plan_window((Region(150.0, 154.0),), total, 114.0, 10.0)
    assert 139 * sr < start <= 140 * sr and 164 * sr <= end < 165 * sr
    assert plan_window((Region(1.0, 2.0),), 60 * sr, 114.0, None) == (0, 60 * sr)  # fits: whole track
    start, end = plan_window((Region(1.0, 2.0),), total, 114.0, 10.0)  # context cut at 0 goes right
    assert start == 0 and end >= 20.9 * sr  # 20 s of context in all
    with pytest.raises(ValueError, match="edit them in smaller groups"):
        plan_window((Region(0.0, 10.0), Region(200.0, 210.0)), total, 114.0, None)


def test_from_model_wraps_a_built_model(engine):
    """RealEngine.from_model: an engine over an already-built model gives the same takes."""
    model = engine._loaded[MODEL].model
    wrapped = RealEngine.from_model(model, MODEL)
    assert wrapped.device == str(model.device) and wrapped.dtype == model.dit.dtype
    assert wrapped.prepare(MODEL).name == MODEL  # already loaded: nothing is resolved
    req = gen("rain", 1.0, seed=2)
    assert np.array_equal(wrapped.generate(req).audio, engine.generate(req).audio)


def test_an_over_long_prompt_is_noted_on_the_take(engine, track):
    encoder = engine._loaded[MODEL].model.conditioner.prompt.encoder
    words = " ".join(f"word{i}" for i in range(encoder.max_length + 50))
    take = engine.edit(ed(track, (Region(0.5, 1.0),), words, seed=1))
    assert len(take.notes) == 1 and f"reads only the first {encoder.max_length}" in take.notes[0]
    assert engine.edit(ed(track, (Region(0.5, 1.0),), "short", seed=1)).notes == ()


def test_a_model_switch_frees_the_old_model_before_loading_the_new(tmp_path, tiny_checkpoint, monkeypatch):
    """Peak memory of a switch is one model: the old one is unreachable when the new one is read."""
    import gc
    import shutil
    import weakref
    from models.sa3 import StableAudio3
    other = tmp_path / "other"
    shutil.copytree(tiny_checkpoint, other)
    e = RealEngine()
    e.prepare(str(tiny_checkpoint))
    old = weakref.ref(e._loaded[str(tiny_checkpoint)].model)
    alive_at_load = []
    original = StableAudio3.from_checkpoint.__func__

    def spy(cls, *a, **k):
        gc.collect()
        alive_at_load.append(old() is not None)
        return original(cls, *a, **k)
    monkeypatch.setattr(StableAudio3, "from_checkpoint", classmethod(spy))
    e.prepare(str(other))
    assert alive_at_load == [False] and e.loaded() == [str(other)]


def test_base_models_are_guided_by_the_request(tmp_path, tiny_checkpoint):
    """A -base checkpoint samples with the model's default CFG (7) unless the request says
    otherwise; CFG, APG and the negative prompt each change the take."""
    import shutil
    from studio.api import Guidance
    base = tmp_path / "tiny-base"
    shutil.copytree(tiny_checkpoint, base)
    shutil.copy(GOLDEN / "sa3_small_tiny" / "model_config_base.json", base / "model_config.json")
    e = RealEngine()
    info = e.describe(str(base))
    assert info.guided and info.default_cfg == 7.0 and info.default_steps == 50

    def run(**g):
        req = GenerateRequest(model=str(base), prompt="rain", seconds=1.0, seed=2, steps=4, guidance=Guidance(**g))
        return e.generate(req).audio
    default, explicit = run(), run(cfg_scale=7.0)
    assert np.array_equal(default, explicit)
    others = [run(cfg_scale=3.0), run(apg_scale=0.0), run(negative_prompt="noise"), run(cfg_scale=1.0)]
    for other in others:
        assert not np.allclose(other, default, atol=1e-4)



def test_estimate_says_what_the_model_hears_and_learns_the_cost(tiny_checkpoint):
    e = RealEngine()
    model = str(tiny_checkpoint)
    first = e.estimate(model, 2.5, (Region(0.5, 1.0),))
    assert first.seconds is None and abs(first.heard_seconds - 2.5) < 1e-9  # short tracks: all of it
    narrow = e.estimate(model, 2.5, (Region(1.0, 1.2),), context_seconds=0.2)
    assert narrow.heard_seconds < 1.0
    track = e.generate(GenerateRequest(model=model, prompt="x", seconds=2.5, seed=1)).audio
    t0 = time.perf_counter()
    e.edit(EditRequest(model=model, source=track, regions=(Region(0.5, 1.0),), prompt="y", seed=2))
    took = time.perf_counter() - t0
    guess = e.estimate(model, 2.5, (Region(0.5, 1.0),)).seconds
    assert guess is not None and 0 < guess < 10 * took


def test_each_preview_costs_one_decode_of_the_span_and_none_unless_asked(engine, track, monkeypatch):
    """An 8-step take decodes once; with previews, once more for each of the two earlier
    previews (the last preview is the take itself), each of the same latent frames."""
    model = engine._ensure(MODEL, None).model
    original, frames = model.decode, []
    monkeypatch.setattr(model, "decode", lambda latents, *a, **k: frames.append(latents.shape[-1]) or
                        original(latents, *a, **k))
    req = ed(track, (Region(1.0, 1.5),), "bells", seed=4, steps=8)
    plain = engine.edit(req)
    assert len(frames) == 1
    seen = []
    assert np.array_equal(engine.edit(req, preview=seen.append).audio, plain.audio)
    assert len(frames) == 4 and len(set(frames)) == 1 and len(seen) == 3


def test_previews_of_an_edit_in_two_batches_count_every_step(engine, track):
    """Five prompts run as two batches (MAX_BATCH = 4): previews number the steps of both."""
    regions = tuple(Region(0.2 + 0.4 * k, 0.4 + 0.4 * k, f"sound {k}") for k in range(5))
    seen = []
    take = engine.edit(ed(track, regions, "x", seed=5, steps=4), preview=seen.append)
    assert [(p.step, p.steps) for p in seen] == [(2, 8), (4, 8), (6, 8), (8, 8)]
    a, b = edit.to_samples(take.regions[0].start), edit.to_samples(take.regions[-1].end)
    assert np.array_equal(seen[-1].audio, take.audio[:, a:b])


def test_previews_of_a_base_model_come_from_its_euler_estimate(tmp_path, tiny_checkpoint):
    """-base models sample with Euler and CFG: their previews decode x - t v and end with the take."""
    import shutil
    base = tmp_path / "tiny-base"
    shutil.copytree(tiny_checkpoint, base)
    shutil.copy(GOLDEN / "sa3_small_tiny" / "model_config_base.json", base / "model_config.json")
    e, seen = RealEngine(), []
    req = GenerateRequest(model=str(base), prompt="rain", seconds=1.0, seed=2, steps=6)
    take = e.generate(req, preview=seen.append)
    assert [p.step for p in seen] == [2, 4, 6] and np.array_equal(seen[-1].audio, take.audio)
    assert not np.allclose(seen[0].audio, take.audio, atol=1e-3)
    assert np.array_equal(e.generate(req).audio, take.audio)
