"""The studio as a ZeroGPU Space, with a stand-in `spaces` package (tests/stand_ins/spaces.py):
the model is loaded at start-up in the main process, before the first request, and never again;
each Generate asks spaces.GPU for a duration sized by its work."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from studio.ui import gpu_seconds
from .helpers import ROOT, drag_region, free_port, open_page, upload, wait_attr, wait_status, write_clip


@pytest.fixture(scope="module")
def space(browser, tiny_checkpoint, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("space")
    port, out, log = free_port(), tmp / "stdout.txt", tmp / "spaces.jsonl"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", "SPACES_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "stand_ins"), os.environ.get("PYTHONPATH", "")])}
    with open(out, "w") as sink:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", str(tiny_checkpoint), "--port",
                                 str(port), "--sessions", str(tmp / "sessions")], cwd=ROOT, stdout=sink,
                                stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while "Running on local URL" not in out.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/", out, log
    proc.terminate()
    proc.wait(timeout=30)


def test_model_loads_at_start_up_and_once(space, browser, tmp_path):
    url, out, log = space
    started = out.read_text()
    assert "loaded model" in started.split("Running on local URL")[0]  # before the server took requests
    page = open_page(browser, url)
    page.set_default_timeout(120_000)
    upload(page, write_clip(tmp_path / "clip.wav", 3.0))
    wait_status(page, "Loaded")
    wait_attr(page, "ready", "1")
    drag_region(page, 0.5, 1.2)
    page.fill("#prompt textarea", "shaker")
    for n in (1, 2):
        page.click("#generate")
        wait_status(page, "take ready")
        page.wait_for_function("n => document.querySelectorAll('#takes input[type=radio]').length === n", arg=n)
    page.close()
    assert out.read_text().count("loading model") == 1  # the two Generates reused the start-up load
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["fn"] for c in calls] == ["generate", "generate"]
    assert all(c["duration"] == gpu_seconds(1, 8) for c in calls)
