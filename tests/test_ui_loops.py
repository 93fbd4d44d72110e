"""The Loops panel's handlers (studio.ui_loops.Loops) over the fake engine, without a browser: a clip
without a stored tempo is looped on the grid studio.tempo finds (or refused in a sentence when it
has no beat); a loop take exports as its healed bars; the drag-out list names every item."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("gradio")

from studio import audio_io, session, tempo  # noqa: E402
from studio.fake_engine import FakeEngine  # noqa: E402
from studio.painter import read as read_painter  # noqa: E402
from studio.ui import VIEW_OUTPUTS, StudioConfig, _Handlers  # noqa: E402
from studio.ui_loops import Loops, drag_html, file_stem  # noqa: E402

SR = 44100
ASSETS = Path(__file__).resolve().parent.parent / "assets"
REQUEST = SimpleNamespace(session_hash="tab", query_params={})


def no_progress(*args, **kwargs):
    pass


@pytest.fixture
def h(tmp_path):
    engine = FakeEngine()
    return _Handlers(engine, StudioConfig(sessions=tmp_path / "sessions", default_model="small-music", assets=ASSETS),
                     {m.name: m for m in engine.models()})


def load(h, path, x) -> str:
    sf.write(path, np.stack([x, x], 1).astype(np.float32), SR, subtype="FLOAT")
    return h.load_file(None, read_painter({"regions": []}), str(path))[0]


def make(h, sid, bars=2, first_bar=2):
    return Loops(h).make(sid, read_painter({"regions": []}), "small-music", "clicks", 4, False, 4, 30.0, bars,
                         first_bar, request=REQUEST, progress=no_progress)


def test_without_a_stored_tempo_the_loop_is_cut_on_the_grid_found(h, tmp_path):
    x = np.zeros(10 * SR)
    for k, t in enumerate(np.arange(0.25, 10, 0.5)):  # 120 BPM, the one accented, from 0.25 s
        a = int(t * SR)
        x[a:a + 400] += (1.0 if k % 4 == 0 else 0.4) * np.sin(np.arange(400) / 3) * np.exp(-np.arange(400) / 80)
    sid = load(h, tmp_path / "clicks.wav", x)
    found = tempo.detect(session.audio(session.open_session(h.cfg.sessions, sid), "current")).grid
    assert found.bpm == pytest.approx(120, rel=0.01) and found.downbeat == pytest.approx(0.25, abs=0.03)
    out = make(h, sid)
    assert f"Healed bars 2–3 (on the tempo found: {found.bpm:.1f} BPM in 4/4, found by librosa" in out[2]["value"]
    s = session.open_session(h.cfg.sessions, sid)
    assert session.grid_of(s) is None  # not stored: the tempo panel keeps what the musician sets
    step = s.live_takes[-1].settings["loop"]
    n = found.loop_samples(2)
    assert step["start"] == round(found.time(2) * SR) and step["samples"] == n
    seam = out[VIEW_OUTPUTS]  # after the view
    assert seam.startswith("**The wrap** · before: seam ") and "healed: seam" in seam
    path, said, _ = Loops(h).export(sid, s.live_takes[-1].id, "wav32f", 1, 1)  # a loop take: its own bars
    assert audio_io.read_track(path).shape == (2, n) and f"exactly 2 bars, {n} samples" in said["value"]
    assert path.endswith(f"clicks_{found.bpm:.1f}bpm_2bars_{s.live_takes[-1].id}.wav".replace(".", "p", 1))


def test_a_clip_without_a_beat_is_refused_in_one_sentence(h, tmp_path):
    sid = h.load_demo(None, read_painter({"regions": []}), "pads-am.wav")[0]  # slow chords: no beat
    status = make(h, sid)[2]
    assert status["value"] == ("⚠️ No steady beat found: set the tempo first (BPM, meter and the first downbeat): "
                               "loops are cut at bar lines. A generated loop has its tempo already.")


def test_the_drag_out_list_names_the_current_version_and_every_take(h, tmp_path):
    out = Loops(h).generate(None, read_painter({"regions": []}), "small-music", "glassy arp", 1, False, 4, 30.0,
                            1, 90, "3/4", request=REQUEST, progress=no_progress)
    s = session.open_session(h.cfg.sessions, out[0])
    take = s.live_takes[-1]
    listed = drag_html(s, take.id)
    assert file_stem(s, take.id) == f"glassy-arp_90bpm_1bar_{take.id}"
    assert f'data-kind="take" data-name="{file_stem(s, take.id)}.wav"' in listed
    assert f'data-name="{file_stem(s, "current")}.wav"' in listed and "· B ·" in listed
    assert session.audio(s, "current").shape == (2, 88200)  # one bar of 3/4 at 90 BPM: 2 s
