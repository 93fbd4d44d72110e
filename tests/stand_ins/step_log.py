"""A fake engine for Ray's tests that writes what it does in a replica to a file the test reads."""
from __future__ import annotations

import os
from pathlib import Path

from studio.api import report
from studio.fake_engine import FakeEngine

STEP = 0.05  # seconds a step of the logging engine: a 30-step take lasts 1.5 s


class StepLog(FakeEngine):
    """The fake engine, STEP seconds a step, appending what it does to the file ``log``, a line each:
    "<seed> job <model> <pid>", "<seed> previews <bool>", "<seed> step <k>", "<seed> load <model> <pid>",
    "<seed> end"."""

    def __init__(self, log: str):
        super().__init__(step_delay=STEP)
        self.log = Path(log)

    def edit(self, req, progress=None, preview=None):
        self._write(f"{req.seed} job {req.model} {os.getpid()}")
        self._write(f"{req.seed} previews {preview is not None}")

        def logged(stage, done, total):
            if stage == "steps":
                self._write(f"{req.seed} step {done}")
            elif stage == "load":
                self._write(f"{req.seed} load {req.model} {os.getpid()}")
            report(progress, stage, done, total)
        try:
            return super().edit(req, logged, preview)
        finally:
            self._write(f"{req.seed} end")

    def _write(self, line: str) -> None:
        with open(self.log, "a") as f:
            f.write(line + "\n")
