"""``python -m models.parity DIR``: run every fixture case under DIR against our engine.

DIR is a golden root (../shared/golden) or one of its component folders. Prints one line
per case with its error and tolerance and ends with ``N passed, M failed, K skipped``;
the exit status is non-zero on any failure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path

import torch

from models.parity.core import CaseResult, Fixture, discover

# Fixture kind (json stem) -> module holding its ``run(fixture)``.
RUNNERS = {
    "encode": "models.parity.same",
    "decode": "models.parity.same",
    "forward": "models.parity.dit",
    "fixtures": "models.parity.conditioning",
    "conditioners": "models.parity.conditioning",
    "schedules": "models.parity.conditioning",
    "generate": "models.parity.generate",
    "lora": "models.parity.lora",
}


def run_fixture(fx: Fixture):
    label = f"{fx.folder.name}/{fx.name}"
    module_name = RUNNERS.get(fx.name)
    if module_name is None:
        yield CaseResult(label, "skip", note=f"no runner for fixture kind {fx.name!r}")
        return
    try:
        runner = importlib.import_module(module_name).run
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        yield CaseResult(label, "skip", note=f"kind {fx.name!r} not implemented yet")
        return
    try:
        for case in runner(fx):
            yield CaseResult(f"{label}/{case.name}", case.status, case.error, case.tolerance, case.note)
    except Exception as e:  # a crashing runner fails its fixture, the others still run
        traceback.print_exc(file=sys.stderr)
        yield CaseResult(label, "fail", note=f"{type(e).__name__}: {e}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="a golden fixture root or one component folder")
    parser.add_argument("-k", dest="only", default=None,
                        help="run only fixtures whose 'folder/kind' contains this text")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    counts = {"pass": 0, "fail": 0, "skip": 0}
    for js in discover(args.dir):
        fx = Fixture.read(js)
        if args.only and args.only not in f"{fx.folder.name}/{fx.name}":
            continue
        for case in run_fixture(fx):
            counts[case.status] += 1
            print(case.line(), flush=True)
    print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
