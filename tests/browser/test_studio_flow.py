"""The musician's flow through the real UI over the fake engine: load a clip, paint three regions
(two drags on the waveform, one scribble on the spectrogram), type one region's times, generate,
A/B, accept, undo/redo, refresh the page, export; the exported file equals the source sample for
sample outside the regions."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from studio.api import SAMPLE_RATE, Region
from studio.edit import region_mask
from .helpers import (drag_region, export_current, open_page, paint_region, screenshot, set_region, take_count,
                      time_to_x, upload, wait_attr, wait_status, wait_text, write_clip)


def test_paint_generate_compare_accept_export(studio, browser, tmp_path):
    url, sessions = studio
    page = open_page(browser, url)
    source_path = write_clip(tmp_path / "groove.wav", 8.0, subtype="FLOAT")
    source, _ = sf.read(source_path, dtype="float32", always_2d=True)

    upload(page, source_path)
    wait_status(page, "Loaded")
    wait_attr(page, "ready", "1")
    assert "used as is" in page.inner_text("#status")
    screenshot(page, "01-loaded")

    drag_region(page, 0.6, 1.6)      # waveform drag
    drag_region(page, 3.1, 4.0)      # waveform drag
    paint_region(page, 5.5, 6.8)     # spectrogram scribble
    set_region(page, 2, start=3.0, end=4.25)  # numeric edit
    screenshot(page, "02-regions")

    page.fill("#prompt textarea", "glassy bells")
    page.click("#generate")
    wait_status(page, "take ready")
    assert take_count(page) == 1
    wait_attr(page, "mode", "A")
    page.wait_for_function("() => !document.querySelector('#painter .b-btn').disabled")
    screenshot(page, "03-take")

    # A/B at the same playhead: seek by clicking the ruler, switch, the time is kept.
    page.wait_for_function("() => document.querySelector('#painter audio.b').readyState >= 1 && "
                           "document.querySelector('#painter audio.a').readyState >= 1")
    x, y, _ = time_to_x(page, ".sa3p-ruler", 2.5)
    page.mouse.click(x, y)
    t_a = float(page.get_attribute("#painter .sa3p", "data-time"))
    assert abs(t_a - 2.5) < 0.05
    page.click("#painter .b-btn")
    wait_attr(page, "mode", "B")
    assert float(page.get_attribute("#painter .sa3p", "data-time")) == pytest.approx(t_a, abs=1e-3)
    screenshot(page, "04-ab-take")
    page.keyboard.press("b")  # the B key toggles back
    wait_attr(page, "mode", "A")

    page.click("#accept")
    wait_status(page, "now the current version")
    wait_text(page, "#versions", "Version 2 of 2")
    wait_attr(page, "ready", "1")
    page.wait_for_function("() => document.querySelectorAll('#painter .sa3p-edited').length === 3")
    screenshot(page, "05-accepted")
    page.click("#undo")
    wait_text(page, "#versions", "Version 1 of 2")
    screenshot(page, "06-undo")
    page.click("#redo")
    wait_text(page, "#versions", "Version 2 of 2")

    # a refresh restores the session from disk (its id is in the URL)
    assert "session=" in page.url
    page.reload()
    wait_text(page, "#versions", "Version 2 of 2")
    assert take_count(page) == 1
    wait_attr(page, "ready", "1")

    exported_path = export_current(page, tmp_path / "exported.wav")
    screenshot(page, "07-exported")

    sid = page.url.split("session=")[1].split("&")[0]
    sidecar = json.loads(next((sessions / sid).glob("exports/*.json")).read_text())
    assert sidecar["prompt"] == "glassy bells" and isinstance(sidecar["seed"], int)
    regions = [Region(r["start"], r["end"]) for r in sidecar["regions"]]
    assert len(regions) == 3
    assert regions[1].start <= 3.0 < regions[1].start + 0.1 and 4.25 <= regions[1].end < 4.35

    out, sr = sf.read(exported_path, dtype="float32", always_2d=True)
    assert sr == SAMPLE_RATE and out.shape == source.shape
    outside = ~region_mask(len(source), regions)
    assert np.array_equal(out[outside], source[outside])  # sample for sample
    for r in regions:
        a, b = int(round(r.start * sr)), int(round(r.end * sr))
        assert not np.allclose(out[a:b], source[a:b])  # and every region was regenerated
    page.close()


def test_prompt_source_region_gestures_zoom_space_and_continuation(studio, browser):
    url, _ = studio
    page = open_page(browser, url)
    page.get_by_role("tab", name="Prompt").click()
    page.fill("#src-prompt textarea", "slow ambient pads")
    page.locator("#src-seconds input[type=number]").fill("4")
    page.locator("#src-seconds input[type=number]").press("Enter")
    page.click("#src-generate")
    wait_status(page, "Generated a 4 s source")
    wait_attr(page, "ready", "1")
    assert float(page.get_attribute("#painter .sa3p", "data-duration")) == pytest.approx(4.0, abs=1e-3)

    drag_region(page, 1.0, 2.0)
    region = page.locator("#painter .sa3p-region").first
    start = lambda: float(page.locator("#painter .sa3p-row input.start").first.input_value())  # noqa: E731
    end = lambda: float(page.locator("#painter .sa3p-row input.end").first.input_value())  # noqa: E731
    s0, e0 = start(), end()
    box = region.bounding_box()  # move: drag the body 0.5 s to the right
    x_half = time_to_x(page, ".sa3p-wave", 0.5)[0] - time_to_x(page, ".sa3p-wave", 0.0)[0]
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + x_half, box["y"] + 40, steps=5)
    page.mouse.up()
    page.wait_for_function(f"() => parseFloat(document.querySelector('#painter .sa3p-row input.start').value) > {s0 + 0.3}")
    assert end() - start() == pytest.approx(e0 - s0, abs=2e-3)  # moved in whole grid steps: same length
    handle = page.locator("#painter .sa3p-region .h.r").first.bounding_box()  # resize: right edge +0.5 s
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + 40)
    page.mouse.down()
    page.mouse.move(handle["x"] + handle["width"] / 2 + x_half, handle["y"] + 40, steps=5)
    page.mouse.up()
    page.wait_for_function(f"() => parseFloat(document.querySelector('#painter .sa3p-row input.end').value) > {e0 + 0.8}")
    page.keyboard.press("Delete")  # the moved region is selected
    wait_attr(page, "regions", "0")
    drag_region(page, 0.5, 1.0)
    page.click("#painter .sa3p-row .del")
    wait_attr(page, "regions", "0")

    lane = lambda: page.locator("#painter .sa3p-lane").bounding_box()["width"]  # noqa: E731
    w1 = lane()
    page.click("#painter .zin")
    wait_attr(page, "zoom", "2")
    assert lane() == pytest.approx(2 * w1, rel=0.02)
    page.click("#painter .zfit")
    wait_attr(page, "zoom", "1")

    page.wait_for_function("() => document.querySelector('#painter audio.a').readyState >= 2")
    page.keyboard.press("Space")
    wait_text(page, "#painter .play-btn", "Pause")
    page.keyboard.press("Space")
    wait_text(page, "#painter .play-btn", "Play")

    # continuation: drag from just past the end into the striped area
    x0, y, _ = time_to_x(page, ".sa3p-wave", 4.05)
    x1, _, _ = time_to_x(page, ".sa3p-wave", 5.9)
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(x1, y, steps=6)
    page.mouse.up()
    page.wait_for_function("() => parseFloat(document.querySelector('#painter .sa3p').dataset.cont) > 1.5")
    cont = float(page.get_attribute("#painter .sa3p", "data-cont"))
    page.click("#generate")
    wait_status(page, "take ready")
    label = page.locator("#takes label").last.inner_text()
    assert f"4.0–{4 + cont:.1f}s" in label
    screenshot(page, "08-continuation")

    other = open_page(browser, url)  # a second user: no session until they store something
    assert "session=" not in other.url and "none yet" in other.inner_text("#session-info")
    assert take_count(other) == 0 and take_count(page) == 1
    other.close()
    page.close()
