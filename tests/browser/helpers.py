"""Helpers of the browser tests: start the studio, drive the painter, wait on conditions."""
from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from playwright import sync_api

from studio import edit

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(sessions: Path, *extra: str, timeout: float = 120.0, fake: bool = True,
              env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start the studio (over the fake engine unless ``fake=False``; ``env``: variables set for it
    besides this process's) and return (process, url) once it says it is serving."""
    port = free_port()
    cmd = [sys.executable, str(ROOT / "app.py"), *(["--fake-engine"] if fake else []), "--port", str(port),
           "--sessions", str(sessions), *extra]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline, lines = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        if not sel.select(timeout=deadline - time.monotonic()):
            break
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Running on local URL" in line:
            return proc, f"http://127.0.0.1:{port}/"
    proc.kill()
    raise RuntimeError("the studio did not start:\n" + "".join(lines))


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    # the page has loaded once the session line is shown (a new visitor has no session until they store)
    page.wait_for_function("() => (document.querySelector('#session-info')?.innerText || '').includes('Session')")
    return page


def wait_text(page, selector: str, text: str) -> str:
    try:
        page.wait_for_function("([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)",
                               arg=[selector, text])
    except sync_api.TimeoutError:
        shown = page.evaluate("s => document.querySelector(s)?.innerText", selector)
        raise AssertionError(f"{selector} never showed {text!r}; it shows {shown!r}") from None
    return page.inner_text(selector)


def wait_status(page, text: str) -> str:
    return wait_text(page, "#status", text)


def wait_attr(page, name: str, value: str) -> None:
    page.wait_for_function("([n, v]) => document.querySelector('#painter .sa3p')?.dataset[n] === v",
                           arg=[name, value])


def upload(page, path: Path) -> None:
    page.set_input_files("#upload input[type=file]", str(path))


def lane_fraction(page, t: float) -> float:
    """Where time t (seconds on the track's axis; < 0 is before the track) lies across the lane, 0–1."""
    start = float(page.get_attribute("#painter .sa3p", "data-start"))
    return (t - start) / float(page.get_attribute("#painter .sa3p", "data-extent"))


def time_to_x(page, selector: str, t: float) -> tuple[float, float, float]:
    """(x, y_mid, height) of time t on the painter lane element `selector`."""
    lane = page.locator(f"#painter {selector}")
    lane.scroll_into_view_if_needed()
    box = lane.bounding_box()
    return box["x"] + lane_fraction(page, t) * box["width"], box["y"] + box["height"] / 2, box["height"]


def set_zoom(page, zoom: int) -> None:
    """Zoom the painter to `zoom` (1, 2, 4, 8 or 16) with its buttons."""
    page.click("#painter .zfit")
    wait_attr(page, "zoom", "1")
    for z in (2, 4, 8, 16)[: int(np.log2(zoom))]:
        page.click("#painter .zin")
        wait_attr(page, "zoom", str(z))


def lane_x(page, selector: str, t: float) -> tuple[float, float, float]:
    """(x, y_mid, height) in the viewport of time t on lane part `selector`, scrolling the painter
    so that t is in view (at high zoom the lane is many screens wide)."""
    page.locator(f"#painter {selector}").scroll_into_view_if_needed()  # the page, too, may have scrolled away
    page.evaluate("""(f) => { const root = document.querySelector('#painter .sa3p');
        const sc = root.querySelector('.sa3p-scroll'), lane = root.querySelector('.sa3p-lane');
        const x = f * lane.getBoundingClientRect().width;
        if (x < sc.scrollLeft + 40 || x > sc.scrollLeft + sc.clientWidth - 40) sc.scrollLeft = x - sc.clientWidth / 3; }""",
                  lane_fraction(page, t))
    box = page.locator(f"#painter {selector}").bounding_box()
    return box["x"] + lane_fraction(page, t) * box["width"], box["y"] + box["height"] / 2, box["height"]


def drag_region(page, t0: float, t1: float) -> None:
    """Press on the waveform at t0, drag to t1, release."""
    before = int(page.get_attribute("#painter .sa3p", "data-regions"))
    x0, y, _ = time_to_x(page, ".sa3p-wave", t0)
    x1, _, _ = time_to_x(page, ".sa3p-wave", t1)
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(x1, y, steps=8)
    page.mouse.up()
    wait_attr(page, "regions", str(before + 1))


def paint_region(page, t0: float, t1: float) -> None:
    """Scribble across the spectrogram from t0 to t1 (up and down, like a brush)."""
    before = int(page.get_attribute("#painter .sa3p", "data-regions"))
    x0, y, h = time_to_x(page, ".sa3p-spec", t0)
    x1, _, _ = time_to_x(page, ".sa3p-spec", t1)
    page.mouse.move(x0, y)
    page.mouse.down()
    for i, x in enumerate(np.linspace(x0, x1, 12)):
        page.mouse.move(float(x), y + (h / 4) * (1 if i % 2 else -1), steps=2)
    page.mouse.up()
    wait_attr(page, "regions", str(before + 1))


def set_region(page, index: int, start: float | None = None, end: float | None = None) -> None:
    """Type start/end into row `index` (1-based) of the painter's region list; the painter shows
    the typed edge snapped by studio.edit's rule (to the millisecond), or as typed while the
    region is not valid (so Python can say why)."""
    row = page.locator("#painter .sa3p-row").nth(index - 1)
    duration = float(page.get_attribute("#painter .sa3p", "data-duration"))
    for cls, value in (("start", start), ("end", end)):
        if value is not None:
            box = row.locator(f"input.{cls}")
            box.fill(str(value))
            box.press("Tab")  # change fires on blur; the list re-renders from the new state
            snapped = round(edit.snap_edge(value, duration, up=cls == "end"), 3)
            page.wait_for_function(
                "([i, c, vs]) => vs.some((v) => Math.abs(parseFloat(document.querySelectorAll('#painter .sa3p-row')"
                "[i - 1].querySelector('input.' + c).value) - v) < 1e-6)", arg=[index, cls, [snapped, value]])


def painted_regions(page) -> list[tuple[float, float]]:
    """(start, end) seconds of each region as the painter holds and draws them, in its order."""
    return [tuple(r) for r in json.loads(page.get_attribute("#painter .sa3p", "data-painted"))]


def export_current(page, path: Path, button: str = "#export-current") -> Path:
    """Export the current version (or, with ``button="#export-take"``, the picked take) as 32-bit
    float WAV and download it through the browser to ``path``."""
    link = page.locator("#exported a").first
    before = link.get_attribute("href") if link.count() else None
    page.get_by_label("WAV · 32-bit float").check()
    page.click(button)
    wait_status(page, "Exported")
    page.wait_for_function("(old) => { const a = document.querySelector('#exported a');"
                           " return a && a.getAttribute('href') !== old; }", arg=before)
    response = page.request.get(link.get_attribute("href"))
    assert response.ok
    path.write_bytes(response.body())
    return path


def take_count(page) -> int:
    return page.locator("#takes input[type=radio]").count()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def write_clip(path: Path, seconds: float, sr: int = 44100, channels: int = 2, seed: int = 0,
               subtype: str = "PCM_16", silent: bool = False) -> Path:
    """A test clip: plucked tones over soft noise (or digital silence)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    if silent:
        x = np.zeros((n, channels))
    else:
        tone = np.sin(2 * np.pi * 220 * t) * np.exp(-(t % 0.5) * 6)
        x = 0.4 * tone[:, None] + 0.05 * rng.standard_normal((n, channels))
    sf.write(path, x.astype(np.float32), sr, subtype=subtype)
    return path
