"""studio.painter: the component's typed value (the JSON contract of studio/painter/README.md)."""
from __future__ import annotations

import json

import pytest

from studio import edit, painter
from studio.api import MAX_REGIONS, Region


def test_read_gives_typed_regions_in_the_painters_order():
    value = json.dumps({"regions": [{"id": "r2", "start": 3, "end": "4", "prompt": "choir"},
                                    {"id": "r1", "start": 1, "end": 2.5, "prompt": "  "}],
                        "continue_seconds": 2.0, "track": None, "beats": [0.5]})
    got = painter.read(value)
    assert got.regions == (Region(3.0, 4.0, "choir"), Region(1.0, 2.5, None)) and got.continue_seconds == 2.0
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
    assert ".sa3p" in comp.css_template and "PAINTER_CSS" not in comp.js_on_load
    contract = {"track": None, "regions": [{"id": "r1", "start": 1.0, "end": 2.0, "prompt": ""}]}
    sent = comp.postprocess(contract)
    assert json.loads(sent) == contract and comp.postprocess(sent) == sent
    assert comp.preprocess(sent).regions == (Region(1.0, 2.0),)


def test_the_js_writes_no_grid_or_limit_of_its_own():
    js = (painter.HERE / "painter.js").read_text()
    for fact in ("4096", "44100", "44.1", "max_continue: 30", "0.0928"):
        assert fact not in js


@pytest.fixture()
def studio(tmp_path):
    """The UI's handlers over the fake engine and a session holding a 4 s clip."""
    import numpy as np

    from studio import session
    from studio.fake_engine import FakeEngine
    from studio.ui import StudioConfig, _Handlers
    engine = FakeEngine()
    handlers = _Handlers(engine, StudioConfig(sessions=tmp_path, default_model="small-music"),
                         {m.name: m for m in engine.models()})
    clip = np.random.default_rng(0).uniform(-0.3, 0.3, (2, 4 * 44100)).astype(np.float32)
    return handlers, session.set_source(session.create(tmp_path), clip, "source")


def _generate(handlers, s, value):
    out = handlers.generate(s, painter.read(value), "small-music", "", 1, False, 1, 2, 1.0, 30.0,
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
    assert s.takes == ()


def test_neighbours_ten_ms_apart_are_accepted_by_the_studio(studio):
    handlers, s = studio
    shown = _generate(handlers, s, json.dumps({"regions": [{"start": 0.5, "end": 0.6}, {"start": 0.61, "end": 0.7}]}))
    assert "take ready" in shown["value"] and shown["elem_classes"] == ["ok"]
