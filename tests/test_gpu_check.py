"""bench/gpu_check.py, the prepared first GPU run: without CUDA it says so in one sentence; on the CPU
its tiny section checks the script itself (the device run equals the CPU reference)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

SCRIPT = [sys.executable, "-m", "bench.gpu_check"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script would run for real")
def test_without_cuda_it_says_so_and_exits_cleanly():
    done = subprocess.run(SCRIPT, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("No CUDA device here") and "Traceback" not in done.stderr


def test_the_tiny_section_runs_on_the_cpu():
    done = subprocess.run([*SCRIPT, "--device", "cpu", "--only", "tiny"], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(rows) >= 10
    # a second copy of the model on the same CPU: equal up to the kernels' summation order
    assert all(r["section"] == "tiny" and r["max_abs_err"] < 1e-4 and r["snr_db"] > 100 for r in rows)


def test_help_documents_every_section():
    text = subprocess.run([*SCRIPT, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    for section in ("env", "tiny", "full", "edit", "switch", "kernels", "profile"):
        assert f"\n  {section} " in text
