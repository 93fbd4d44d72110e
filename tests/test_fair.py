"""studio.fair: the gate in front of the engine serves sessions in turn, refuses a job over its
session's or client's cap at once, and tells a waiting job why it waits. Jobs are threads doing
fake work that ends when the test says; every wait is on a condition."""
from __future__ import annotations

import threading

import pytest

from studio.api import Cancelled
from studio.fair import FairQueue, Place, QueueFull

PATIENCE = 30.0  # seconds a condition may take before the test fails (a hang guard, not a measurement)


class Jobs:
    """Jobs run through one gate: each logs its name when it starts and works until finish(name)."""

    def __init__(self, gate: FairQueue):
        self.gate, self.started, self.places = gate, [], {}
        self._done: dict[str, threading.Event] = {}
        self.threads: list[threading.Thread] = []
        self._cond = threading.Condition()
        self.errors: dict[str, BaseException] = {}

    def add(self, name: str, session: str, client: str | None = None, leave: threading.Event | None = None):
        """Start job ``name`` (from client ``client``, by default one per session) and return once
        the gate runs it, placed it in line or refused it."""
        self._done[name] = threading.Event()
        client = client or f"client of {session}"

        def wait(place: Place):
            with self._cond:
                self.places.setdefault(name, []).append(place)
                self._cond.notify_all()
            if leave is not None and leave.is_set():
                raise Cancelled()

        def run():
            try:
                with self.gate.turn(session, client, wait):
                    with self._cond:
                        self.started.append(name)
                        self._cond.notify_all()
                    self._done[name].wait()
            except BaseException as e:  # noqa: BLE001 - recorded for the test to look at
                with self._cond:
                    self.errors[name] = e
                    self._cond.notify_all()
        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()
        self.until(lambda: name in self.started or name in self.places or name in self.errors)

    def finish(self, name: str) -> None:
        self._done[name].set()

    def until(self, condition) -> None:
        with self._cond:
            assert self._cond.wait_for(condition, timeout=PATIENCE), "the gate never got there"

    def finish_in_turn(self, count: int) -> list[str]:
        """Finish the running job, then each next one that starts, ``count`` times; return the start order."""
        for k in range(count):
            self.until(lambda k=k: len(self.started) > k)
            self.finish(self.started[k])
        return self.started


def test_sessions_take_turns_whatever_each_has_queued():
    jobs = Jobs(FairQueue(capacity=1, per_session=10))
    jobs.add("A0", "A")
    jobs.until(lambda: jobs.started == ["A0"])
    for k in range(1, 6):
        jobs.add(f"A{k}", "A")  # a script queueing five more takes behind its running one
    jobs.add("B0", "B")
    jobs.add("B1", "B")
    jobs.add("C0", "C")
    jobs.until(lambda: "C0" in jobs.places)
    assert jobs.places["B0"][-1] == Place(ahead=1, yours=0)  # only the running take is ahead of B's first
    assert jobs.places["C0"][-1] == Place(ahead=2, yours=0)
    jobs.until(lambda: jobs.places["A1"][-1] == Place(ahead=3, yours=1))  # its place moved back as B and C came
    order = jobs.finish_in_turn(9)
    assert order == ["A0", "B0", "C0", "A1", "B1", "A2", "A3", "A4", "A5"]
    for thread in jobs.threads:
        thread.join(PATIENCE)
    assert not jobs.errors and jobs.gate.held() == {}


def test_a_session_back_after_being_idle_is_served_next():
    jobs = Jobs(FairQueue(capacity=1))
    jobs.add("A0", "A")
    jobs.add("B0", "B")
    jobs.add("A1", "A")
    order = jobs.finish_in_turn(2)[:2]
    assert order == ["A0", "B0"]
    jobs.until(lambda: jobs.started[-1] == "A1")
    jobs.add("B1", "B")  # B had nothing left: it comes back as a newcomer, after the running take only
    jobs.add("A2", "A")
    assert jobs.finish_in_turn(5)[2:] == ["A1", "B1", "A2"]


def test_a_job_over_its_sessions_or_clients_cap_is_refused_at_once_with_a_sentence():
    jobs = Jobs(FairQueue(capacity=1, per_session=2, per_client=3))
    jobs.add("A0", "A", client="10.0.0.1")
    jobs.add("A1", "A", client="10.0.0.1")
    jobs.add("A2", "A", client="10.0.0.1")
    assert isinstance(jobs.errors["A2"], QueueFull)
    assert "This session already has 2 takes waiting or running" in str(jobs.errors["A2"])
    jobs.add("Z0", "Z", client="10.0.0.1")  # another session from the same address: its third job
    jobs.add("Z1", "Z", client="10.0.0.1")
    assert "Your address already has 3 takes" in str(jobs.errors["Z1"])
    assert str(jobs.errors["Z1"]).count(".") == 1  # one sentence
    jobs.add("B0", "B", client="10.0.0.2")  # another visitor is not affected
    assert "B0" not in jobs.errors
    assert jobs.finish_in_turn(4) == ["A0", "Z0", "B0", "A1"]
    jobs.add("A3", "A", client="10.0.0.1")  # the caps count what is held now: room again
    assert jobs.finish_in_turn(5)[-1] == "A3" and set(jobs.errors) == {"A2", "Z1"}


def test_a_cancelled_waiting_job_leaves_the_line():
    jobs, leave = Jobs(FairQueue(capacity=1)), threading.Event()
    jobs.add("A0", "A")
    jobs.add("B0", "B", leave=leave)
    jobs.add("C0", "C")
    leave.set()
    jobs.until(lambda: "B0" in jobs.errors)
    assert isinstance(jobs.errors["B0"], Cancelled) and jobs.gate.held() == {"A": 1, "C": 1}
    assert jobs.finish_in_turn(2) == ["A0", "C0"]


def test_capacity_runs_that_many_jobs_at_once_still_in_turn():
    jobs = Jobs(FairQueue(capacity=2, per_session=10))
    for name, s in [("A0", "A"), ("A1", "A"), ("A2", "A"), ("A3", "A"), ("B0", "B")]:
        jobs.add(name, s)
    jobs.until(lambda: jobs.started == ["A0", "A1"])
    assert jobs.places["B0"][-1] == Place(ahead=1, yours=0)  # it starts when one of the two running ends
    for k, name in enumerate(["A0", "A1", "B0"]):  # each ending lets exactly one more in
        jobs.finish(name)
        jobs.until(lambda k=k: len(jobs.started) == 3 + k)
    assert jobs.started == ["A0", "A1", "B0", "A2", "A3"]


@pytest.mark.parametrize("capacity", [0, 1])
def test_an_engine_without_slots_runs_one_job_at_a_time(capacity):
    assert FairQueue(capacity=capacity).capacity == 1
