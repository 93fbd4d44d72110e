"""studio.ui_tempo: the tempo panel's handlers over a real session (grid found on load, from a prompt,
corrected by hand, kept on reload), the painter's grid and snap lines, regions and takes in bars."""
from __future__ import annotations

import json

import numpy as np
import pytest

from studio import edit, painter, session, tempo, ui_tempo
from studio.ui import session_signature
from studio.api import Region
from studio.meter import Grid

SR = 44100


class Detected:
    """What tempo.detect returns (its fields), counting the calls."""

    def __init__(self, grid, reason=""):
        self.grid, self.reason, self.calls = grid, reason, 0

    def __call__(self, audio, meter=None):
        self.calls, self.meter = self.calls + 1, meter
        return tempo.Tempo(grid=self.grid, beats=(), downbeats=(), confidence=0.87, tracker="librosa",
                           reason=self.reason)


@pytest.fixture()
def studio(tmp_path, monkeypatch):
    """(UI handlers over the fake engine, tempo handlers, a session holding a 6 s clip, the fake detect)."""
    from studio.fake_engine import FakeEngine
    from studio.ui import StudioConfig, _Handlers, current_seconds, session_signature
    from studio.ui_common import status
    engine = FakeEngine()
    h = _Handlers(engine, StudioConfig(sessions=tmp_path, default_model="small-music"),
                  {m.name: m for m in engine.models()})
    found = Detected(Grid(100.0, 4, 4, downbeat=0.3))
    monkeypatch.setattr(tempo, "detect", found)
    clip = np.random.default_rng(0).uniform(-0.3, 0.3, (2, 6 * SR)).astype(np.float32)
    s = session.set_source(session.create(tmp_path), clip, "source")
    return h, ui_tempo.TempoHandlers(h.latest, current_seconds, status, session_signature), s, found


def fields(out):
    """The tempo outputs by name, and the status update."""
    named = dict(zip(ui_tempo.TEMPO_OUTPUTS, out, strict=False))
    named["grid_box"] = json.loads(named["grid_box"])
    return named, out[len(ui_tempo.TEMPO_OUTPUTS) + 1] if len(out) > len(ui_tempo.TEMPO_OUTPUTS) + 1 else None


def test_a_loaded_clip_gets_the_grid_the_tracker_finds_once_and_a_reload_keeps_it(studio):
    _, th, s, found = studio
    out = th.find_tempo(s.id, "bar")
    got, _ = fields(out)
    assert found.calls == 1 and session.grid_of(session.reload(s)) == Grid(100.0, 4, 4, downbeat=0.3)
    h = studio[0]
    assert out[-1] == session_signature(session.reload(s))  # the tab has seen it: its timer stays quiet
    synced = h.sync(s.id, out[-1], painter.read("{}"), None)
    assert all(x == {"__type__": "update"} for x in synced)
    assert (got["bpm"], got["meter"], got["downbeat"]) == (100.0, "4/4", 0.3)
    assert "Found by librosa · confidence 0.87" in got["tempo_note"]
    assert got["grid_box"]["lines"] == {u: Grid(100.0, 4, 4, downbeat=0.3).lines(6.0, u) for u in ("bar", "beat")}
    assert got["grid_box"]["grid"]["bar_seconds"] == pytest.approx(2.4)
    th.find_tempo(s.id, "bar")  # a page reload: the version has its grid, nothing is detected again
    assert found.calls == 1
    th.find_again(s.id, "3/4", "bar")  # the Find button does, in the meter picked
    assert found.calls == 2 and found.meter == "3/4"


def test_a_clip_without_a_beat_says_so_and_gets_no_grid(studio, monkeypatch):
    _, th, s, _ = studio
    monkeypatch.setattr(tempo, "detect", Detected(None, "No steady beat found: set the tempo by hand or tap it."))
    got, _ = fields(th.find_tempo(s.id, "bar"))
    assert session.grid_of(session.reload(s)) is None and got["bpm"] is None
    assert got["tempo_note"] == "No steady beat found: set the tempo by hand or tap it."
    assert got["grid_box"] == {"grid": None, "lines": None}


def test_a_generated_source_takes_the_tempo_its_prompt_states(studio):
    h, th, s, found = studio
    out = h.generate_source(s.id, painter.read("{}"), "dusty lofi drums, 84 BPM", 4, 7, False, "small-music", 2,
                            None, 1.0, "", progress=lambda *a, **k: None)
    got, _ = fields(th.find_tempo(out[0], "grid"))
    assert found.calls == 0 and session.grid_of(session.reload(s)) == Grid(84.0)
    assert "From the prompt (84 BPM)" in got["tempo_note"]


