"""studio.session: versions, takes, undo/redo and export, all surviving a reload from disk."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from studio import audio_io, session
from studio.api import SAMPLE_RATE, EditRequest, Region
from studio.fake_engine import FakeEngine
from studio.meter import Grid

SR = SAMPLE_RATE
ROOT = Path(__file__).resolve().parents[1]


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
    assert s.cursor == 1 and s.current.take == t1.id and [t.id for t in s.live_takes] == [t1.id]
    assert s.current.regions == t1.regions

    again = session.open_session(tmp_path, s.id)
    assert again == s
    assert np.array_equal(session.audio(again, "current"), make_take(src).audio)

    s, moved = session.undo(s)
    assert moved and s.current.label == "source: a.wav" and np.array_equal(session.audio(s, "current"), src)
    assert session.undo(s) == (s, False)  # nothing before the first version
    s, moved = session.redo(s)
    assert moved and s.cursor == 1 and session.redo(s) == (s, False)
    assert session.open_session(tmp_path, s.id).cursor == 1


def test_new_version_after_undo_drops_redo_but_keeps_files(tmp_path):
    s = session.create(tmp_path)
    s = session.set_source(s, clip(seed=1), "one")
    s = session.set_source(s, clip(seed=2), "two")
    old = s.current
    s = session.set_source(session.undo(s)[0], clip(seed=3), "three")
    assert [s.version(v).label for v in s.history] == ["one", "three"] and s.cursor == 1
    assert s.path(old.file).exists() and old.file != s.current.file
    assert np.array_equal(session.audio(s, old.id), clip(seed=2))  # takes based on it still rebuild


def test_export_current_and_take_with_sidecar(tmp_path):
    s = session.create(tmp_path)
    src = clip()
    s = session.set_source(s, src, "source")
    take = make_take(src)
    s, rec = session.add_take(s, take, "pads", {"steps": 8})
    path = session.export(s, rec.id, "wav32f")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["seed"] == 7 and meta["prompt"] == "pads" and meta["regenerated"][0]["start"] == take.regions[0].start
    assert meta["recipe"] == 1 and meta["source"]["file"] == str(s.path(s.current.file)) and "chain" not in meta
    assert np.array_equal(audio_io.read_track(path), take.audio)
    again = session.export(s, rec.id, "wav32f")  # the same second: a new name, the first file kept
    assert again != path and path.exists()
    s = session.accept(s, rec.id)
    meta = json.loads(session.export(s, "current", "flac").with_suffix(".json").read_text())
    assert meta["take"] == rec.id and meta["format"] == "flac"


def test_an_accepted_chain_exports_as_a_chain_of_recipes_that_replays(tmp_path):
    """Take 1 accepted, take 2 (restyled from a guide) made on it: the side-car of take 2 is its
    recipe with take 1's below it; the first names the session's copy of the source, the second's
    source is take 1's output (by hash); replaying the chain remakes take 2 sample for sample."""
    from studio import recipe
    s = session.set_source(session.create(tmp_path), clip(seed=1), "source: a.wav")
    first = make_take(clip(seed=1))
    s, one = session.add_take(s, first, "pads", {}, {"engine": "fake"})
    s = session.accept(s, one.id)
    guide = clip(seed=5)
    second = make_take(first.audio, (Region(1.0, 1.5),), seed=8, strength=0.5, guide=guide)
    s, two = session.add_take(s, second, "pads", {}, {"engine": "fake"})
    meta = json.loads(session.export(s, two.id, "wav32f").with_suffix(".json").read_text())
    below = meta["chain"]
    assert len(below) == 1 and below[0]["source"]["file"] == str(s.path(s.versions[0].file))
    assert meta["source"] == {"file": None, "sha256": below[0]["output_sha256"], "seconds": 2.0}
    assert meta["strength"] == 0.5 and meta["engine"] == "fake" and meta["take"] == two.id
    assert np.array_equal(audio_io.read_track(Path(meta["guide"]["file"])), guide)  # the session keeps the guide
    again = recipe.replay(meta, audio_io.read_track, FakeEngine().edit)
    assert np.array_equal(again.audio, session.audio(s, two.id))
    assert session.recipe_of(s, "current") == below[0]  # the current version: take 1's recipe
    below[0]["seed"] += 1  # take 1 made differently: take 2's source is not what it was made from
    with pytest.raises(ValueError, match="Take 1 of the 2 in this side-car came out different"):
        recipe.replay(meta, audio_io.read_track, FakeEngine().edit)


