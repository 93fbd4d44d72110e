"""Fair sharing of the engine between the visitors of one studio: the gate every take passes.

Gradio's queue and the engines' own (studio/jobs.py) serve first come first served, so one
visitor's script queueing many takes would make every other visitor wait for all of them. The
gate sits in front of the engine in the page's process: it lets at most ``capacity`` jobs (the
engine's ``slots``: 1 for the local engine) run at once and, when one ends, starts the waiting
job of the session served least recently (a session never served, or back after being idle,
first; its own jobs in their order). So sessions take turns, one take each, whatever each has
queued. A job over ``per_session`` waiting-or-running jobs of its session, or ``per_client`` of
its client (the visitor's address), is refused at once with one sentence, which bounds what a
visitor holds (and the server threads that wait here). A waiting job hears its `Place` (why it
waits) through its ``wait`` callable, which may raise (Cancelled) to leave the line.
"""
from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

PER_SESSION = 4   # jobs a session may have waiting or running at once (a Generate holds one at a time)
PER_CLIENT = 8    # the same for one client address, whatever the sessions it opens
POLL_SECONDS = 0.25  # how often a waiting job re-hears its place (and can be cancelled)


class QueueFull(ValueError):
    """A job refused because its session or client already has its share waiting; one sentence."""


@dataclass(frozen=True)
class Place:
    """Why a job waits: ``ahead`` jobs start (or run) before it if no one else arrives, ``yours``
    of them from its own session."""
    ahead: int
    yours: int


@dataclass(eq=False)
class _Ticket:
    session: str
    client: str
    order: int  # arrival; a session's own jobs run in this order


class FairQueue:
    def __init__(self, capacity: int = 1, per_session: int = PER_SESSION, per_client: int = PER_CLIENT):
        self.capacity, self.per_session, self.per_client = max(1, int(capacity)), per_session, per_client
        self._reset()
        _QUEUES.add(self)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._running: list[_Ticket] = []
        self._served: dict[str, int] = {}  # session -> admission number of its latest job (while it has jobs)
        self._count = itertools.count()

    @contextmanager
    def turn(self, session: str, client: str, wait: Optional[Callable[[Place], None]] = None) -> Iterator[None]:
        """Run the block in this job's turn: QueueFull at once over a cap; else wait until the gate
        admits it, telling ``wait`` the job's Place when it changes and at least every POLL_SECONDS
        (so a Cancel raised there is heard)."""
        me = self._enter(session, client)
        try:
            while (place := self._where(me)) is not None:
                if wait is not None:
                    wait(place)  # outside the lock: it may be slow (Gradio) or raise (Cancelled)
                with self._cond:
                    self._cond.wait_for(lambda: self._place(me) != place, timeout=POLL_SECONDS)
            yield
        finally:
            self._leave(me)

    def _enter(self, session: str, client: str) -> _Ticket:
        with self._cond:
            held = self._waiting + self._running
            if sum(t.session == session for t in held) >= self.per_session:
                raise QueueFull(f"This session already has {self.per_session} takes waiting or running, the most "
                                "one session may queue so that every visitor gets a turn; wait for one to finish.")
            if sum(t.client == client for t in held) >= self.per_client:
                raise QueueFull(f"Your address already has {self.per_client} takes waiting or running, the most "
                                "one visitor may queue so that everyone gets a turn; wait for one to finish.")
            me = _Ticket(session, client, next(self._count))
            self._waiting.append(me)
            self._admit()
            return me

    def _leave(self, me: _Ticket) -> None:
        with self._cond:
            for line in (self._waiting, self._running):
                if me in line:
                    line.remove(me)
            if not any(t.session == me.session for t in self._waiting + self._running):
                self._served.pop(me.session, None)  # idle: it comes back as a newcomer
            self._admit()
            self._cond.notify_all()

    def _admit(self) -> None:
        """Move waiting jobs to running while there is room, in turn order (under the lock)."""
        while self._waiting and len(self._running) < self.capacity:
            nxt = self._order()[0]
            self._waiting.remove(nxt)
            self._running.append(nxt)
            self._served[nxt.session] = next(self._count)
            self._cond.notify_all()

    def _order(self) -> list[_Ticket]:
        """The waiting jobs in the order the gate will start them if no one else arrives: round by
        round, each session's next job, sessions served least recently first."""
        by_session: dict[str, list[_Ticket]] = {}
        for t in sorted(self._waiting, key=lambda t: t.order):
            by_session.setdefault(t.session, []).append(t)
        sessions = sorted(by_session, key=lambda s: (self._served.get(s, -1), by_session[s][0].order))
        rounds = itertools.zip_longest(*(by_session[s] for s in sessions))
        return [t for r in rounds for t in r if t is not None]

    def _where(self, me: _Ticket) -> Optional[Place]:
        with self._cond:
            return self._place(me)

    def _place(self, me: _Ticket) -> Optional[Place]:
        """None once ``me`` runs, else its Place (under the lock)."""
        if me in self._running:
            return None
        order = self._order()
        ahead = self._running + order[:order.index(me)]
        # with several slots, a job starts when as many jobs ahead have started and capacity - 1 ended
        ahead = ahead[self.capacity - 1:] if len(ahead) >= self.capacity else []
        return Place(len(ahead), sum(t.session == me.session for t in ahead))

    def held(self) -> Counter:
        """Jobs waiting or running, by session (for tests and a host's look)."""
        with self._cond:
            return Counter(t.session for t in self._waiting + self._running)


_QUEUES: "weakref.WeakSet[FairQueue]" = weakref.WeakSet()


def _fresh_after_fork() -> None:
    """A forked child (ZeroGPU runs each GPU call so) starts with empty gates: a lock held by a
    parent thread at the fork would stay held forever, and the parent's line is not the child's."""
    for q in list(_QUEUES):
        q._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_after_fork)
