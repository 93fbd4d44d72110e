"""The real engine end to end on a tiny checkpoint in the released layout (random weights)."""

import numpy as np
import pytest

from studio import edit
from studio.api import LATENT_HOP, SAMPLE_RATE, Cancelled, EditRequest, EngineError, GenerateRequest, Region
from studio.engine import RealEngine, plan_window


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    e = RealEngine()
    e.load(str(tiny_checkpoint))
    return e


@pytest.fixture(scope="module")
def track(engine):
    return engine.generate(GenerateRequest("warm pads", 2.5, seed=3)).audio


def _outside_equal(take, source):
    n = source.shape[1]
    inside = edit.region_mask(n, take.regions)
    return np.array_equal(take.audio[:, :n][:, ~inside], source[:, ~inside])


def test_generate_length_seed_and_progress(engine):
    seen = []
    take = engine.generate(GenerateRequest("rain", 1.3, seed=7), progress=lambda *a: seen.append(a))
    assert take.audio.shape == (2, int(1.3 * SAMPLE_RATE)) and take.audio.dtype == np.float32
    again = engine.generate(GenerateRequest("rain", 1.3, seed=7))
    other = engine.generate(GenerateRequest("rain", 1.3, seed=8))
    assert np.array_equal(take.audio, again.audio)
    assert not np.array_equal(take.audio, other.audio)
    steps = [s for s in seen if s[0] == "steps"]
    assert steps[-1] == ("steps", 8, 8) and ("decode", 1, 1) in seen


def test_audio_to_audio_strength(engine, track):
    import torch
    model = engine._loaded.model
    kept = engine.generate(GenerateRequest("warm pads", 2.5, seed=4, init_audio=track, init_strength=0.0))
    latents = model.encode(torch.from_numpy(track)[None])[..., : -(-track.shape[1] // LATENT_HOP)]
    roundtrip = model.decode(latents)[0, :, : track.shape[1]].clamp(-1, 1).numpy()
    np.testing.assert_allclose(kept.audio, roundtrip, atol=1e-5)  # strength 0: the init itself
    varied = engine.generate(GenerateRequest("warm pads", 2.5, seed=4, init_audio=track, init_strength=0.7))
    plain = engine.generate(GenerateRequest("warm pads", 2.5, seed=4))
    assert not np.allclose(varied.audio, plain.audio, atol=1e-3)
    assert not np.allclose(varied.audio, kept.audio, atol=1e-3)


def test_one_region(engine, track):
    take = engine.edit(EditRequest(track, (Region(0.5, 1.2),), "drums", seed=1))
    assert take.audio.shape == track.shape
    assert _outside_equal(take, track)
    a, b = edit.to_samples(0.6), edit.to_samples(1.1)
    assert not np.allclose(take.audio[:, a:b], track[:, a:b])


def test_two_regions_with_their_own_prompts(engine, track):
    regions = (Region(0.3, 0.8, "bass"), Region(1.5, 2.0))
    take = engine.edit(EditRequest(track, regions, "drums", seed=2))
    assert _outside_equal(take, track) and take.regions == edit.snap_regions(regions, track.shape[1] / SAMPLE_RATE)
    same_prompt = engine.edit(EditRequest(track, (Region(0.3, 0.8), Region(1.5, 2.0)), "drums", seed=2))
    a, b = edit.to_samples(0.4), edit.to_samples(0.7)
    assert not np.allclose(take.audio[:, a:b], same_prompt.audio[:, a:b])


def test_painted_neighbours_are_one_edit_and_change_only_what_snapping_shows(engine, track):
    # issue 9: 0.5-0.6 s and 0.61-0.7 s were refused as overlapping; the end of 0.557-1.672 moved a grid step
    painted = (Region(0.5, 0.6, "bass"), Region(0.61, 0.7), Region(1.3, 1.672))
    take = engine.edit(EditRequest(source=track, regions=painted, prompt="drums", seed=3))
    shown = edit.snap_regions(painted, track.shape[1] / SAMPLE_RATE)
    assert take.regions == shown and len(shown) == 3 and shown[0].end == shown[1].start
    assert shown[2].end == pytest.approx(18 * LATENT_HOP / SAMPLE_RATE)
    assert _outside_equal(take, track)


def test_continuation(engine, track):
    take = engine.edit(EditRequest(track, (), "drums", seed=5, continue_seconds=1.0))
    n = track.shape[1]
    assert take.audio.shape == (2, n + SAMPLE_RATE)
    assert np.array_equal(take.audio[:, :n], track)
    assert take.regions[-1] == Region(n / SAMPLE_RATE, (n + SAMPLE_RATE) / SAMPLE_RATE)
    assert np.abs(take.audio[:, n:]).max() > 0


def test_source_is_encoded_once(engine, track, monkeypatch):
    engine.edit(EditRequest(track, (Region(0.5, 1.0),), "x", seed=1))
    calls = []
    original = engine._loaded.model.encode
    monkeypatch.setattr(engine._loaded.model, "encode", lambda *a, **k: calls.append(1) or original(*a, **k))
    engine.edit(EditRequest(track, (Region(1.0, 1.5),), "y", seed=2))
    assert calls == []


def test_windowed_edit_keeps_everything_outside(engine, track):
    take = engine.edit(EditRequest(track, (Region(1.0, 1.4),), "x", seed=1, context_seconds=0.3))
    assert _outside_equal(take, track)


def test_cancel_from_progress(engine, track):
    def cancel(stage, done, total):
        if stage == "steps" and done == 2:
            raise Cancelled()
    with pytest.raises(Cancelled):
        engine.edit(EditRequest(track, (Region(0.5, 1.0),), "x", seed=1), progress=cancel)


@pytest.mark.parametrize("regions, message", [
    ((Region(2.0, 3.5),), "outside the clip"),
    ((Region(0.5, 1.0), Region(0.8, 1.2)), "overlap"),
    ((Region(1.0, 1.0),), "zero length"),
    ((), "Paint at least one region"),
])
def test_bad_regions(engine, track, regions, message):
    with pytest.raises(ValueError, match=message):
        engine.edit(EditRequest(track, regions, "x", seed=1))


def test_bad_durations_and_audio(engine):
    with pytest.raises(ValueError, match="seconds must be in"):
        engine.generate(GenerateRequest("x", 500.0, seed=1))
    with pytest.raises(ValueError, match="source is empty"):
        engine.edit(EditRequest(np.zeros((2, 0), np.float32), (Region(0, 1),), "x", seed=1))
    with pytest.raises(ValueError, match="stereo"):
        engine.edit(EditRequest(np.zeros((1, 100), np.float32), (Region(0, 0.001),), "x", seed=1))


def test_missing_weights_is_one_sentence(tmp_path):
    with pytest.raises(EngineError, match="model.safetensors is missing"):
        (tmp_path / "model_config.json").write_text("{}")
        RealEngine().load(str(tmp_path))


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
    model = engine._loaded.model
    wrapped = RealEngine.from_model(model, "small-music")
    assert wrapped.device == str(model.device) and wrapped.dtype == model.dit.dtype
    assert wrapped.load("small-music").name == "small-music"  # already loaded: nothing is resolved
    req = GenerateRequest("rain", 1.0, seed=2)
    assert np.array_equal(wrapped.generate(req).audio, engine.generate(req).audio)
