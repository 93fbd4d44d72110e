"""Every bad input that can reach the UI shows a readable sentence and leaves the session's takes
(and current version) as they were. The studio runs with small limits (1 MB, 20 s) so the
"huge file" cases stay small (a file over 1 MB is refused by Gradio itself: test_uploads.py);
engine failures are simulated by the fake engine's prompt tags."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from .helpers import (drag_region, open_page, screenshot, set_region, start_app, take_count, upload,
                      wait_attr, wait_status, wait_text, write_clip)


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    """A studio page with one clip loaded and one take made from it."""
    sessions = tmp_path_factory.mktemp("sessions")
    proc, url = start_app(sessions, "--max-upload-mb", "1", "--max-seconds", "20")
    page = open_page(browser, url)
    upload(page, write_clip(tmp_path_factory.mktemp("clips") / "base.wav", 3.0))
    wait_attr(page, "ready", "1")
    drag_region(page, 0.5, 1.2)
    page.click("#generate")
    wait_status(page, "take ready")
    assert take_count(page) == 1
    yield page
    page.close()
    proc.terminate()
    proc.wait(timeout=30)


def expect_refused(page, text: str, version: str = "Version 1 of 1") -> None:
    status = wait_status(page, text)
    assert status.startswith("⚠️"), status
    assert take_count(page) == 1
    wait_text(page, "#versions", version)


def _broken(p):
    p.write_bytes(b"this is not audio " * 200)


def _long(p):
    sf.write(p, 0.1 * np.sin(np.arange(30 * 8000) / 10.0), 8000, subtype="PCM_16")


def _silent(p):
    write_clip(p, 2.0, silent=True)


def _empty(p):
    sf.write(p, np.zeros((0, 2), dtype=np.float32), 44100)


@pytest.mark.parametrize("name, make, message", [
    ("broken.wav", _broken, "could not be read as audio"),
    ("long.wav", _long, "the studio takes clips up to 20 s"),
    ("silent.wav", _silent, "is silent"),
    ("empty.wav", _empty, "contains no audio"),
])
def test_bad_files_are_refused(page, tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    upload(page, path)
    expect_refused(page, message)
    if name == "broken.wav":
        screenshot(page, "10-error-unreadable-file")


def _clear(page):
    page.click("#painter .sa3p-foot .clear")
    wait_attr(page, "regions", "0")


@pytest.mark.parametrize("case, message", [
    ("outside", "lies outside the clip"),
    ("zero", "has zero length"),
    ("overlap", "overlap"),
])
def test_bad_regions_are_refused(page, case, message):
    _clear(page)
    drag_region(page, 0.4, 0.9)
    if case == "outside":
        set_region(page, 1, end=7.5)
    elif case == "zero":
        set_region(page, 1, start=0.8, end=0.7)  # end before start (a valid edge would snap)
    else:
        drag_region(page, 1.5, 2.2)
        set_region(page, 2, start=0.7)
    page.click("#generate")
    expect_refused(page, message)
    if case == "overlap":
        screenshot(page, "11-error-overlapping-regions")


@pytest.mark.parametrize("tag, message", [
    ("missing-weights", "weights of this model are not on this machine"),
    ("no-network", "no network connection"),
    ("gated", "set HF_TOKEN"),
])
def test_engine_failures_are_explained(page, tag, message):
    _clear(page)
    drag_region(page, 0.4, 0.9)
    page.fill("#prompt textarea", f"[fail:{tag}] strings")
    page.click("#generate")
    expect_refused(page, message)


def test_cancel_keeps_takes(page):
    _clear(page)
    drag_region(page, 0.4, 0.9)
    page.fill("#prompt textarea", "[slow] strings")
    steps = page.locator("#steps input[type=number]")
    steps.fill("60")
    steps.press("Enter")
    page.click("#generate")
    page.wait_for_function("() => document.body.innerText.includes('Take 1/1 · steps')")
    screenshot(page, "12-progress")
    page.click("#cancel")
    wait_status(page, "Cancelled after 0 of 1 takes")
    assert take_count(page) == 1
    steps.fill("8")
    steps.press("Enter")


def test_odd_rate_and_channels_are_converted_with_a_note(page, tmp_path):
    path = tmp_path / "three-channels.wav"
    write_clip(path, 2.0, sr=22050, channels=3)
    upload(page, path)
    status = wait_status(page, "Converted")
    assert "kept the first 2 of 3 channels" in status and "22050 Hz → 44100 Hz" in status
    assert take_count(page) == 1
    wait_text(page, "#versions", "Version 2 of 2")
