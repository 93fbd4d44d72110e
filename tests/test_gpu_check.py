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
    for section in ("env", "tiny", "full", "edit", "switch", "kernels", "profile", "fastpath"):
        assert f"\n  {section} " in text


def test_the_fastpath_section_dry_runs_on_the_cpu():
    """Every case of the fastpath section on the golden tiny models: eager and graphs (replayed by
    running the captured step: the bookkeeping, equal to eager bit for bit), the edit with 1 and 4
    takes, 4 takes in one batch, the decode kernels; one JSON line each, no error."""
    done = subprocess.run([*SCRIPT, "--device", "cpu", "--only", "fastpath", "--fastpath-tiny", "--seconds", "1.5",
                           "--track-seconds", "8", "--compile-seconds"], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and all("error" not in r and r["section"] == "fastpath" for r in rows), done.stderr
    ways = [(r["config"].split("-")[3].split(".")[0], r["way"]) for r in rows if "config" in r]
    assert ways == [("small", "eager"), ("small", "graphs"), ("medium", "eager"), ("medium", "graphs")]
    graphs = [r for r in rows if r.get("way") == "graphs" and "config" in r]
    assert all(r["max_abs_err"] == 0 and r["graphs"] == 1 and r["graph_bytes"] > 0 and r["step_s"] > 0 for r in graphs)
    edits = {r["way"]: r for r in rows if "edit_track_s" in r}
    assert set(edits) == {"eager", "graphs"} and all(r["one_take_s"] > 0 and r["four_takes_s"] > 0 for r in edits.values())
    batch = next(r for r in rows if "batch_takes" in r)
    assert batch["one_batch_s"] > 0 and batch["snr_db_batch_vs_alone"] > 60
    assert [r["decode"].split("-")[3].split(".")[0] for r in rows if "decode" in r] == ["small", "medium"]
