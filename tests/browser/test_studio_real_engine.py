"""The same musician's flow over the REAL engine, on a tiny SA3 checkpoint in the released layout
(random weights: the audio is noise, the plumbing is real): upload, paint regions by drag and by
brush, type one, generate, A/B, accept, undo, export; outside the regions the export is the
source sample for sample."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from studio.api import SAMPLE_RATE, Region
from studio.edit import region_mask
from .helpers import (drag_region, export_current, open_page, paint_region, screenshot, set_region, start_app, take_count,
                      upload, wait_attr, wait_status, wait_text, write_clip)


@pytest.fixture(scope="module")
def studio(browser, tiny_checkpoint, tmp_path_factory):
    sessions = tmp_path_factory.mktemp("sessions")
    proc, url = start_app(sessions, "--model", str(tiny_checkpoint), fake=False)
    yield url, sessions
    proc.terminate()
    proc.wait(timeout=30)


def test_real_engine_flow(studio, browser, tmp_path):
    url, sessions = studio
    page = open_page(browser, url)
    page.set_default_timeout(120_000)  # the first generate loads the model
    source_path = write_clip(tmp_path / "groove.wav", 5.0, subtype="FLOAT")
    source, _ = sf.read(source_path, dtype="float32", always_2d=True)

    upload(page, source_path)
    wait_status(page, "Loaded")
    wait_attr(page, "ready", "1")
    drag_region(page, 0.5, 1.2)
    drag_region(page, 2.0, 2.6)
    paint_region(page, 3.4, 4.2)
    set_region(page, 2, start=1.9, end=2.7)

    page.fill("#prompt textarea", "tight snare fill")
    page.click("#generate")
    wait_status(page, "take ready")
    assert take_count(page) == 1
    page.wait_for_function("() => !document.querySelector('#painter .b-btn').disabled")
    page.click("#painter .b-btn")
    wait_attr(page, "mode", "B")
    screenshot(page, "20-real-engine-take")
    page.click("#accept")
    wait_text(page, "#versions", "Version 2 of 2")
    page.click("#undo")
    wait_text(page, "#versions", "Version 1 of 2")
    page.click("#redo")
    wait_text(page, "#versions", "Version 2 of 2")

    exported = export_current(page, tmp_path / "exported.wav")

    import json
    sidecar = json.loads(next(sessions.glob("*/exports/*.json")).read_text())
    assert sidecar["model"].endswith("sa3-small-tiny")
    regions = [Region(r["start"], r["end"]) for r in sidecar["regions"]]
    assert len(regions) == 3
    out, sr = sf.read(exported, dtype="float32", always_2d=True)
    assert sr == SAMPLE_RATE and out.shape == source.shape
    outside = ~region_mask(len(source), regions)
    assert np.array_equal(out[outside], source[outside])
    for r in regions:
        a, b = int(round(r.start * sr)), int(round(r.end * sr))
        assert not np.allclose(out[a:b], source[a:b])
    page.close()


def test_lora_panel_stacks_two_adapters_and_equals_the_engine(studio, browser, tiny_checkpoint, tmp_path):
    """Two LoRA files at their strengths through the studio: the take differs from the one
    without them and equals the real engine called directly with the same request."""
    from studio.api import EditRequest, LoraSpec
    from studio.engine import RealEngine
    from tests.conftest import GOLDEN
    from .test_studio_controls import _setup, _take
    url, sessions = studio
    page = open_page(browser, url)
    page.set_default_timeout(120_000)
    source = _setup(page, tmp_path, 3.0)
    drag_region(page, 0.8, 1.9)
    plain, _ = _take(page, tmp_path, sessions, "plain")
    page.click("#lora")
    adapters = [GOLDEN / "sa3_small_tiny" / "lora_lora.safetensors", GOLDEN / "sa3_small_tiny" / "lora_bora.safetensors"]
    for k, (path, strength) in enumerate(zip(adapters, (0.7, 1.3)), 1):
        page.set_input_files(f"#lora{k}-file input[type=file]", str(path))
        box = page.locator(f"#lora{k}-strength input[type=number]")
        box.fill(str(strength))
        box.press("Enter")
    with_loras, side = _take(page, tmp_path, sessions, "loras")
    assert not np.allclose(with_loras, plain, atol=1e-4)
    assert "LoRA lora_lora ×0.7" in page.inner_text("#takes")
    regions = tuple(Region(r["start"], r["end"]) for r in side["regions"])
    direct = RealEngine().edit(EditRequest(
        model=str(tiny_checkpoint), source=source, regions=regions, prompt="glassy bells", seed=5,
        loras=(LoraSpec(path=str(adapters[0]), strength=0.7), LoraSpec(path=str(adapters[1]), strength=1.3))))
    np.testing.assert_array_equal(with_loras, direct.audio)
    page.close()


def test_encode_ahead_after_loading(studio, browser, tiny_checkpoint, tmp_path):
    """Loading a clip encodes it ahead for the picked model; a Generate right after loading
    works (it waits its turn or takes over), and one after the encode finished skips the encode."""
    from .test_studio_controls import _setup
    url, _ = studio
    page = open_page(browser, url)
    page.set_default_timeout(120_000)
    _setup(page, tmp_path, 3.0)
    drag_region(page, 0.5, 1.0)
    page.click("#generate")  # right after loading, possibly while encoding ahead
    wait_status(page, "take ready")
    upload(page, write_clip(tmp_path / "second.wav", 3.0, seed=5))  # a clip no edit has touched
    wait_text(page, "#ahead", "Encoded ahead (source: second.wav)")
    drag_region(page, 1.8, 2.4)
    page.click("#generate")
    wait_status(page, "take ready")
    assert "already encoded, so the take went straight to the steps" in page.inner_text("#status")
    page.close()
