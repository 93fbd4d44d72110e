"""What was painted is exactly what changes (issue 9): regions dragged and scribbled with the real
mouse at awkward, off-grid pixel positions and several zoom levels, generated over the fake engine
and exported as 32-bit float WAV; the samples that differ from the source lie within 1 ms of the
edges the painter shows. Neighbouring regions are accepted, real overlaps are refused in an error's
style, and the B key works right after picking a take."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from studio import edit
from studio.api import LATENT_HOP, SAMPLE_RATE
from .helpers import (export_current, lane_x, open_page, painted_regions, set_region, set_zoom, take_count,
                      upload, wait_attr, wait_status, write_clip)

TOL = int(round(edit.SNAP_TOLERANCE * SAMPLE_RATE))  # 1 ms in samples
SECONDS = 8.0


@pytest.fixture()
def loaded(studio, browser, tmp_path):
    """A page with an 8 s float clip loaded; yields (page, source (N, 2))."""
    page = open_page(browser, studio[0])
    path = write_clip(tmp_path / "clip.wav", SECONDS, subtype="FLOAT")
    upload(page, path)
    wait_status(page, "Loaded")
    wait_attr(page, "ready", "1")
    yield page, sf.read(path, dtype="float32", always_2d=True)[0]
    page.close()


def mouse_region(page, t0: float, t1: float, jitter: tuple[float, float], scribble: bool) -> None:
    """Press at t0 and release at t1 (plus sub-pixel `jitter`): a drag on the waveform, or a
    zig-zag brush stroke on the spectrogram."""
    before = int(page.get_attribute("#painter .sa3p", "data-regions"))
    x0, y, h = lane_x(page, ".sa3p-spec" if scribble else ".sa3p-wave", t0)
    x1 = x0 + (lane_x(page, ".sa3p-wave", t1)[0] - lane_x(page, ".sa3p-wave", t0)[0])
    x0, x1 = x0 + jitter[0], x1 + jitter[1]
    page.mouse.move(x0, y)
    page.mouse.down()
    for i, x in enumerate(np.linspace(x0, x1, 9)[1:]):
        page.mouse.move(float(x), y + (h / 4) * (i % 2 * 2 - 1 if scribble else 0), steps=2)
    page.mouse.up()
    wait_attr(page, "regions", str(before + 1))


def changed_within_painted(out: np.ndarray, source: np.ndarray, painted) -> None:
    """Every sample that differs from the source lies within 1 ms of a painted region, and every
    sample more than 1 ms inside one differs."""
    n = len(source)
    changed = np.any(out[:n] != source, axis=1)
    near, deep = np.zeros(n, bool), np.zeros(n, bool)
    for a, b in painted:
        a, b = edit.to_samples(a), edit.to_samples(b)
        near[max(0, a - TOL):b + TOL] = True
        deep[a + TOL:max(a + TOL, b - TOL)] = True
    stray = np.flatnonzero(changed & ~near)
    assert stray.size == 0, f"{stray.size} samples changed outside the painted regions, first at {stray[0] / SAMPLE_RATE:.4f} s"
    kept = np.flatnonzero(deep & ~changed)
    assert kept.size == 0, f"{kept.size} painted samples did not change, first at {kept[0] / SAMPLE_RATE:.4f} s"


# (zoom, [(t0, t1, scribble)]): pairs 10 ms apart are neighbours that share a grid cell once snapped;
# a region pressed from right to left starts its drag outside the neighbour it joins.
ROUNDS = [
    (1, [(0.213, 0.87, False), (1.61, 2.503, True), (3.1, 3.4, False), (3.71, 3.41, False),
         (5.77, 6.93, True)]),
    (2, [(0.05, 0.4, False), (1.333, 1.777, False), (2.9, 3.05, True), (4.444, 5.02, False), (6.5, 7.9, True)]),
    (4, [(0.71, 1.0, False), (1.3, 1.01, False), (2.2, 2.36, True), (3.93, 4.4, False), (7.1, 7.35, False)]),
    (8, [(0.51, 0.63, False), (1.04, 1.22, True), (2.6, 2.71, False), (6.02, 6.5, False)]),
    (16, [(4.101, 4.2, False), (4.5, 4.21, False), (5.505, 5.6, True)]),
]


@pytest.mark.parametrize("zoom, strokes", ROUNDS, ids=[f"zoom{z}" for z, _ in ROUNDS])
def test_changed_samples_lie_within_a_millisecond_of_the_painted_edges(loaded, tmp_path, zoom, strokes):
    page, source = loaded
    rng = np.random.default_rng(zoom)
    set_zoom(page, zoom)
    extent = float(page.get_attribute("#painter .sa3p", "data-extent"))  # seconds across the lane
    px = extent / page.locator("#painter .sa3p-lane").bounding_box()["width"] * 2  # 1 px of the lane, with margin
    for t0, t1, scribble in strokes:
        mouse_region(page, t0, t1, tuple(rng.uniform(-0.5, 0.5, 2)), scribble)
    if zoom == 2:  # and one typed off the grid
        set_region(page, 2, start=1.3456, end=1.8012)
        strokes = [*strokes[:1], (1.3456, 1.8012, False), *strokes[2:]]
    painted = painted_regions(page)
    assert len(painted) == len(strokes)
    for (t0, t1, _), (a, b) in zip(strokes, painted):
        lo, hi = min(t0, t1), max(t0, t1)
        assert a <= lo + px and b >= hi - px  # the painter shows at least what was dragged
        for edge in (a, b):  # on the latent grid
            assert edit.to_samples(edge) % LATENT_HOP == 0 or edge == pytest.approx(SECONDS)
    assert page.locator("#painter .sa3p-region.bad").count() == 0  # neighbours are not shown as refused

    page.click("#generate")
    wait_status(page, "take ready")
    out, sr = sf.read(export_current(page, tmp_path / "take.wav", "#export-take"), dtype="float32", always_2d=True)
    assert sr == SAMPLE_RATE and out.shape == source.shape
    changed_within_painted(out, source, painted)


def test_overlap_is_refused_in_an_error_style_and_neighbours_are_accepted(loaded):
    page, _ = loaded
    mouse_region(page, 1.0, 2.0, (0.3, -0.2), False)
    mouse_region(page, 3.0, 2.01, (0.1, 0.4), False)
    mouse_region(page, 4.0, 5.0, (0.0, 0.0), True)
    set_region(page, 3, start=1.5, end=2.6)  # now region 3 overlaps 1 and 2 by far more than a grid cell
    page.wait_for_function("() => document.querySelectorAll('#painter .sa3p-region.bad').length === 3")
    page.click("#generate")
    shown = wait_status(page, "overlap")
    assert shown.startswith("⚠️ Regions 1 and 3 overlap") and "move or shorten one" in shown
    assert "error" in page.get_attribute("#status", "class")
    page.locator("#painter .sa3p-row .del").nth(2).click()
    wait_attr(page, "regions", "2")
    page.click("#generate")
    wait_status(page, "take ready")  # the two neighbours, 10 ms apart, are one edit
    classes = page.get_attribute("#status", "class").split()
    assert "error" not in classes and "ok" in classes
    colour = lambda: page.eval_on_selector("#status", "e => getComputedStyle(e).borderLeftColor")  # noqa: E731
    ok_colour = colour()
    page.click("#accept")  # no take picked after accepting: accepting again is an error
    wait_status(page, "now the current version")
    page.click("#accept")
    wait_status(page, "Pick a take to accept first.")
    assert colour() != ok_colour


def test_b_key_works_right_after_picking_a_take(loaded):
    page, _ = loaded
    mouse_region(page, 2.0, 3.0, (0.2, 0.2), False)
    page.locator("#n-takes input[type=number]").fill("2")
    page.locator("#n-takes input[type=number]").press("Enter")
    page.click("#generate")
    wait_status(page, "2 takes ready")
    assert take_count(page) == 2
    page.locator("#takes label").nth(1).click()  # the focus is now in the take's radio
    wait_status(page, "Comparing with take")
    wait_attr(page, "ready", "1")
    assert page.evaluate("() => document.activeElement.type") == "radio"
    page.keyboard.press("b")
    wait_attr(page, "mode", "B")
    page.keyboard.press("b")
    wait_attr(page, "mode", "A")
