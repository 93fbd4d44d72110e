"""studio.painter: the component's typed value (the JSON contract of studio/painter/README.md)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from studio import edit, painter
from studio.api import MAX_REGIONS, Region


def test_read_gives_typed_regions_in_the_painters_order():
    value = json.dumps({"regions": [{"id": "r2", "start": 3, "end": "4", "prompt": "choir"},
                                    {"id": "r1", "start": 1, "end": 2.5, "prompt": "  "}],
                        "continue_seconds": 2.0, "extend_start_seconds": 1.25, "track": None, "snap": "bar",
                        "grid": {"bpm": 120, "downbeat": 0.25}, "lines": {"bar": [0.25]}})
    got = painter.read(value)
    assert got.regions == (Region(3.0, 4.0, "choir"), Region(1.0, 2.5, None)) and got.continue_seconds == 2.0
    assert got.snap == "bar" and got.downbeat == 0.25
    assert painter.read({"snap": "bogus", "grid": {"downbeat": "x"}}).snap == "grid"
    assert painter.read({"grid": {"downbeat": "x"}}).downbeat is None and painter.read({}).downbeat is None
    assert got.extend_start_seconds == 1.25 and painter.read({"regions": []}).extend_start_seconds == 0.0
    assert got.error is None and got.kept == {k: json.loads(value)[k] for k in painter.KEPT}
    assert painter.read("") == painter.read(None) == painter.Painted()


@pytest.mark.parametrize("value, message", [
    ("", None),
    ("{", painter.UNREADABLE),                       # was "Expecting value: line 1 column 1"
    ("[1, 2]", painter.UNREADABLE),
    ('{"regions": {"start": 1}}', painter.UNREADABLE),
    ('{"regions": [{"start": null, "end": 1}]}', "Region 1: start and end must be numbers"),
    ('{"regions": [7]}', "Region 1: start and end must be numbers"),
    ('{"regions": [], "continue_seconds": -1}', "Continue-by must be zero or more"),
    ('{"regions": [], "continue_seconds": "soon"}', "Continue-by must be zero or more"),
    ('{"regions": [], "extend_start_seconds": -0.5}', "Extend-start-by must be zero or more"),
    ('{"regions": [], "extend_start_seconds": "NaN"}', "Extend-start-by must be zero or more"),
    ('{"regions": [], "extend_start_seconds": 30.5}', "Extend-start-by is at most 30 s, got 30.5 s"),
])
def test_read_turns_bad_values_into_one_sentence(value, message):
    got = painter.read(value)
    assert got.error is None if message is None else got.error.startswith(message)
    assert got.regions == ()


def test_a_bad_region_keeps_what_the_musician_painted():
    value = {"regions": [{"id": "r1", "start": "x", "end": 1}], "continue_seconds": 1}
    assert painter.read(value).kept["regions"] == value["regions"]


def test_component_props_come_from_python_and_values_round_trip():
    comp = painter.Painter()
    assert comp.props["grid"] == edit.GRID_SECONDS and comp.props["snap_tolerance"] == edit.SNAP_TOLERANCE
    assert comp.props["max_continue"] == edit.MAX_CONTINUE_SECONDS
    assert comp.props["max_intro"] == edit.MAX_INTRO_SECONDS
    assert ".sa3p" in comp.css_template and "PAINTER_CSS" not in comp.js_on_load
    contract = {"track": None, "regions": [{"id": "r1", "start": 1.0, "end": 2.0, "prompt": ""}],
                "extend_start_seconds": 14 * edit.GRID_SECONDS}
    sent = comp.postprocess(contract)
    assert json.loads(sent) == contract and comp.postprocess(sent) == sent
    got = comp.preprocess(sent)
    assert got.regions == (Region(1.0, 2.0),) and got.extend_start_seconds == 14 * edit.GRID_SECONDS
    assert comp.preprocess(comp.postprocess(got.kept)) == got  # a re-render from what was kept reads the same


def test_the_js_writes_no_grid_or_limit_of_its_own():
    js = (painter.HERE / "painter.js").read_text()
    for fact in ("4096", "44100", "44.1", "max_continue: 30", "max_intro: 30", "30.0", "0.0928"):
        assert fact not in js


@pytest.fixture()
def studio(tmp_path):
    """The UI's handlers over the fake engine and a session holding a 4 s clip."""
    from studio import session
    from studio.fake_engine import FakeEngine
    from studio.ui import StudioConfig, _Handlers
    engine = FakeEngine()
    handlers = _Handlers(engine, StudioConfig(sessions=tmp_path, default_model="small-music"),
                         {m.name: m for m in engine.models()})
    clip = np.random.default_rng(0).uniform(-0.3, 0.3, (2, 4 * 44100)).astype(np.float32)
    return handlers, session.set_source(session.create(tmp_path), clip, "source")


def _generate(handlers, s, value):
    out = handlers.generate(s.id, painter.read(value), "small-music", "", 1, False, 1, 2, 1.0, 30.0,
                            progress=lambda *a, **k: None)
    return out[2]  # the status line's update


@pytest.mark.parametrize("value, sentence", [
    ("{", painter.UNREADABLE),
    (json.dumps({"regions": [{"start": 0.001 * i, "end": 0.001 * i + 0.0005} for i in range(3000)]}),
     f"There are 3000 regions; an edit takes at most {MAX_REGIONS}"),
    (json.dumps({"regions": [{"start": 1, "end": 2}, {"start": 1.2, "end": 3}]}), "Regions 1 and 2 overlap"),
])
def test_the_studio_answers_bad_painter_values_with_one_sentence_styled_as_an_error(studio, value, sentence):
    handlers, s = studio
    shown = _generate(handlers, s, value)
    assert shown["value"].startswith(f"⚠️ {sentence}") and shown["elem_classes"] == ["error"]
    from studio import session
    assert session.reload(s).takes == ()  # the handlers hold only the session id: read it from disk


def test_neighbours_ten_ms_apart_are_accepted_by_the_studio(studio):
    handlers, s = studio
    shown = _generate(handlers, s, json.dumps({"regions": [{"start": 0.5, "end": 0.6}, {"start": 0.61, "end": 0.7}]}))
    assert "take ready" in shown["value"] and shown["elem_classes"] == ["ok"]


def test_the_generate_handler_puts_the_painters_intro_before_the_track(studio):
    """The painter's extend_start_seconds is the intro Generate asks for: the take is longer by it
    and the track after it is the source sample for sample; Accept starts the next edit without one."""
    from studio import session
    handlers, s = studio
    intro = 14 * edit.GRID_SECONDS  # what a drag snapped to
    value = painter.read(json.dumps({"regions": [], "extend_start_seconds": intro}))
    out = handlers.generate(s.id, value, "small-music", "", 1, False, 1, 2, 1.0, 30.0, progress=lambda *a, **k: None)
    assert "take ready" in out[2]["value"] and out[1]["extend_start_seconds"] == intro  # kept for the next take
    s = session.reload(s)
    take = s.takes[-1]
    audio, source = session.audio(s, take.id), session.audio(s, "current")
    n = edit.to_samples(intro)
    assert n == 14 * 4096 and audio.shape == (2, n + source.shape[1])
    np.testing.assert_array_equal(audio[:, n:], source)
    assert np.abs(audio[:, :n]).max() > 0
    assert out[1]["take"]["start"] == -n / 44100  # B is drawn and played from before the track
    accepted = handlers.accept(s.id, painter.read(json.dumps(out[1])), take.id)
    assert accepted[1]["extend_start_seconds"] == 0 and accepted[1]["track"]["duration"] > 4.0 + intro - 1e-3
