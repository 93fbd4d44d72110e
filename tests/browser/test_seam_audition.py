"""The seam audition through the real UI over the fake engine: make a take, open *Seams*, pick a
region border, and hear A (current) and B (the take) looped around it: both players hold the
loop's samples exactly (fetched by their URL), equal before the region and different inside it."""
from __future__ import annotations

import io
from urllib.parse import parse_qs, urlparse

import numpy as np
import soundfile as sf

from studio import edit, seams, session
from .helpers import drag_region, open_page, screenshot, upload, wait_attr, wait_status, wait_text, write_clip

SR = 44100


def _loops(page, lo: int, hi: int, old: tuple) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(A, B, their URLs): the (2, N) float32 audio the loop players hold once the note says they
    loop samples [lo, hi) and their URLs differ from ``old``."""
    wait_text(page, "#seam-note", f"Looping {lo / SR:.2f}–{hi / SR:.2f} s")
    (a, a_url), (b, b_url) = (_player(page, p, u) for p, u in zip(("seam-a", "seam-b"), old))
    return a, b, (a_url, b_url)


def _player(page, player: str, old: str | None) -> tuple[np.ndarray, str]:
    page.wait_for_function("([p, old]) => { const a = document.querySelector(`#${p} a[download]`);"
                           " return a && a.getAttribute('href') !== old; }", arg=[player, old])
    href = page.locator(f"#{player} a[download]").get_attribute("href")
    response = page.request.get(href)
    assert response.ok
    data, sr = sf.read(io.BytesIO(response.body()), dtype="float32", always_2d=True)
    assert sr == SR
    return data.T, href


def _set(page, slider: str, value: float) -> None:
    box = page.locator(f"#{slider} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def _pick(page, label_start: str) -> None:
    page.click("#seam-pick input")
    page.locator("ul[role=listbox] li", has_text=label_start).first.click()


def test_a_border_loops_as_a_and_b(studio, browser, tmp_path):
    url, sessions = studio
    page = open_page(browser, url)
    page.locator("#seams > button").first.click()  # open the accordion
    wait_text(page, "#seam-note", "Make a take first")
    clip = write_clip(tmp_path / "clip.wav", 8.0, subtype="FLOAT")
    source = sf.read(clip, dtype="float32", always_2d=True)[0].T
    upload(page, clip)
    wait_status(page, "Loaded")
    wait_attr(page, "ready", "1")
    drag_region(page, 5.0, 7.0)
    page.click("#generate")
    wait_status(page, "take ready")
    wait_text(page, "#seam-note", "2 borders in take 1")

    s = session.open_session(sessions, parse_qs(urlparse(page.url).query)["session"][0])
    take = session.audio(s, s.live_takes[0].id)
    start, end = (edit.to_samples(x) for x in (s.live_takes[0].regions[0].start, s.live_takes[0].regions[0].end))
    page.click("#seam-pick input")
    options = page.locator("ul[role=listbox] li")
    options.first.wait_for()
    borders = [text.split(" · jump ") for text in options.all_inner_texts()]  # each with its seam (studio/fit.py)
    assert [b[0] for b in borders] == [f"Region 1 start · {start / SR:.2f} s", f"Region 1 end · {end / SR:.2f} s"]
    assert all(len(b) == 2 and "× the original's, " in b[1] and b[1].endswith(" dB") for b in borders)
    options.first.click()
    lo, hi = start - 2 * SR, start + 2 * SR  # 2 s of pre-roll and 2 s after, the defaults
    a, b, urls = _loops(page, lo, hi, (None, None))
    assert a.shape == b.shape == (2, hi - lo)
    np.testing.assert_array_equal(a, source[:, lo:hi])
    np.testing.assert_array_equal(b, take[:, lo:hi])
    k = start - lo  # the border's sample in the loop
    np.testing.assert_array_equal(a[:, :k], b[:, :k])  # before the region B is the current version
    assert not np.array_equal(a[:, k:], b[:, k:])      # inside it B is the new audio
    screenshot(page, "seam-audition")

    # A ⇄ B: the one playing stops and the other plays on from the same time, both on loop
    players = "['#seam-a audio', '#seam-b audio'].map((s) => document.querySelector(s))"
    page.wait_for_function(f"() => {players}.every((x) => x.loop && x.readyState >= 2)")
    page.click("#seam-swap")  # neither plays: B starts
    page.wait_for_function(f"() => {{ const [a, b] = {players}; return a.paused && !b.paused && b.currentTime > 0; }}")
    page.evaluate(f"() => {{ const [a, b] = {players}; b.currentTime = 1.25; }}")  # the musician seeks B
    page.click("#seam-swap")
    a_paused, b_paused, a_time, b_time = page.evaluate(
        f"() => {{ const [a, b] = {players}; return [a.paused, b.paused, a.currentTime, b.currentTime]; }}")
    assert not a_paused and b_paused and 1.25 <= b_time and 1.25 <= a_time < 4.0  # A took over where B stopped
    page.click("#seam-swap")
    page.wait_for_function(f"() => {{ const [a, b] = {players}; return a.paused && !b.paused; }}")

    # the region's end, with 1 s of pre-roll: 2 s after it would pass the clip's end, so it stops there
    _set(page, "seam-pre", 1)
    _pick(page, "Region 1 end")
    lo, hi = seams.loop_span(end, take.shape[1], pre=1.0)
    assert (lo, hi) == (end - SR, take.shape[1])
    a, b, urls = _loops(page, lo, hi, urls)
    np.testing.assert_array_equal(a, source[:, lo:hi])
    np.testing.assert_array_equal(b, take[:, lo:hi])
    assert not np.array_equal(a[:, :SR], b[:, :SR])
    np.testing.assert_array_equal(a[:, SR:], b[:, SR:])  # after the region the take is the source again

    _set(page, "seam-post", 0.5)  # the loop follows the sliders
    a, b, _ = _loops(page, end - SR, end + SR // 2, urls)
    assert a.shape == b.shape == (2, SR + SR // 2)
    np.testing.assert_array_equal(b, take[:, end - SR:end + SR // 2])
    page.close()
