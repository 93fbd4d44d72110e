"""studio.session: versions, takes, undo/redo and export, all surviving a reload from disk."""
from __future__ import annotations

import json

import numpy as np
import pytest

from studio import edit, session
from studio.api import SAMPLE_RATE, EditRequest, Region
from studio.fake_engine import FakeEngine

SR = SAMPLE_RATE


def clip(seconds=2.0, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal((2, int(seconds * SR)))).astype(np.float32)


def make_take(source, regions=(Region(0.5, 1.0),), seed=7, **kw):
    return FakeEngine().edit(EditRequest(model="small-music", source=source, regions=tuple(regions),
                                         prompt="pads", seed=seed, **kw))


def test_versions_takes_undo_redo_survive_reload(tmp_path):
    s = session.create(tmp_path)
    src = clip()
    s = session.set_source(s, src, "source: a.wav", "mono → stereo")
    s, t1 = session.add_take(s, make_take(src), "pads", {"steps": 8})
    s, t2 = session.add_take(s, make_take(src, seed=8), "pads", {"steps": 8})
    s = session.accept(s, t1.id)
    s = session.discard(s, t2.id)
    assert s.cursor == 1 and s.current.file == t1.file and [t.id for t in s.live_takes] == [t1.id]
    assert s.current.regions == t1.regions

    again = session.open_session(tmp_path, s.id)
    assert again == s
    assert np.array_equal(session.audio(again, again.current.file), make_take(src).audio)

    s = session.undo(s)
    assert s.current.label == "source: a.wav" and np.array_equal(session.audio(s, s.current.file), src)
    assert session.undo(s) == s  # nothing before the first version
    s = session.redo(s)
    assert s.cursor == 1 and session.redo(s) == s
    assert session.open_session(tmp_path, s.id).cursor == 1


def test_new_version_after_undo_drops_redo_but_keeps_files(tmp_path):
    s = session.create(tmp_path)
    s = session.set_source(s, clip(seed=1), "one")
    s = session.set_source(s, clip(seed=2), "two")
    old = s.current
    s = session.set_source(session.undo(s), clip(seed=3), "three")
    assert [v.label for v in s.versions] == ["one", "three"] and s.cursor == 1
    assert s.path(old.file).exists() and old.file != s.current.file


def test_export_current_and_take_with_sidecar(tmp_path):
    s = session.create(tmp_path)
    src = clip()
    s = session.set_source(s, src, "source")
    take = make_take(src)
    s, rec = session.add_take(s, take, "pads", {"steps": 8})
    path = session.export(s, rec.id, "wav32f")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["seed"] == 7 and meta["prompt"] == "pads" and meta["regions"][0]["start"] == 0.5
    assert np.array_equal(session.audio(s, path.relative_to(s.folder).as_posix()), take.audio)
    s = session.accept(s, rec.id)
    meta = json.loads(session.export(s, "current", "flac").with_suffix(".json").read_text())
    assert meta["take"] == rec.id and meta["format"] == "flac"


@pytest.mark.parametrize("sid", ["../etc", "", "ABCDEF012345"])
def test_open_refuses_malformed_ids(tmp_path, sid):
    with pytest.raises(ValueError, match="session id"):
        session.open_session(tmp_path, sid)


def test_sessions_are_separate(tmp_path):
    a, b = session.create(tmp_path), session.create(tmp_path)
    a = session.set_source(a, clip(seed=1), "a")
    assert a.folder != b.folder and session.open_session(tmp_path, b.id).versions == ()
