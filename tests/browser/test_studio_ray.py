"""`python app.py --ray --replicas 2` over the tiny real checkpoint: the page is the usual Gradio
process and the engines are two Ray Serve replicas of a local cluster the app starts itself. A
musician uploads, paints, generates with step previews and exports; outside the region the export
is the source sample for sample."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from studio.api import SAMPLE_RATE, Region
from studio.edit import region_mask
from .helpers import (drag_region, export_current, open_page, start_app, upload, wait_attr, wait_status, wait_text,
                      write_clip)
from .test_step_previews import WATCH

pytest.importorskip("ray", reason="ray[serve] is not installed (pip install 'ray[serve]')")


@pytest.fixture(scope="module")
def studio(browser, tiny_checkpoint, tmp_path_factory):
    sessions = tmp_path_factory.mktemp("sessions")
    proc, url = start_app(sessions, "--model", str(tiny_checkpoint), "--ray", "--replicas", "2", fake=False,
                          timeout=240)
    yield url, sessions
    proc.terminate()  # SIGTERM: the app takes its deployment and its local cluster down
    proc.wait(timeout=60)


def test_ray_studio_flow_with_previews(studio, browser, tmp_path):
    url, sessions = studio
    page = open_page(browser, url)
    page.set_default_timeout(120_000)  # the first generate loads the model in a replica
    wait_text(page, "#header", "Engines: 2 Ray Serve replicas on CPUs.")
    source_path = write_clip(tmp_path / "groove.wav", 4.0, subtype="FLOAT")
    source, _ = sf.read(source_path, dtype="float32", always_2d=True)
    upload(page, source_path)
    wait_status(page, "Loaded")
    wait_attr(page, "ready", "1")
    drag_region(page, 1.0, 2.0)
    page.fill("#prompt textarea", "glassy bells")
    page.check("#show-previews input")
    page.evaluate(WATCH)
    page.click("#generate")
    wait_status(page, "take ready")
    page.wait_for_function("() => window.shown.some((s) => s.label.includes('step 8/8'))")
    steps = [int(s["label"].split("step ")[1].split("/")[0]) for s in page.evaluate("window.shown")]
    assert steps == sorted(steps) and steps[-1] == 8 and len(steps) >= 2

    exported = export_current(page, tmp_path / "take.wav", button="#export-take")
    sidecar = json.loads(next(sessions.glob("*/exports/*.json")).read_text())
    assert sidecar["model"].endswith("sa3-small-tiny") and sidecar["device"] == "cpu"  # the replica's made_on
    regions = [Region(r["start"], r["end"]) for r in sidecar["regions"]]
    out, sr = sf.read(exported, dtype="float32", always_2d=True)
    assert sr == SAMPLE_RATE and out.shape == source.shape
    outside = ~region_mask(len(source), regions)
    assert np.array_equal(out[outside], source[outside])
    assert not np.allclose(out[~outside], source[~outside])
    page.close()
