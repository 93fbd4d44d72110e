"""The studio's handlers (studio.ui._Handlers) over the fake engine, without a browser: two tabs
on one session interleaving their calls keep every change; a page load stores nothing.
A "tab" is its own sequence of handler calls with its own session id state and Gradio hash."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("gradio")

from studio import session  # noqa: E402
from studio.fake_engine import FakeEngine  # noqa: E402
from studio.painter import read as read_painter  # noqa: E402
from studio.ui import StudioConfig, _Handlers  # noqa: E402


def no_progress(*args, **kwargs):
    pass


def write_clip(path, seconds):
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal((int(seconds * 44100), 2)), 44100, subtype="FLOAT")
    return path


class Tab:
    """One browser tab: its gr.State (the session id) and its Gradio session hash."""

    def __init__(self, h: _Handlers, sid=None, name="tab"):
        self.h, self.sid, self.request = h, sid, SimpleNamespace(session_hash=name, query_params={})
        self.painter = read_painter({"regions": []})

    def show(self, out):
        """Keep what the browser would keep of a handler's outputs: the session id; return the status."""
        self.sid = out[0]
        return out[2]["value"]  # a gr.update of the status line

    def generate(self, start, end, prompt, seed):
        painter = read_painter({"regions": [{"start": start, "end": end}]})
        out = self.h.generate(self.sid, painter, "small-music", prompt, seed, False, 1, 4, 1.0, 30.0,
                              1.0, 1.0, "", None, "auto", False, request=self.request, progress=no_progress)
        return self.show(out)


@pytest.fixture
def h(tmp_path):
    engine = FakeEngine()
    cfg = StudioConfig(sessions=tmp_path / "sessions", default_model="small-music")
    return _Handlers(engine, cfg, {m.name: m for m in engine.models()})


def test_page_load_stores_nothing(h, tmp_path):
    out = h.open(None, SimpleNamespace(query_params={}))
    assert out[0] is None and not (tmp_path / "sessions").exists()
    out = h.open(None, SimpleNamespace(query_params={"session": "0123456789ab"}))
    assert out[0] is None and "was not found" in out[2]["value"] and not (tmp_path / "sessions").exists()


def test_two_tabs_interleaved_through_the_handlers(h, tmp_path):
    one = Tab(h, name="one")
    assert "Loaded" in one.show(h.load_file(None, one.painter, str(write_clip(tmp_path / "a.wav", 3.0))))
    two = Tab(h, one.sid, name="two")  # the same ?session= in a second tab
    assert "ready" in one.generate(0.5, 1.0, "one", 1)
    assert "ready" in two.generate(2.0, 2.5, "two", 2)
    take_one = session.open_session(h.cfg.sessions, one.sid).takes[0].id
    assert "Accepted" in two.show(h.accept(two.sid, two.painter, take_one))  # tab two accepts tab one's take
    assert "ready" in one.generate(1.5, 2.0, "one again", 3)           # tab one never saw the accept
    assert "Undone" in one.show(h.undo(one.sid, one.painter, None))    # ... and still undoes it

    s = session.open_session(h.cfg.sessions, one.sid)
    assert [(t.id, t.prompt) for t in s.takes] == [("t001", "one"), ("t002", "two"), ("t003", "one again")]
    assert s.cursor == 0 and len(s.history) == 2 and s.history[1] == s.versions[1].id
    assert s.take("t003").base == s.versions[1].id  # made from the accepted take, as tab one's run read it
    for t in s.takes:  # each take file rebuilds to a take that changed only its own region
        audio, base = session.audio(s, t.id), session.audio(s, t.base)
        changed = np.flatnonzero(np.any(audio != base, axis=0)) / 44100
        assert t.regions[0].start <= changed.min() and changed.max() < t.regions[0].end
    assert s.last["prompt"] == "one again"


def test_the_sync_timer_never_unpicks_the_take_this_tab_just_made(h, tmp_path):
    """A timer tick that read the tab's pick (none) before Generate answered may land after Generate
    picked its new take: it updates the list and leaves the pick alone. A take another tab
    discarded is unpicked."""
    tab = Tab(h, name="one")
    tab.show(h.load_file(None, tab.painter, str(write_clip(tmp_path / "a.wav", 3.0))))
    seen = h.view(h.latest(tab.sid), tab.painter, None)[-1]  # what the tab showed before Generate
    assert "ready" in tab.generate(0.5, 1.0, "one", 1)
    takes = h.sync(tab.sid, seen, tab.painter, None)[2]  # the tick: the tab had no take picked when it fired
    assert [c[1] for c in takes["choices"]] == ["t001"] and "value" not in takes
    seen = h.view(h.latest(tab.sid), tab.painter, None, "t001")[-1]  # the tab shows its take
    h.discard(tab.sid, tab.painter, "t001")
    takes = h.sync(tab.sid, seen, tab.painter, "t001")[2]  # another tab discarded the picked take
    assert takes["choices"] == [] and takes["value"] is None