def test_a_generated_source_exports_its_recipe_and_a_loaded_one_says_it_has_none(tmp_path):
    from studio import recipe
    from studio.api import GenerateRequest
    made = FakeEngine().generate(GenerateRequest(model="small-sfx", prompt="rain", seconds=1.0, seed=3))
    s = session.set_source(session.create(tmp_path), made.audio, "generated", made_by=recipe.to_recipe(made, {}))
    meta = json.loads(session.export(s, "current", "wav32f").with_suffix(".json").read_text())
    assert (meta["kind"], meta["prompt"], meta["seconds"]) == ("generate", "rain", 1.0)
    assert np.array_equal(recipe.replay(meta, audio_io.read_track, FakeEngine().generate).audio, made.audio)
    s = session.set_source(s, clip(), "source: a.wav")
    meta = json.loads(session.export(s, "current", "wav32f").with_suffix(".json").read_text())
    with pytest.raises(ValueError, match="the export of a loaded clip has none"):
        recipe.replay(meta, audio_io.read_track, FakeEngine().edit)


def test_new_ids_carry_128_random_bits_and_old_short_ids_still_open(tmp_path):
    ids = {session.create(tmp_path).id for _ in range(50)}
    assert len(ids) == 50 and all(len(sid) == 32 and int(sid, 16) >= 0 for sid in ids)  # 32 hex digits: 128 bits
    assert len({sid[k] for sid in ids for k in range(32)}) == 16  # every hex digit used: not a counter or a clock
    old = tmp_path / "0123456789ab"  # an id made before, 12 hex digits
    old.mkdir()
    audio_io.write_json(old / "session.json", {"id": old.name, "cursor": -1, "versions": [], "takes": []})
    assert session.open_session(tmp_path, old.name).id == old.name
    assert session.sweep(tmp_path, keep_days=0) == [] and old.is_dir()  # swept as a session, not as debris


@pytest.mark.parametrize("sid", ["../etc", "", "ABCDEF012345", "0123456789abc", "0" * 31 + "/", "0" * 33,
                                 "../" + "0" * 29])
def test_open_refuses_malformed_ids(tmp_path, sid):
    with pytest.raises(session.SessionError, match="session id"):
        session.open_session(tmp_path, sid)
    assert list(tmp_path.iterdir()) == []


def test_sessions_are_separate(tmp_path):
    a, b = session.create(tmp_path), session.create(tmp_path)
    a = session.set_source(a, clip(seed=1), "a")
    assert a.folder != b.folder and session.open_session(tmp_path, b.id).versions == ()


# ---- compact takes: stored as what changed, rebuilt bitwise ---------------------------------------

def test_take_is_stored_as_its_changed_spans_and_rebuilt_bitwise(tmp_path):
    src = clip(60.0)
    src[:, ::7] = -0.0  # signed zeros: a take that wrote +0.0 there would differ bitwise
    s = session.set_source(session.create(tmp_path), src, "source")
    take = make_take(src, (Region(10.0, 11.0), Region(30.0, 30.5)), continue_seconds=2.0)
    s, rec = session.add_take(s, take, "pads", {})
    full_bytes = take.audio.nbytes
    assert s.path(rec.file).stat().st_size < 0.06 * full_bytes  # 3.5 s of 62 s are stored
    assert rec.frames == take.audio.shape[1] and len(rec.spans) == 3 and rec.spans[-1][1] == rec.frames
    rebuilt = session.audio(session.reload(s), rec.id)
    assert rebuilt.dtype == np.float32 and np.array_equal(rebuilt.view(np.uint32), take.audio.view(np.uint32))

    # a take made on an accepted take rebuilds through the chain; so does the file B plays
    s = session.accept(s, rec.id)
    second = make_take(take.audio, (Region(40.0, 41.0),), seed=9)
    s, rec2 = session.add_take(s, second, "pads", {})
    assert rec2.base == s.current.id
    played = audio_io.read_track(session.track_file(s, rec2.id))
    assert np.array_equal(played.view(np.uint32), second.audio.view(np.uint32))
    assert np.array_equal(audio_io.read_track(session.track_file(s, "current")), take.audio)


