"""RayEngine (studio/ray_engine.py) beyond the engine contract, on the session's local Ray cluster
with two replicas of a fake engine that logs what it does: Cancel stops a replica's steps, a replica
killed mid-take loses no take and comes back, requests go to the replica holding their model,
LoRA files reach the replicas by content, errors cross as their sentences."""
from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from studio.api import Cancelled, EditRequest, EngineError, LoraSpec, Region
from studio.fake_engine import FAILURES, FakeEngine
from tests.stand_ins.step_log import StepLog  # importable by the replicas (a test module is not)

ray_engine = pytest.importorskip("studio.ray_engine", reason="ray[serve] is not installed")

@pytest.fixture(scope="module")
def ray_setup(ray_cluster, tmp_path_factory):
    """(engine, log file): a RayEngine over two StepLog replicas."""
    log = tmp_path_factory.mktemp("ray") / "replicas.log"
    log.touch()
    engine = ray_engine.start(functools.partial(StepLog, str(log)), FakeEngine(), replicas=2)
    yield engine, log
    engine.close()


def lines(log: Path, seed: int) -> list[str]:
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines() if line.startswith(f"{seed} ")]


def wait_for(condition, seconds: float = 60.0) -> None:
    """Waits until ``condition()`` holds (a deadline against hanging, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def req(seed: int, steps: int = 8, model: str = "small-music", **kw) -> EditRequest:
    src = (0.1 * np.random.default_rng(0).standard_normal((2, 88200))).astype(np.float32)
    return EditRequest(model=model, source=src, regions=(Region(0.5, 1.0),), prompt=kw.pop("prompt", "pads"),
                       seed=seed, steps=steps, **kw)


def test_cancel_stops_the_replicas_steps(ray_setup):
    engine, log = ray_setup

    def stop(stage, done, total):
        if stage == "steps" and done == 3:
            raise Cancelled()
    with pytest.raises(Cancelled):
        engine.edit(req(11, steps=40), stop)
    wait_for(lambda: "end" in lines(log, 11))
    steps = [int(line.split()[1]) for line in lines(log, 11) if line.startswith("step")]
    assert 3 <= max(steps) <= 5  # stopped within a step or two of the Cancel, not after 40


def test_cancel_while_waiting_for_a_replica_never_reaches_one(ray_setup):
    engine, log = ray_setup
    busy = [threading.Thread(target=engine.edit, args=(req(seed, steps=20),)) for seed in (21, 22)]
    for t in busy:
        t.start()
    wait_for(lambda: len(engine.running) == 2)
    heard = []

    def leave(stage, done, total):
        heard.append((stage, done))
        raise Cancelled()
    with pytest.raises(Cancelled):
        engine.edit(req(23), leave)
    for t in busy:
        t.join()
    assert heard == [("queue", 1)] and lines(log, 23) == []


def test_a_replica_killed_mid_take_loses_no_take_and_comes_back(ray_setup, ray_cluster):
    engine, log = ray_setup
    killed = []

    def kill_at_step_5(stage, done, total):
        if stage == "steps" and done == 5 and not killed:
            killed.append(next(iter(engine.running.values())))
            ray_cluster.kill(ray_cluster.get_actor(killed[0], namespace="serve"), no_restart=True)
    take = engine.edit(req(31, steps=30), kill_at_step_5)
    assert killed and np.array_equal(take.audio, FakeEngine().edit(req(31, steps=30)).audio)
    assert lines(log, 31).count("step 0") == 2  # it ran again (on another replica), and came out the same
    wait_for(lambda: ray_engine.healthy_replicas() == 2 and killed[0] not in ray_engine.replica_actors())
    # the new replica serves: pairs of jobs sent at once run on both replicas, the new one among
    # them (read while they run; the handle may learn of the new replica a moment after the
    # controller does, and under load one job may finish before the other starts: a few rounds)
    new = set(ray_engine.replica_actors()) - set(killed)
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while not new <= seen and time.monotonic() < deadline:
        jobs = [threading.Thread(target=engine.edit, args=(req(seed, steps=20),)) for seed in (32, 33)]
        for t in jobs:
            t.start()
        while any(t.is_alive() for t in jobs):
            seen |= set(engine.running.values())
            time.sleep(0.01)
    assert new <= seen and seen <= set(ray_engine.replica_actors())


def test_replicas_lost_again_and_again_end_in_one_sentence(monkeypatch):
    """Without a cluster: a handle whose every stream dies (as a killed replica's does)."""
    from ray.exceptions import ActorDiedError

    class Dying:
        calls = 0

        def options(self, **kw):
            return self

        @property
        def run(self):
            return self

        def remote(self, *args):
            Dying.calls += 1
            raise ActorDiedError()
    monkeypatch.setattr(ray_engine, "RETRY_SECONDS", 0.0)
    engine = ray_engine.RayEngine(Dying(), FakeEngine(), slots=1)
    with pytest.raises(EngineError) as e:
        engine.edit(req(41))
    assert str(e.value) == ray_engine.LOST.format(n=f"{ray_engine.ATTEMPTS} replicas in turn")
    assert Dying.calls == ray_engine.ATTEMPTS


def test_requests_go_to_the_replica_holding_their_model(ray_setup):
    """Alternating models, one request at a time: once each replica holds a model, every request
    goes to the replica holding its model and no replica switches (Serve's model multiplexing)."""
    engine, log = ray_setup
    seeds = range(51, 61)
    for k, seed in enumerate(seeds):
        engine.edit(req(seed, model=("small-music", "small-sfx")[k % 2]))
    jobs = [lines(log, seed)[0].split()[1:] for seed in seeds]  # [model, pid]
    loads = [line for seed in seeds for line in lines(log, seed) if line.startswith("load")]
    assert len(loads) <= 2  # each replica loads its model at most once
    settled = {model: {pid for m, pid in jobs[2:] if m == model} for model in ("small-music", "small-sfx")}
    assert all(len(pids) == 1 for pids in settled.values()) and settled["small-music"] != settled["small-sfx"]


def test_loras_reach_the_replicas_by_content(ray_setup, tmp_path):
    engine, _ = ray_setup
    lora = tmp_path / "mine.safetensors"
    lora.write_bytes(os.urandom(1000))
    asked = req(61, loras=(LoraSpec(path=str(lora), strength=0.5),))
    take = engine.edit(asked)
    assert np.array_equal(take.audio, FakeEngine().edit(asked).audio) and take.request is asked
    copy = Path(tempfile.gettempdir()) / "sa3-studio-loras" / hashlib.sha256(lora.read_bytes()).hexdigest() / lora.name
    assert copy.read_bytes() == lora.read_bytes()
    missing = req(62, loras=(LoraSpec(path=str(tmp_path / "gone.safetensors")),))
    with pytest.raises(ValueError, match=r"^The LoRA file gone.safetensors is not a .safetensors file here"):
        engine.edit(missing)


def test_errors_cross_as_their_sentence_and_previews_only_when_asked(ray_setup):
    engine, log = ray_setup
    with pytest.raises(EngineError) as e:
        engine.edit(req(71, prompt="[fail:gated] pads"))
    assert str(e.value) == FAILURES["gated"]
    engine.edit(req(72))
    seen = []
    engine.edit(req(73), preview=seen.append)
    assert "previews False" in lines(log, 72) and "previews True" in lines(log, 73) and len(seen) == 3
    assert engine.made_on("small-music") == {"engine": "fake"}
    assert engine.estimate("small-music", 2.0, (Region(0.5, 1.0),)).seconds > 0  # learnt from the replicas


def test_without_ray_the_studio_never_imports_it():
    """The studio's start-up path without --ray (the app, the UI, both engines) leaves Ray out."""
    code = ("import sys, app, studio.ui, studio.engine; app.make_engine(True); "
            "sys.exit(any(m == 'ray' or m.startswith('ray.') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent).returncode == 0
