"""The seam audition (studio.seams): the borders of a take, the loop's bounds, and loops cut
sample for sample from the current version (A) and the take (B), read back from a session."""
from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest

from studio import edit, seams, session
from studio.api import SAMPLE_RATE, EditRequest, Region
from studio.fake_engine import FakeEngine

SR = SAMPLE_RATE


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((2, edit.to_samples(seconds)))).astype(np.float32)


def test_each_region_gives_its_start_and_end_in_order():
    found = seams.borders((Region(1.0, 2.0), Region(4.0, 5.5)), frames=10 * SR)
    assert [(b.label, b.sample) for b in found] == [
        ("Region 1 start", SR), ("Region 1 end", 2 * SR), ("Region 2 start", 4 * SR), ("Region 2 end", 5.5 * SR)]
    assert found[3].choice() == "Region 2 end · 5.50 s"


def test_touching_regions_share_one_border_and_joins_are_named():
    intro, n, cont = SR, 6 * SR, 2 * SR  # a 1 s intro, a 6 s track, 2 s continued
    spans = (Region(0.0, 1.0), Region(2.0, 3.0), Region(3.0, 4.0), Region(7.0, 9.0))
    found = seams.borders(spans, frames=intro + n + cont, intro=intro, continued=cont)
    assert [(b.label, b.sample) for b in found] == [
        ("Intro joins the track", SR), ("Region 1 start", 2 * SR), ("Region 1 end / Region 2 start", 3 * SR),
        ("Region 2 end", 4 * SR), ("Continuation joins the track", 7 * SR)]


