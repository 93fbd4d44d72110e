"""``python -m studio edit --bars`` and ``python -m studio loop`` on the tiny checkpoint: bars give the
same take as the same regions in seconds and as the studio's handlers on the same bars, loops are
exactly their bars long, change only the span across their wrap, and replay from their side-cars."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from studio import edit, loops
from studio.__main__ import main
from studio.meter import Grid
from tests.test_cli import refused, run_cli
from tests.test_cli import no_model as no_model  # noqa: F401 - a fixture, used by name

SR = 44100


@pytest.fixture
def track(tmp_path):
    """9 s of noise swelling within every 2.4 s (one bar at 100 BPM, from a downbeat at 0.3 s), as
    32-bit float so the file's samples are the audio's."""
    t = np.arange(9 * SR) / SR
    swell = 1 + 2 * (((t - 0.3) % 2.4) / 2.4)
    x = 0.05 * np.random.default_rng(0).standard_normal((9 * SR, 2)) * swell[:, None]
    path = tmp_path / "track.wav"
    sf.write(path, x.astype(np.float32), SR, subtype="FLOAT")
    return path


def test_bars_in_a_fresh_process_give_the_same_take_as_the_same_seconds_and_as_the_studio(
        tiny_checkpoint, track, tmp_path):
    grid = Grid(100.0, downbeat=0.3)
    start, end = grid.parse_range("2:3")  # bar 2 begins at 2.7 s, bar 3 ends at 7.5 s
    assert (start, end) == pytest.approx((2.7, 7.5))
    common = ["edit", str(track), "--prompt", "drum fill", "--seed", "4", "--steps", "2",
              "--model", str(tiny_checkpoint)]
    by_bars = run_cli(common + ["--bars", "2:3", "--bpm", "100", "--downbeat", "0.3", "-o", "bars.wav"],
                      tmp_path, tmp_path / "hf")
    assert by_bars.returncode == 0, by_bars.stderr
    assert main(common + ["--regions", f"{start}:{end}", "-o", str(tmp_path / "seconds.wav")]) == 0  # in-process
    bars_audio, seconds_audio = (sf.read(tmp_path / f"{n}.wav", dtype="float32")[0] for n in ("bars", "seconds"))
    np.testing.assert_array_equal(bars_audio, seconds_audio)
    side = json.loads((tmp_path / "bars.json").read_text())
    assert side["bars"] == {"ranges": ["2:3"], "grid": {"bpm": 100.0, "beats_per_bar": 4, "beat_unit": 4,
                                                        "downbeat": 0.3}}
    assert [(r["start"], r["end"]) for r in side["regenerated"]] == [
        (r.start, r.end) for r in edit.snap_regions([edit.Region(start, end)], 9.0)]

    # The studio: the same clip, its tempo typed, bars 2-3 as the painter's typed bars give them (the
    # browser test checks typed bars against dragged ones), the same seed: the take is the CLI's.
    studio_take = _studio_take(tiny_checkpoint, track, tmp_path, (start, end), seed=4, steps=2, prompt="drum fill")
    np.testing.assert_array_equal(studio_take, bars_audio)


def _studio_take(checkpoint, track, tmp_path, region, seed, steps, prompt) -> np.ndarray:
    """The take the studio's handlers make over the real engine, exported as the CLI writes (24-bit WAV)."""
    from types import SimpleNamespace

    from studio import painter, session, ui_tempo
    from studio.api import CROSSFADE_MS
    from studio.engine import RealEngine
    from studio.ui import StudioConfig, _Handlers, current_seconds, session_signature
    from studio.ui_common import status
    engine = RealEngine(extra_models=(str(checkpoint),))
    h = _Handlers(engine, StudioConfig(sessions=tmp_path / "sessions", default_model=str(checkpoint)),
                  {m.name: m for m in engine.models()})
    sid = h.load_file(None, painter.read({"regions": []}), str(track))[0]
    ui_tempo.TempoHandlers(h.latest, current_seconds, status, session_signature).set_tempo(sid, 100, "4/4", 0.3, "bar")
    typed = painter.read({"regions": [{"start": region[0], "end": region[1]}], "snap": "bar"})
    out = h.generate(sid, typed, str(checkpoint), prompt, seed, False, 1, steps, 1.0, CROSSFADE_MS,
                     request=SimpleNamespace(session_hash="tab", query_params={}), progress=lambda *a, **k: None)
    assert "ready" in out[2]["value"], out[2]["value"]
    take = session.open_session(h.cfg.sessions, sid).takes[-1]
    path, _ = h.export(sid, "wav24", take.id)
    return sf.read(path, dtype="float32")[0]