def test_a_take_with_an_intro_stores_the_intro_and_its_regions_only(tmp_path):
    src = clip(20.0)
    s = session.set_source(session.create(tmp_path), src, "source")
    take = make_take(src, (Region(5.0, 6.0),), extend_start_seconds=2.0)
    s, rec = session.add_take(s, take, "pads", {})
    assert rec.shift == 2 * SR and rec.spans[0] == (0, 2 * SR) and len(rec.spans) == 2
    assert s.path(rec.file).stat().st_size < 0.2 * take.audio.nbytes  # 3 s of 22 s
    assert np.array_equal(session.audio(session.reload(s), rec.id).view(np.uint32), take.audio.view(np.uint32))


def test_changed_spans_merge_close_runs_and_fall_back_to_whole_take():
    base = np.zeros((2, 100_000), np.float32)
    changed = base.copy()
    changed[0, 1000:1010] = 1
    changed[1, 1100:1200] = 1      # close to the first run: merged
    changed[0, 50_000:50_001] = 1  # far: its own span
    assert session.changed_spans(base, changed) == ((1000, 1200), (50_000, 50_001))
    assert session.changed_spans(base, np.pad(changed, ((0, 0), (0, 5)))) == (
        (1000, 1200), (50_000, 50_001), (100_000, 100_005))
    assert session.changed_spans(base, base.copy()) == ()
    assert session.changed_spans(base, np.pad(base, ((0, 0), (7, 0))), shift=7) == ((0, 7),)
    long = np.zeros((2, (session.MAX_SPANS + 1) * (session.SPAN_GAP + 1)), np.float32)
    scattered = long.copy()
    scattered[0, ::session.SPAN_GAP + 1] = 1  # one more run than MAX_SPANS
    assert session.changed_spans(long, scattered) == ((0, long.shape[1]),)


def test_an_unchanged_take_rebuilds_from_an_empty_patch(tmp_path):
    src = clip()
    s = session.set_source(session.create(tmp_path), src, "source")
    same = make_take(src, (Region(0.5, 1.0),), strength=1.0)
    same = type(same)(src.copy(), same.request, same.seed, same.model, same.regions)
    s, rec = session.add_take(s, same, "pads", {})
    assert rec.spans == () and np.array_equal(session.audio(s, rec.id), src)


def test_playback_cache_is_bounded(tmp_path, monkeypatch):
    src = clip()
    s = session.set_source(session.create(tmp_path), src, "source")
    recs = []
    for seed in range(4):
        s, rec = session.add_take(s, make_take(src, seed=seed), "pads", {})
        recs.append(rec)
    monkeypatch.setattr(session, "CACHE_BYTES", 1)
    paths = [session.track_file(s, r.id) for r in recs]
    assert sorted(p.name for p in s.path("cache").iterdir()) == [p.name for p in paths[2:]]
    assert np.array_equal(audio_io.read_track(session.track_file(s, recs[0].id)), make_take(src, seed=0).audio)


# ---- concurrency: every change applies to the latest state ------------------------------------------

def take_seeds(s):
    return sorted(t.seed for t in s.takes)


def assert_takes_hold_their_audio(s, src):
    """Every take rebuilds to exactly what the fake engine makes for its seed."""
    for t in s.takes:
        assert np.array_equal(session.audio(s, t.id), make_take(src, seed=t.seed).audio), t.id