def test_the_loop_is_clamped_to_the_take_at_both_ends():
    frames = 10 * SR
    assert seams.loop_span(5 * SR, frames) == (3 * SR, 7 * SR)
    assert seams.loop_span(SR // 2, frames) == (0, SR // 2 + 2 * SR)  # the clip's start
    assert seams.loop_span(frames, frames, pre=1.5) == (frames - edit.to_samples(1.5), frames)  # its end
    assert seams.loop_span(5 * SR, frames, pre=0.25, post=0.0) == (5 * SR - edit.to_samples(0.25), 5 * SR)


@pytest.mark.parametrize("border, pre, post, words", [
    (11 * SR, 2.0, 2.0, "outside the take"), (-1, 2.0, 2.0, "outside the take"),
    (5 * SR, float("nan"), 2.0, "pre-roll"), (5 * SR, 2.0, 9.0, "after the border"),
    (5 * SR, 0.0, 0.0, "empty"), (10 * SR, 0.0, 2.0, "empty")])
def test_a_border_or_loop_it_cannot_play_is_one_sentence(border, pre, post, words):
    with pytest.raises(ValueError, match=words):
        seams.loop_span(border, 10 * SR, pre, post)


def test_cut_pads_with_silence_where_the_audio_has_none():
    audio = np.arange(20, dtype=np.float32).reshape(2, 10)
    out = seams.cut(audio, 0, 16, at=4)  # audio begins at 4 (after an intro), ends at 14
    assert np.array_equal(out[:, 4:14], audio) and not out[:, :4].any() and not out[:, 14:].any()
    assert np.array_equal(seams.cut(audio, 6, 9, at=4), audio[:, 2:5])


def _session_with_take(tmp_path, **edit_args):
    source = _noise(8.0)
    s = session.set_source(session.create(tmp_path), source, "source: noise")
    take = FakeEngine().edit(EditRequest(model="small-music", source=source, prompt="x", seed=1, **edit_args))
    settings = {"continue_seconds": edit_args.get("continue_seconds", 0.0)}
    s, rec = session.add_take(s, take, "x", settings)
    return s, rec, source, take.audio


def test_the_loops_are_the_current_and_the_take_sample_for_sample(tmp_path):
    s, rec, source, take = _session_with_take(tmp_path, regions=(Region(2.0, 3.0),), continue_seconds=2.0)
    found = seams.take_borders(s, rec.id)
    assert [b.label for b in found] == ["Region 1 start", "Region 1 end", "Continuation joins the track"]
    for b in found:
        heard = seams.audition(s, rec.id, b.sample, pre=1.0, post=1.5)
        assert (heard.start, heard.end) == seams.loop_span(b.sample, take.shape[1], 1.0, 1.5)
        assert np.array_equal(heard.b, take[:, heard.start:heard.end])
        assert np.array_equal(heard.a, seams.cut(source, heard.start, heard.end))
    end = seams.audition(s, rec.id, found[2].sample, pre=1.0, post=1.5)  # A is silent after the track's end
    assert not end.a[:, SR:].any() and end.b[:, SR:].any()
    start = seams.audition(s, rec.id, found[0].sample, pre=1.0, post=0.5)  # outside the region A == B
    assert np.array_equal(start.a[:, :SR], start.b[:, :SR]) and not np.array_equal(start.a, start.b)


def test_after_an_intro_a_is_the_current_version_shifted_to_the_take(tmp_path):
    s, rec, source, take = _session_with_take(tmp_path, regions=(Region(5.0, 6.0),), extend_start_seconds=1.5)
    join, region_start = seams.take_borders(s, rec.id)[:2]
    assert (join.label, join.sample) == ("Intro joins the track", edit.to_samples(1.5))
    assert region_start.sample == edit.to_samples(edit.snap_edge(5.0, 8.0, up=False) + 1.5)  # on the take's axis
    heard = seams.audition(s, rec.id, join.sample)  # 2 s of pre-roll clamped to the 1.5 s intro
    assert (heard.start, heard.end) == (0, join.sample + 2 * SR)
    assert np.array_equal(heard.b, take[:, :heard.end])
    k = join.sample
    assert not heard.a[:, :k].any() and heard.b[:, :k].any()  # nothing of the current version before the join
    assert np.array_equal(heard.a[:, k:], source[:, :2 * SR])
    assert np.array_equal(heard.a[:, k:], heard.b[:, k:])  # the track after the intro is exact


def test_a_take_stored_without_its_length_is_measured_from_its_file(tmp_path):
    s, rec, source, take = _session_with_take(tmp_path, regions=(Region(2.0, 3.0),))
    whole = session.track_file(s, rec.id).relative_to(s.folder).as_posix()  # as takes were first stored
    old = replace(s, takes=(replace(rec, frames=0, spans=None, file=whole),))
    assert seams.take_borders(old, rec.id) == seams.take_borders(s, rec.id)
    end = seams.take_borders(old, rec.id)[-1].sample
    heard = seams.audition(old, rec.id, end, post=8.0)
    assert heard.end == take.shape[1] and np.array_equal(heard.b, take[:, heard.start:])


def test_the_studio_answers_every_pick_with_loops_or_one_sentence(tmp_path):
    pytest.importorskip("gradio")
    import soundfile as sf

    from studio.ui import StudioConfig, _Handlers
    engine = FakeEngine()
    h = _Handlers(engine, StudioConfig(sessions=tmp_path, default_model="small-music"),
                  {m.name: m for m in engine.models()})
    for out in (h.seam_borders(None, None), h.seam_loop(None, None, None, 2.0, 2.0)):
        assert out[-3:-1] == (None, None) and "Make a take first" in out[-1]["value"]
    s, rec, source, take = _session_with_take(tmp_path, regions=(Region(2.0, 3.0),))
    assert "Pick a take" in h.seam_borders(s.id, None)[-1]["value"]
    pick, *_, note = h.seam_borders(s.id, rec.id)
    assert [value for _, value in pick["choices"]] == [b.sample for b in seams.take_borders(s, rec.id)]
    assert note["value"] == "2 borders in take 1: pick one to loop it."
    for border, words in ((None, "Pick a border"), (take.shape[1] + 1, "outside the take")):
        assert h.seam_loop(s.id, rec.id, border, 2.0, 2.0)[:2] == (None, None)
        assert words in h.seam_loop(s.id, rec.id, border, 2.0, 2.0)[2]["value"]
    assert "no take 't009'" in h.seam_loop(s.id, "t009", SR, 2.0, 2.0)[2]["value"]
    a, b, note = h.seam_loop(s.id, rec.id, pick["choices"][1][1], 0.5, 1.0)
    start, end = seams.loop_span(pick["choices"][1][1], take.shape[1], 0.5, 1.0)
    assert np.array_equal(sf.read(io.BytesIO(b), dtype="float32")[0].T, take[:, start:end])
    assert np.array_equal(sf.read(io.BytesIO(a), dtype="float32")[0].T, source[:, start:end])
    assert note["value"].startswith(f"Looping {start / SR:.2f}–{end / SR:.2f} s of take 1:")
    session.set_source(s, _noise(8.0, seed=2), "source: other")  # A is now not the take's own source
    note = h.seam_loop(s.id, rec.id, pick["choices"][1][1], 0.5, 1.0)[2]["value"]
    assert "A is the current version, not the one" in note
