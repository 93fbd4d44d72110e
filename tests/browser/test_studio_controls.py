"""The toolkit's controls through the real UI over the fake engine, each checked against the engine
called directly: -base guidance (CFG, APG, negative prompt), extend before the start (typed, or dragged
with the real mouse into the striped area before the track), restyle from a guide file; the exported
side-car is the take's recipe (its request fields, the guide kept)."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import soundfile as sf

from studio import edit, recipe
from studio.api import LATENT_HOP, EditRequest, Guidance, Region
from studio.fake_engine import FakeEngine
from .helpers import (drag_region, export_current, lane_x, open_page, set_zoom, upload, wait_attr, wait_status,
                      wait_text, write_clip)


def _setup(page, tmp_path, seconds=4.0):
    path = write_clip(tmp_path / "clip.wav", seconds, subtype="FLOAT")
    upload(page, path)
    wait_status(page, "Loaded")
    wait_attr(page, "ready", "1")
    page.uncheck("#random-seed input")
    page.fill("#seed input", "5")
    page.fill("#prompt textarea", "glassy bells")
    return sf.read(path, dtype="float32", always_2d=True)[0].T


def _take(page, tmp_path, sessions, name):
    """Generate one take and export it (32-bit float WAV); its audio and side-car."""
    count = page.locator("#takes input[type=radio]").count()
    page.click("#generate")
    wait_status(page, "take ready")
    page.wait_for_function("n => document.querySelectorAll('#takes input[type=radio]').length === n", arg=count + 1)
    page.locator("#takes input[type=radio]").last.check()
    page.get_by_label("WAV · 32-bit float").check()
    page.click("#export-take")
    wait_status(page, "Exported")
    link = page.locator("#exported a").first
    page.wait_for_function("n => (document.querySelector('#exported a')?.href || '').includes(n)",
                           arg=f"t{count + 1:03d}")
    out = tmp_path / f"{name}.wav"
    out.write_bytes(page.request.get(link.get_attribute("href")).body())
    sid = parse_qs(urlparse(page.url).query)["session"][0]
    sidecar = json.loads(max((sessions / sid / "exports").glob("*.json"), key=lambda p: p.stat().st_mtime).read_text())
    return sf.read(out, dtype="float32", always_2d=True)[0].T, sidecar


def _set_slider(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_guidance_section_reaches_the_engine(studio, browser, tmp_path):
    page = open_page(browser, studio[0])
    source = _setup(page, tmp_path)
    assert not page.locator("#guidance").is_visible()  # post-trained models need no guidance
    page.locator("#model input").fill("Small · music · base")
    page.keyboard.press("Enter")
    page.locator("#guidance").wait_for(state="visible")
    assert page.locator("#steps input[type=number]").input_value() == "50"
    drag_region(page, 1.0, 2.0)
    default, side = _take(page, tmp_path, studio[1], "default")
    regions = tuple(Region(r["start"], r["end"]) for r in side["regions"])

    def direct(**g):
        return FakeEngine().edit(EditRequest(model="small-music-base", source=source, regions=regions,
                                             prompt="glassy bells", seed=5, steps=50, guidance=Guidance(**g))).audio
    np.testing.assert_array_equal(default, direct(cfg_scale=7.0))
    _set_slider(page, "cfg", 3)
    _set_slider(page, "apg", 0.5)
    page.fill("#negative textarea", "distortion")
    changed, side = _take(page, tmp_path, studio[1], "changed")
    np.testing.assert_array_equal(changed, direct(cfg_scale=3.0, apg_scale=0.5, negative_prompt="distortion"))
    # the exported side-car is the take's recipe: every request field, the source named by file and hash
    assert side["recipe"] == 1 and side["kind"] == "edit" and (side["model"], side["seed"], side["steps"]) == (
        "small-music-base", 5, 50)
    assert side["guidance"] == {"cfg_scale": 3.0, "apg_scale": 0.5, "negative_prompt": "distortion"}
    assert side["source"]["sha256"] == recipe.audio_hash(source) and Path(side["source"]["file"]).is_file()
    assert not np.array_equal(changed, default)
    page.close()


def test_extend_start_keeps_the_track_after_the_intro(studio, browser, tmp_path):
    page = open_page(browser, studio[0])
    source = _setup(page, tmp_path, 3.0)
    page.fill("#extend-start input", "1.5")
    audio, side = _take(page, tmp_path, studio[1], "intro")
    intro = int(1.5 * 44100)
    assert audio.shape == (2, intro + source.shape[1])
    np.testing.assert_array_equal(audio[:, intro:], source)
    assert np.abs(audio[:, :intro]).max() > 0
    page.close()


def _intro(page) -> float:
    return float(page.get_attribute("#painter .sa3p", "data-intro"))


def _wait_field(page, seconds: float) -> None:
    """The typed field shows `seconds` (to the millisecond, as the painter writes it there)."""
    page.wait_for_function("v => Math.abs(parseFloat(document.querySelector('#extend-start input').value) - v) < 5e-4",
                           arg=seconds)


def _mouse_drag(page, t0: float, t1: float, jitter: float) -> None:
    """Press on the waveform lane at t0 and release at t1 (seconds; < 0 is before the track), with a
    sub-pixel `jitter`, moving the real mouse in small steps."""
    x0, y, _ = lane_x(page, ".sa3p-wave", t0)
    x1 = x0 + lane_x(page, ".sa3p-wave", t1)[0] - lane_x(page, ".sa3p-wave", t0)[0]
    page.mouse.move(x0 + jitter, y)
    page.mouse.down()
    page.mouse.move(x1 + jitter, y, steps=8)
    page.mouse.up()


@pytest.mark.parametrize("zoom, to", [(1, -1.237), (4, -0.6213)])
def test_an_intro_dragged_before_the_track_keeps_the_track_after_it(studio, browser, tmp_path, zoom, to):
    page = open_page(browser, studio[0])
    source = _setup(page, tmp_path, 3.0)
    set_zoom(page, zoom)
    _mouse_drag(page, -0.043, to, jitter=0.37)  # from just before the track's start, leftwards
    page.wait_for_function("() => parseFloat(document.querySelector('#painter .sa3p').dataset.intro) > 0")
    intro, n = _intro(page), edit.to_samples(_intro(page))
    extent = float(page.get_attribute("#painter .sa3p", "data-extent"))
    px = extent / page.locator("#painter .sa3p-lane").bounding_box()["width"]  # seconds in 1 px of the lane
    assert n % LATENT_HOP == 0  # on the latent grid: the one snapping rule, outward
    assert -to - 2 * px <= intro < -to + edit.GRID_SECONDS + 2 * px
    _wait_field(page, intro)  # the drag wrote the typed field
    assert page.locator("#painter .sa3p-cont.pre").inner_text() == f"intro +{intro:.2f} s"

    audio, side = _take(page, tmp_path, studio[1], f"dragged-intro-{zoom}")
    assert audio.shape == (2, n + source.shape[1])  # longer by the snapped intro
    np.testing.assert_array_equal(audio[:, n:], source)  # and the track after it bit for bit
    assert np.abs(audio[:, :n]).max() > 0
    assert side["extend_start_seconds"] == pytest.approx(intro)  # the side-car (the recipe) says so

    wait_attr(page, "ready", "1")  # the take is B: it starts before the track, so A/B keep the same playhead
    page.wait_for_function("() => document.querySelector('#painter audio.b').readyState >= 2")
    x, y, _ = lane_x(page, ".sa3p-ruler", 1.0)
    page.mouse.click(x, y)
    t = float(page.get_attribute("#painter .sa3p", "data-time"))
    page.click("#painter .b-btn")
    wait_attr(page, "mode", "B")
    assert page.evaluate("() => document.querySelector('#painter audio.b').currentTime") == pytest.approx(t + intro, abs=2e-3)

    page.click("#accept")
    wait_status(page, "now the current version")
    wait_attr(page, "intro", "0")  # the next edit starts without an intro, and the field says so
    _wait_field(page, 0.0)
    current, sr = sf.read(export_current(page, tmp_path / f"current-{zoom}.wav"), dtype="float32", always_2d=True)
    np.testing.assert_array_equal(current.T, audio)
    page.close()


def test_the_typed_intro_is_drawn_and_can_be_removed(studio, browser, tmp_path):
    page = open_page(browser, studio[0])
    _setup(page, tmp_path, 3.0)
    box = page.locator("#extend-start input")
    box.fill("2.5")
    wait_attr(page, "intro", "2.5")  # typing draws it in the painter
    assert page.locator("#painter .sa3p-cont.pre").inner_text() == "intro +2.50 s"
    x, y, _ = lane_x(page, ".sa3p-wave", -1.0)
    page.mouse.click(x, y)  # a click on it removes it
    wait_attr(page, "intro", "0")
    _wait_field(page, 0.0)
    assert page.locator("#painter .sa3p-cont.pre").count() == 0
    box.fill("45")  # more than the studio allows: clamped, and the field shows what is used
    wait_attr(page, "intro", str(int(edit.MAX_INTRO_SECONDS)))
    _wait_field(page, edit.MAX_INTRO_SECONDS)
    _mouse_drag(page, -0.5, 0.8, jitter=0.21)  # dragged back over the track: no intro
    wait_attr(page, "intro", "0")
    _wait_field(page, 0.0)
    box.fill("1.5")
    wait_attr(page, "intro", "1.5")
    box.fill("")  # a cleared field asks for none
    wait_attr(page, "intro", "0")
    page.close()


def test_restyle_from_a_guide_file(studio, browser, tmp_path):
    page = open_page(browser, studio[0])
    source = _setup(page, tmp_path)
    guide_path = write_clip(tmp_path / "guide.wav", 4.0, seed=9, subtype="FLOAT")
    page.set_input_files("#guide input[type=file]", str(guide_path))
    drag_region(page, 1.0, 2.5)
    page.click("#generate")
    wait_status(page, "guide file only shapes the take when the strength is below 1")
    _set_slider(page, "strength", 0.5)
    audio, side = _take(page, tmp_path, studio[1], "guided")
    regions = tuple(Region(r["start"], r["end"]) for r in side["regions"])
    guide = sf.read(guide_path, dtype="float32", always_2d=True)[0].T
    expected = FakeEngine().edit(EditRequest(model="small-music", source=source, regions=regions, prompt="glassy bells",
                                             seed=5, strength=0.5, guide=guide)).audio
    np.testing.assert_array_equal(audio, expected)
    assert side["strength"] == 0.5 and side["guide"]["sha256"] == recipe.audio_hash(guide)
    assert np.array_equal(sf.read(side["guide"]["file"], dtype="float32", always_2d=True)[0].T, guide)  # kept
    page.close()


def test_mp3_export(studio, browser, tmp_path):
    page = open_page(browser, studio[0])
    source = _setup(page, tmp_path, 3.0)
    page.get_by_label("MP3").check()
    page.click("#export-current")
    wait_status(page, ".mp3")
    link = page.locator("#exported a").first
    page.wait_for_function("() => (document.querySelector('#exported a')?.href || '').endsWith('.mp3')")
    out = tmp_path / "current.mp3"
    out.write_bytes(page.request.get(link.get_attribute("href")).body())
    audio, sr = sf.read(out, dtype="float32", always_2d=True)
    assert sr == 44100 and abs(audio.shape[0] - source.shape[1]) < 4096  # MP3 frames pad the end
    page.close()


def test_the_cost_is_shown_before_generate(studio, browser, tmp_path):
    page = open_page(browser, studio[0])
    _setup(page, tmp_path, 4.0)
    drag_region(page, 1.0, 2.0)
    wait_text(page, "#cost", "The model will hear 4 s of audio")  # a short track: all of it
    page.locator("#context input").fill("5 s each side")
    page.keyboard.press("Enter")
    _take(page, tmp_path, studio[1], "costed")
    wait_text(page, "#cost", "a take takes about")
    page.close()
