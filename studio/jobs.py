"""One job at a time (or ``slots`` at a time), first come first served: the engines' queue.

A job holds the machine for its whole run (model switch, encode, steps, decode), so a model is
never switched under a running job, only one set of activations is alive (memory stays that of
one job) and, on a GPU, jobs do not fight over the card. A waiting job hears its place through its
Progress callback (stage "queue", done = jobs ahead of it), which may raise Cancelled to leave.
"""
from __future__ import annotations

import threading
from collections import deque
from contextlib import contextmanager
from typing import Iterator, Optional

from studio.api import Progress

POLL_SECONDS = 0.25  # how often a waiting job re-reports its place (and can be cancelled)


class JobQueue:
    def __init__(self, slots: int = 1):
        """``slots``: jobs that run at once (an engine: 1; a RayEngine: its replicas)."""
        self.slots = slots
        self._cond = threading.Condition()
        self._line: deque[object] = deque()  # the running jobs first, then the waiting ones

    @contextmanager
    def turn(self, progress: Optional[Progress] = None) -> Iterator[None]:
        """Wait for this job's turn (reporting its place), run the block, then let the next in."""
        me = object()
        with self._cond:
            self._line.append(me)
        try:
            while (ahead := self._ahead(me)) > 0:
                if progress is not None:
                    progress("queue", ahead, ahead)
                with self._cond:
                    self._cond.wait_for(lambda: self._place(me) < ahead, timeout=POLL_SECONDS)
            yield
        finally:
            with self._cond:
                self._line.remove(me)
                self._cond.notify_all()

    def _ahead(self, me: object) -> int:
        with self._cond:
            return self._place(me)

    def _place(self, me: object) -> int:
        """Jobs ``me`` waits for (0: it runs); called holding the lock."""
        return max(0, self._line.index(me) - self.slots + 1)

    def waiting(self) -> int:
        """Jobs waiting behind the running ones."""
        with self._cond:
            return max(0, len(self._line) - self.slots)

    def __len__(self) -> int:
        with self._cond:
            return len(self._line)