def test_two_tabs_interleaved_keep_every_take(tmp_path):
    src = clip()
    s = session.set_source(session.create(tmp_path), src, "source")
    tab1, tab2 = session.open_session(tmp_path, s.id), session.open_session(tmp_path, s.id)
    for k in range(3):  # both tabs hold their own (stale) copy and add in turn
        session.add_take(tab1, make_take(src, seed=100 + k), "one", {})
        session.add_take(tab2, make_take(src, seed=200 + k), "two", {})
    latest = session.reload(s)
    assert [t.id for t in latest.takes] == [f"t{i:03d}" for i in range(1, 7)]
    assert take_seeds(latest) == [100, 101, 102, 200, 201, 202]
    assert sorted(p.name for p in s.path("takes").iterdir()) == [f"t{i:03d}.wav" for i in range(1, 7)]
    assert_takes_hold_their_audio(latest, src)


def test_four_threads_adding_takes_at_once(tmp_path):
    src = clip()
    s = session.set_source(session.create(tmp_path), src, "source")
    start = threading.Barrier(4)

    def user(k):
        start.wait()
        for j in range(3):
            session.add_take(s, make_take(src, seed=10 * k + j), "x", {})
    threads = [threading.Thread(target=user, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latest = session.reload(s)
    assert len({t.id for t in latest.takes}) == 12 and len(list(s.path("takes").iterdir())) == 12
    assert take_seeds(latest) == sorted(10 * k + j for k in range(4) for j in range(3))
    assert_takes_hold_their_audio(latest, src)


def test_accept_and_discard_while_a_take_is_added_both_survive(tmp_path):
    src = clip()
    s = session.set_source(session.create(tmp_path), src, "source")
    s, t1 = session.add_take(s, make_take(src, seed=1), "x", {})
    s, t2 = session.add_take(s, make_take(src, seed=2), "x", {})
    running = session.reload(s)  # what a generation read when it started
    session.accept(s, t1.id)     # meanwhile, the same user in the same (or another) tab
    session.discard(s, t2.id)
    after, t3 = session.add_take(running, make_take(src, seed=3), "x", {})
    assert after.current.take == t1.id and after.cursor == 1
    assert [t.id for t in after.live_takes] == [t1.id, t3.id] and t3.base == running.current.id
    after, moved = session.undo(running)  # Undo from the stale copy still undoes the accept
    assert moved and after.current.label == "source"

    # and with real threads: accepts/discards racing a stream of takes
    def adder():
        for seed in range(10, 16):
            session.add_take(s, make_take(src, seed=seed), "x", {})
    thread = threading.Thread(target=adder)
    thread.start()
    session.accept(s, t3.id)
    session.discard(s, t1.id)
    thread.join()
    latest = session.reload(s)
    assert latest.current.take == t3.id and latest.take(t1.id).discarded and len(latest.takes) == 9
    assert_takes_hold_their_audio(latest, src)


CHILD = """
import os, sys, time
import numpy as np
from studio import audio_io, session
from studio.api import EditRequest, Region
from studio.fake_engine import FakeEngine
root, sid, stage, first_seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = session.open_session(root, sid)
src = session.audio(s, "current")
if stage != "none":  # stop for good inside os.link (take file written, not named) or os.replace (session.json)
    real = getattr(os, stage)
    def stop(a, b, *rest):
        if stage == "link" or str(b).endswith("session.json"):
            print("mid-write", flush=True)
            time.sleep(3600)
        return real(a, b, *rest)
    setattr(os, stage, stop)
for seed in range(first_seed, first_seed + 3):
    take = FakeEngine().edit(EditRequest(model="small-music", source=src, regions=(Region(0.5, 1.0),),
                                         prompt="pads", seed=seed))
    session.add_take(s, take, "pads", {})
"""


def run_child(root, sid, stage, first_seed=50):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(root), sid, stage, str(first_seed)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("stage", ["link", "replace"])
def test_kill_9_in_the_middle_of_writing_a_take_leaves_no_debris(tmp_path, stage):
    src = clip()
    s = session.set_source(session.create(tmp_path), src, "source")
    s, _ = session.add_take(s, make_take(src, seed=1), "x", {})
    child = run_child(tmp_path, s.id, stage)
    assert child.stdout.readline().strip() == "mid-write"  # it holds the lock, a temp file on disk
    assert list(Path(s.folder).rglob(".tmp-*"))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    gone = session.recover(s.folder)  # what opening the session (or start-up) does
    assert gone and not list(Path(s.folder).rglob(".tmp-*"))
    latest = session.open_session(tmp_path, s.id)  # session.json is valid, and as before the kill
    assert [t.seed for t in latest.takes] == [1]
    assert sorted(p.name for p in s.path("takes").iterdir()) == ["t001.wav"]
    latest, rec = session.add_take(latest, make_take(src, seed=2), "x", {})  # the lock was released
    assert rec.id == "t002"
    assert_takes_hold_their_audio(session.reload(s), src)


def test_two_processes_adding_takes_to_one_session(tmp_path):
    src = clip()
    s = session.set_source(session.create(tmp_path), src, "source")
    children = [run_child(tmp_path, s.id, "none", first) for first in (10, 20)]
    for c in children:
        assert c.wait() == 0
    latest = session.reload(s)
    assert take_seeds(latest) == [10, 11, 12, 20, 21, 22] and len({t.id for t in latest.takes}) == 6
    assert_takes_hold_their_audio(latest, src)


# ---- bounds: lazy creation, quota, clean-up, what a reload restores -------------------------------

def test_opening_an_unknown_session_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        session.open_session(tmp_path, "0123456789ab")
    assert list(tmp_path.iterdir()) == []


def test_quota_refuses_new_work_with_a_sentence(tmp_path):
    s = session.set_source(session.create(tmp_path), clip(), "source")
    session.check_room(s, 10 * 2**20)
    with pytest.raises(session.SessionError, match=r"more than its 0 MB limit; export .* new session"):
        session.check_room(s, 1000)


def test_sweep_deletes_old_sessions_and_crash_debris(tmp_path):
    old = session.set_source(session.create(tmp_path), clip(), "old")
    fresh = session.set_source(session.create(tmp_path), clip(), "fresh")
    week_ago = time.time() - 8 * 86400
    os.utime(old.path("session.json"), (week_ago, week_ago))
    crashed = tmp_path / "00000000abcd"  # created, killed before session.json was written
    crashed.mkdir()
    os.utime(crashed, (week_ago, week_ago))
    (fresh.path("takes")).mkdir()
    debris = [fresh.path("takes/.tmp-t001.xyz.wav"), fresh.path("takes/t009.wav"), fresh.path(".tmp-session.a.json")]
    for p in debris:
        p.write_bytes(b"half")
    (tmp_path / "notes").mkdir()  # not a session: left alone
    broken = tmp_path / "00000000beef"  # unreadable session.json: left alone, the sweep goes on
    broken.mkdir()
    (broken / "session.json").write_text("{")
    flag = tmp_path / ".tmp-cancel-0f0f"  # a tab's cancel flag, left for a day
    flag.touch()
    os.utime(flag, (week_ago, week_ago))

    assert sorted(session.sweep(tmp_path, keep_days=7)) == sorted([old.id, crashed.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.id, "notes", broken.name])
    assert not any(p.exists() for p in debris) and session.reload(fresh).current.label == "fresh"
    assert session.sweep(tmp_path, keep_days=0) == []  # 0 keeps every session


def test_last_prompt_and_source_are_restored(tmp_path):
    s = session.set_source(session.create(tmp_path), clip(), "source: groove.wav")
    session.remember(s, prompt="glassy bells", n_takes=2)
    again = session.open_session(tmp_path, s.id)
    assert again.last == {"source": "source: groove.wav", "prompt": "glassy bells", "n_takes": 2}


def test_format_1_sessions_still_open(tmp_path):
    """A session written before takes were stored compactly: whole-take files, no history."""
    src, folder = clip(), tmp_path / "0123456789ab"
    take = make_take(src)
    audio_io.write_audio(folder / "versions/v001-aaaa.wav", src)
    audio_io.write_audio(folder / "takes/t001.wav", take.audio)
    audio_io.write_json(folder / "session.json", {
        "id": folder.name, "cursor": 1,
        "versions": [{"id": "v001-aaaa", "file": "versions/v001-aaaa.wav", "label": "source", "regions": [], "note": ""},
                     {"id": "v002-bbbb", "file": "takes/t001.wav", "label": "take 1 accepted", "regions": [],
                      "note": ""}],
        "takes": [{"id": "t001", "file": "takes/t001.wav", "base": "v001-aaaa", "prompt": "p", "seed": 7,
                   "model": "m", "regions": [], "settings": {}, "elapsed": 0.1, "discarded": False}]})
    s = session.open_session(tmp_path, folder.name)
    assert np.array_equal(session.audio(s, "current"), take.audio) and np.array_equal(session.audio(s, "t001"), take.audio)
    s, rec = session.add_take(s, make_take(take.audio, seed=8), "x", {})
    assert rec.id == "t002" and np.array_equal(session.audio(s, rec.id), make_take(take.audio, seed=8).audio)


def test_app_sweeps_sessions_at_start_up(tmp_path):
    import app
    args = app.parse_args(["--keep-sessions-days", "7", "--session-quota-mb", "100"])
    assert args.keep_sessions_days == 7 and args.session_quota_mb == 100
    old = session.create(tmp_path)
    long_ago = time.time() - 8 * 86400
    os.utime(old.path("session.json"), (long_ago, long_ago))
    kept = session.create(tmp_path)
    app.keep_sessions(tmp_path, args.keep_sessions_days)
    assert [p.name for p in tmp_path.iterdir()] == [kept.id]


def test_the_bar_grid_is_kept_with_its_version_and_follows_an_accepted_intro(tmp_path):
    src = clip(20.0)
    s = session.set_source(session.create(tmp_path), src, "source")
    assert session.grid_of(s) is None
    s = session.set_grid(s, Grid(96, 3, 4, downbeat=0.4))
    assert session.grid_of(session.open_session(tmp_path, s.id)) == Grid(96, 3, 4, downbeat=0.4)
    s, plain = session.add_take(s, make_take(src, (Region(5.0, 6.0),)), "pads", {})
    s, intro = session.add_take(s, make_take(src, (Region(5.0, 6.0),), extend_start_seconds=2.0), "pads", {})
    s = session.accept(s, plain.id)
    assert session.grid_of(s) == Grid(96, 3, 4, downbeat=0.4)
    s, _ = session.undo(s)
    s = session.accept(s, intro.id)  # the track now starts 2 s later on the take's axis
    assert session.grid_of(s) == Grid(96, 3, 4, downbeat=2.4)
    s, _ = session.undo(s)
    s = session.set_grid(s, None)
    assert session.grid_of(session.reload(s)) is None


def test_the_grid_keeps_the_line_saying_how_it_was_found_and_an_accepted_take_keeps_it(tmp_path):
    src = clip(8.0)
    s = session.set_source(session.create(tmp_path), src, "source")
    assert s.current.tempo == ""  # not analysed yet
    s = session.set_grid(s, None, "No steady beat found: set the tempo by hand or tap it.")
    assert session.reload(s).current.tempo.startswith("No steady beat") and session.grid_of(s) is None
    s = session.set_grid(s, Grid(120), "Found by librosa · confidence 0.90")
    s, take = session.add_take(s, make_take(src, (Region(2.0, 3.0),)), "pads", {})
    s = session.accept(s, take.id)
    assert session.reload(s).current.tempo == "Found by librosa · confidence 0.90"


def test_setting_a_grid_before_any_clip_is_one_sentence(tmp_path):
    with pytest.raises(session.SessionError, match="Load or generate a clip first"):
        session.set_grid(session.create(tmp_path), Grid(120))
