"""Loops and drag-out through the real UI over the fake engine: *Generate a loop* at two tempos and
meters, *Make it loop* of one bar of it, each loop exported at exactly its bars' samples and changed
only across its wrap; every item of the drag-out list carries its file (DownloadURL, text/uri-list)
and its name, and the file behind the URL holds the take's samples."""
from __future__ import annotations

import io
from urllib.parse import parse_qs, urlparse

import numpy as np
import soundfile as sf

from studio import session
from studio.meter import Grid
from studio.ui_loops import file_stem
from .helpers import open_page, screenshot, wait_status, wait_text

SR = 44100


def _session(page, sessions) -> session.Session:
    sid = parse_qs(urlparse(page.url).query)["session"][0]
    return session.open_session(sessions, sid)


def _number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input")
    box.fill(str(value))
    box.press("Tab")


def _exported_loop(page) -> np.ndarray:
    """Press *Export the loop* (32-bit float) and fetch the file it links: (2, N) float32."""
    link = page.locator("#loop-file a").first
    before = link.get_attribute("href") if link.count() else None
    page.get_by_label("WAV · 32-bit float").check()
    page.click("#loop-export")
    wait_status(page, "exactly")
    page.wait_for_function("(old) => { const a = document.querySelector('#loop-file a');"
                           " return a && a.getAttribute('href') !== old; }", arg=before)
    body = page.request.get(page.locator("#loop-file a").first.get_attribute("href")).body()
    return sf.read(io.BytesIO(body), dtype="float32", always_2d=True)[0].T


def _changed_only_across_the_wrap(loop: np.ndarray, original: np.ndarray, take: session.TakeRecord) -> None:
    """The loop differs from ``original`` (the same bars before healing) only in the take's healed pieces."""
    n = loop.shape[1]
    after, before = (round((r.end - r.start) * SR) for r in take.regions)
    differs = np.flatnonzero(np.any(loop.view(np.uint32) != original.view(np.uint32), axis=0))
    assert differs.min() == 0 and differs.max() == n - 1  # the wrap was regenerated
    assert np.all((differs < after) | (differs >= n - before))


def _generate_loop(page, bars: int, bpm: float, meter: str) -> None:
    _number(page, "loop-gen-bars", bars)
    _number(page, "loop-bpm", bpm)
    page.locator("#loop-meter input").fill(meter)
    page.locator("ul[role=listbox] li", has_text=meter).first.click()
    page.click("#loop-generate")
    wait_status(page, f"Healed a {bars}-bar loop at {bpm:g} BPM")


def test_loops_generated_and_made_export_at_exactly_their_bars(studio, browser):
    url, sessions = studio
    page = open_page(browser, url)
    page.locator("#loops > button").first.click()  # open the accordion
    wait_text(page, "#loop-grid", "Set the tempo first")
    page.fill("#loop-prompt textarea", "lofi house")
    for bars, bpm, meter, samples in ((2, 120.0, "4/4", 176400), (3, 93.0, "3/4", 256065)):
        _generate_loop(page, bars, bpm, meter)
        seam = wait_text(page, "#loop-seam", "healed: seam")
        assert "before: seam" in seam and "× typical" in seam
        wait_text(page, "#loop-grid", f"Bars at {bpm:g} BPM in {meter}")
        s = _session(page, sessions)
        take = s.live_takes[-1]
        assert s.current.grid == {"bpm": bpm, "beats_per_bar": int(meter[0]), "beat_unit": 4, "downbeat": 0.0}
        _number(page, "loop-bars", bars)
        _number(page, "loop-from", 1)
        loop = _exported_loop(page)
        assert loop.shape == (2, samples) == (2, Grid(bpm, *Grid.parse_meter(meter)).loop_samples(bars))
        _changed_only_across_the_wrap(loop, session.audio(s, "current"), take)
    # Make it loop: one bar (bar 2) of the 3/4 clip at 93 BPM, healed in place as a take
    _number(page, "loop-bars", 1)
    _number(page, "loop-from", 2)
    page.click("#loop-make")
    wait_status(page, "Healed bars 2–2 across the wrap")
    s = _session(page, sessions)
    take, grid = s.live_takes[-1], session.grid_of(s)
    start, n = round(grid.time(2) * SR), grid.loop_samples(1)
    assert n == 85355 and take.settings["loop"]["start"] == start
    made = session.audio(s, take.id)
    current = session.audio(s, "current")
    assert np.array_equal(made[:, :start], current[:, :start]) and np.array_equal(made[:, start + n:],
                                                                                 current[:, start + n:])
    loop = _exported_loop(page)
    assert loop.shape == (2, n)
    _changed_only_across_the_wrap(loop, current[:, start:start + n], take)
    screenshot(page, "loops-panel")


def _dragged(page, kind: str, index: int = 0) -> dict:
    """Start a drag on the ``index``-th drag-out item of ``kind`` and read back what it carries."""
    return page.evaluate("""([kind, i]) => {
        const a = document.querySelectorAll(`#drag-out a.sa3-drag-item[data-kind=${kind}]`)[i];
        const dt = new DataTransfer();
        a.dispatchEvent(new DragEvent('dragstart', { dataTransfer: dt, bubbles: true, cancelable: true }));
        return { download: dt.getData('DownloadURL'), uri: dt.getData('text/uri-list'), name: a.dataset.name,
                 draggable: a.draggable };
    }""", [kind, index])


def test_each_item_drags_out_as_a_real_file_with_its_name(studio, browser):
    url, sessions = studio
    page = open_page(browser, url)
    page.locator("#loops > button").first.click()
    page.fill("#loop-prompt textarea", "dusty breakbeat")
    _generate_loop(page, 1, 140.0, "4/4")
    page.wait_for_function("() => document.querySelectorAll('#drag-out a.sa3-drag-item[data-kind=take]').length")
    s = _session(page, sessions)
    take = s.live_takes[-1]
    for kind, what in (("take", take.id), ("current", "current")):
        got = _dragged(page, kind)
        mime, name, link = got["download"].split(":", 2)
        assert got["draggable"] and mime == "audio/wav" and name == got["name"] == f"{file_stem(s, what)}.wav"
        assert link == got["uri"] and link.startswith(url.rstrip("/") + "/session-file/")
        data, sr = sf.read(io.BytesIO(page.request.get(link).body()), dtype="float32", always_2d=True)
        assert sr == SR and np.array_equal(data.T, session.audio(s, what))
    assert _dragged(page, "take")["name"] == f"dusty-breakbeat_140bpm_1bar_{take.id}.wav"
    # an export is listed under its own name, which is the take's
    page.get_by_label("WAV · 32-bit float").check()
    page.locator("#takes input[type=radio]").last.check()
    page.click("#export-take")
    wait_status(page, "Exported")
    page.wait_for_function("() => document.querySelectorAll('#drag-out a.sa3-drag-item[data-kind=export]').length")
    got = _dragged(page, "export")
    assert got["name"] == f"dusty-breakbeat_140bpm_1bar_{take.id}.wav" and got["download"].startswith("audio/wav:")
    data = sf.read(io.BytesIO(page.request.get(got["uri"]).body()), dtype="float32", always_2d=True)[0]
    assert np.array_equal(data.T, session.audio(s, take.id))