@pytest.mark.parametrize("bpm, meter, downbeat, sentence", [
    (500, "4/4", 0, "The tempo must be from 20 to 400 BPM"),
    (120, "4:4", 0, "The meter must be written beats/unit"),
    (120, "5/3", 0, "The meter must be beats/unit like 4/4"),
])
def test_a_bad_correction_is_one_sentence_and_keeps_the_grid(studio, bpm, meter, downbeat, sentence):
    _, th, s, _ = studio
    th.find_tempo(s.id, "grid")
    _, shown = fields(th.set_tempo(s.id, bpm, meter, downbeat, "grid"))
    assert shown["value"].startswith(f"⚠️ {sentence}") and shown["elem_classes"] == ["error"]
    assert session.grid_of(session.reload(s)) == Grid(100.0, 4, 4, downbeat=0.3)


def test_corrections_are_stored_and_win_over_a_tracker_that_finishes_later(studio):
    _, th, s, found = studio
    got, shown = fields(th.set_tempo(s.id, 96, "3/4", 0.52, "beat"))
    assert session.grid_of(session.reload(s)) == Grid(96.0, 3, 4, downbeat=0.52)
    assert got["tempo_note"].endswith(ui_tempo.SET_BY_HAND) and "96 BPM · 3/4" in shown["value"]
    assert got["grid_box"]["lines"]["beat"] == Grid(96.0, 3, 4, downbeat=0.52).lines(6.0, "beat")
    th.find_tempo(s.id, "beat")  # the tracker (started on load) must not overwrite the musician
    assert found.calls == 0 and session.grid_of(session.reload(s)) == Grid(96.0, 3, 4, downbeat=0.52)
    dragged = painter.read({"grid": {"downbeat": 1.0004}})
    th.drag_downbeat(s.id, dragged, 96, "3/4", "beat")  # the ruler's ▼, to the millisecond
    assert session.grid_of(session.reload(s)) == Grid(96.0, 3, 4, downbeat=1.0)
    before = session.reload(s).current
    th.set_tempo(s.id, 96, "3/4", 1.0, "beat")  # the same values again (a blur): nothing is written
    assert session.reload(s).current == before


def test_regions_typed_as_bars_and_snapped_outward_still_read_as_those_bars():
    grid = Grid(100.0, 4, 4, downbeat=0.3)
    start, end = grid.parse_range("2–3")
    (r,) = edit.snap_regions([Region(start, end)], 20.0, beats=grid.lines(20.0, "bar"))
    assert (r.start, r.end) != (start, end)  # snapping moved them off the bar lines
    assert ui_tempo.bars_label(grid, r.start, r.end, 20.0) == "bars 2–3"
    start, end = grid.parse_range("2.3–4.2")
    (r,) = edit.snap_regions([Region(start, end)], 20.0, beats=grid.lines(20.0, "beat"))
    assert ui_tempo.bars_label(grid, r.start, r.end, 20.0) == "bars 2.3–4.2"
    odd = Grid(97.0, 3, 4, downbeat=0.41)  # lines that Grid.lines rounds below the bar line
    (r,) = edit.snap_regions([Region(*odd.parse_range("1.2–1.3"))], 8.0)
    assert ui_tempo.bars_label(odd, r.start, r.end, 8.0) == "bars 1.2–1"


def test_generate_snaps_to_the_bars_the_painter_snapped_to_and_the_take_says_its_bars(studio):
    from studio.ui import takes_update
    h, th, s, _ = studio
    th.set_tempo(s.id, 100, "4/4", 0.3, "bar")
    grid = Grid(100.0, 4, 4, downbeat=0.3)
    value = json.dumps({"regions": [{"start": 2.6, "end": 5.0}], "snap": "bar"})  # near bar 2 (2.7–5.1 s)
    out = h.generate(s.id, painter.read(value), "small-music", "", 1, False, 1, 2, 1.0, 30.0,
                     progress=lambda *a, **k: None)
    assert "take ready" in out[2]["value"]
    take = session.reload(s).takes[-1]
    want = edit.snap_regions([Region(*grid.parse_range("2–2"))], 6.0)
    assert take.regions == want
    (label, _), = takes_update(session.reload(s))["choices"]
    assert "bars 2–2" in label and "s ·" not in label