def test_a_files_loop_is_exactly_its_bars_and_changes_only_across_its_wrap(tiny_checkpoint, track, tmp_path, capsys):
    out = tmp_path / "loop.wav"
    assert main(["loop", str(track), "--bars", "2", "--from-bar", "2", "--bpm", "100", "--downbeat", "0.3",
                 "--seed", "5", "--steps", "2", "--model", str(tiny_checkpoint), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: the wrap before healing: seam " in err and "; after: seam " in err
    grid = Grid(100.0, downbeat=0.3)
    n, start = grid.loop_samples(2), edit.to_samples(grid.time(2))
    loop = sf.read(out, dtype="float32")[0]
    source = sf.read(track, dtype="float32")[0][start:start + n]
    assert loop.shape == (n, 2) == (211680, 2)  # 2 bars of 4/4 at 100 BPM: 4.8 s
    side = json.loads(out.with_suffix(".json").read_text())
    after, before = (edit.to_samples(r["end"] - r["start"]) for r in side["regenerated"])
    differs = np.flatnonzero(np.any(np.abs(loop - source) > 2 ** -23, axis=1))  # beyond 24-bit rounding
    assert differs.min() == 0 and differs.max() == n - 1
    assert np.all((differs < after) | (differs >= n - before))
    assert side["loop"] == {"start": start, "samples": n, "turn": n // 2 // 4096 * 4096, "in_place": False,
                            "bars": 2, "grid": {"bpm": 100.0, "meter": "4/4"}}
    again = tmp_path / "again.wav"
    assert main(["replay", str(out.with_suffix(".json")), "-o", str(again)]) == 0
    assert "the same samples as the take this side-car records" in capsys.readouterr().err
    np.testing.assert_array_equal(sf.read(again)[0], sf.read(out)[0])


def test_a_generated_loop_is_exactly_its_bars_and_replays(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "gen.wav"
    assert main(["loop", "--prompt", "lofi house", "--bars", "1", "--bpm", "93", "--meter", "3/4", "--seed", "2",
                 "--steps", "2", "--model", str(tiny_checkpoint), "-o", str(out)]) == 0
    assert sf.read(out)[0].shape == (Grid(93.0, 3, 4).loop_samples(1), 2) == (85355, 2)  # 85354.84 rounded
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["chain"][0]["kind"] == "generate" and side["chain"][0]["prompt"] == "lofi house, 93 BPM"
    assert side["source"]["file"] is None and side["loop"]["start"] == 0
    capsys.readouterr()
    assert main(["replay", str(out.with_suffix(".json")), "-o", str(tmp_path / "again.wav")]) == 0
    assert "the same samples" in capsys.readouterr().err
    np.testing.assert_array_equal(sf.read(tmp_path / "again.wav")[0], sf.read(out)[0])


def test_without_a_beat_bars_say_so_and_loops_without_a_source_are_one_sentence(no_model, track, tmp_path, capsys):
    out = ["-o", str(tmp_path / "o.wav")]
    assert refused(["edit", str(track), "--prompt", "x", "--bars", "2:3", *out], capsys, code=1) == (
        "error: No steady beat found: give the tempo with --bpm N (and --meter, and --downbeat SECONDS when bar 1 "
        "does not begin at 0).")  # swelling noise has no beat: studio.tempo says so
    assert refused(["loop", "--bars", "2", *out], capsys) == (
        "error: Give a FILE whose loop to heal, or --prompt and --bpm to generate a loop.")
    assert refused(["loop", str(track), "--bars", "4", "--bpm", "100", "--from-bar", "3", *out], capsys, code=1) == (
        "error: 4 bars of 4/4 at 100 BPM last 9.60 s, but the track holds 4.20 s from bar 3: choose fewer bars or "
        "an earlier bar.")
    assert not (tmp_path / "o.wav").exists()


def test_without_bpm_the_bars_are_read_on_the_grid_studio_tempo_finds(tmp_path, capsys, monkeypatch):
    """Clicks at 100 BPM, accented on the one from 0.3 s: --bars 2:3 without --bpm are bars 2-3 of
    the grid found (the fake engine stands in for the model: only the regions matter here)."""
    from studio.engine import RealEngine
    from studio.fake_engine import FakeEngine
    monkeypatch.setattr(RealEngine, "edit", lambda self, req, progress=None: FakeEngine().edit(req))
    x = np.zeros(10 * SR)
    for k, t in enumerate(np.arange(0.3, 10, 0.6)):
        a = int(t * SR)
        x[a:a + 400] += (1.0 if k % 4 == 0 else 0.4) * np.sin(np.arange(400) / 3) * np.exp(-np.arange(400) / 80)
    clicks = tmp_path / "clicks.wav"
    sf.write(clicks, np.stack([x, x], 1).astype(np.float32), SR, subtype="FLOAT")
    assert main(["edit", str(clicks), "--prompt", "x", "--bars", "2:3", "-o", str(tmp_path / "o.wav")]) == 0
    assert "found by librosa" in capsys.readouterr().err
    found = json.loads((tmp_path / "o.json").read_text())["bars"]["grid"]
    assert found["bpm"] == pytest.approx(100, rel=0.01) and found["downbeat"] == pytest.approx(0.3, abs=0.03)
    grid = Grid(**found)
    regenerated = json.loads((tmp_path / "o.json").read_text())["regenerated"]
    assert [(r["start"], r["end"]) for r in regenerated] == [
        (r.start, r.end) for r in edit.snap_regions([edit.Region(*grid.parse_range("2:3"))], 10.0)]


@pytest.mark.parametrize("args, message", [
    (["edit", "s.wav", "--prompt", "x", "--bars", "9-"], "--bars: Write bars as first–last, like 9–12 or 9.3–10"),
    (["edit", "s.wav", "--prompt", "x", "--bars", "9.5:10"], "beat 5 in '9.5:10' does not exist"),
    (["edit", "s.wav", "--prompt", "x", "--meter", "4/5"], "--meter: The meter must be beats/unit like 4/4"),
    (["edit", "s.wav", "--prompt", "x", "--bpm", "1000"], "--bpm: must be a tempo from 20 to 400"),
    (["loop", "s.wav", "--bars", "0"], "--bars: must be a whole number of bars from 1 to 64, got '0'"),
])
def test_bad_bars_meters_and_tempos_are_one_line_before_anything_loads(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(args + ["-o", "o.wav"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and message in err


def test_a_loop_exported_from_the_studio_replays_as_exactly_its_bars(tiny_checkpoint, track, tmp_path, capsys):
    """A session's loop take (bar 2 healed in place, on a take accepted before it) exported as its bar:
    the side-car is the chain with the loop's step and the excerpt; replay remakes those samples."""
    from studio import audio_io, session
    from studio.api import EditRequest, Region
    from studio.engine import RealEngine

    engine, model = RealEngine(device="cpu"), str(tiny_checkpoint)
    grid = Grid(100.0, downbeat=0.3)
    s = session.set_source(session.create(tmp_path / "sessions"), audio_io.load_audio(track)[0], "source: track.wav")
    s = session.set_grid(s, grid)
    first = engine.edit(EditRequest(model=model, source=session.audio(s, "current"), regions=(Region(7.0, 8.0),),
                                    prompt="hats", seed=2, steps=2))
    s, one = session.add_take(s, first, "hats", {}, engine.made_on(model))
    s = session.accept(s, one.id)
    healed = loops.heal(engine, session.audio(s, "current"), grid, 1, first_bar=2, in_place=True, model=model,
                        prompt="x", seed=1, steps=2)
    made_on = {**engine.made_on(model), "loop": healed.step}
    s, two = session.add_take(s, healed.take, "x", {"loop": healed.step}, made_on)
    start, n = healed.step["start"], healed.step["samples"]
    path = session.export(s, two.id, "wav32f", name="loop", span=(start, start + n))
    exported = audio_io.read_track(path)
    assert exported.shape == (2, n) and np.array_equal(exported, healed.loop)
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["excerpt"] == {"start": start, "end": start + n} and side["loop"] == healed.step
    assert len(side["chain"]) == 1 and side["source"]["file"] is None
    capsys.readouterr()
    again = tmp_path / "again.flac"
    assert main(["replay", str(path.with_suffix(".json")), "-o", str(again)]) == 0
    assert "the same samples as the take this side-car records" in capsys.readouterr().err
    np.testing.assert_allclose(sf.read(again, dtype="float32")[0].T, np.clip(exported, -1, 1), atol=2 ** -23)  # 24-bit
