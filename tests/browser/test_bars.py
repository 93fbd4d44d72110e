"""Editing in bars (issue 19): a tempo typed, tapped and dragged on the ruler is kept by the session;
regions dragged with bar snapping at two zoom levels change exactly the bars' snapped spans (from
the exported audio); bars typed give the same regions as bars dragged; the loop player wraps
without a gap (one looping Web Audio node, never restarted)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from studio import edit
from studio.meter import Grid
from .helpers import (export_current, lane_x, open_page, painted_regions, set_zoom, upload, wait_attr, wait_status,
                      wait_text, write_clip)
from .test_painter_edges import changed_within_painted, mouse_region

SECONDS = 8.0
MS = 1e-3


@pytest.fixture()
def loaded(studio, browser, tmp_path):
    """A page with an 8 s float clip loaded and its tempo found; yields (page, source (N, 2))."""
    page = open_page(browser, studio[0])
    path = write_clip(tmp_path / "clip.wav", SECONDS, subtype="FLOAT")
    upload(page, path)
    wait_status(page, "Loaded")
    wait_attr(page, "ready", "1")
    # the tracker's first run in a fresh studio compiles librosa's kernels: slow on a busy 2-core machine
    page.wait_for_function("() => !document.querySelector('#tempo-note').innerText.includes('Finding')",
                           timeout=180_000)
    yield page, sf.read(path, dtype="float32", always_2d=True)[0]
    page.close()


def set_grid(page, bpm: float, meter: str, downbeat: float) -> None:
    """Type the tempo, pick the meter, type bar 1's time; each is stored as it is given."""
    page.fill("#bpm input", str(bpm))
    page.press("#bpm input", "Enter")
    wait_text(page, "#tempo-note", f"{bpm:g} BPM")
    page.click("#meter input")
    page.locator("ul[role=listbox] li", has_text=meter).first.click()
    wait_text(page, "#tempo-note", f"BPM · {meter}")
    page.fill("#downbeat input", str(downbeat))
    page.press("#downbeat input", "Enter")
    wait_text(page, "#tempo-note", f"bar 1 at {downbeat:.3f} s")


def snap_to(page, unit: str) -> None:
    page.locator("#snap").get_by_label(unit).check()
    wait_status(page, f"Regions snap to {unit}")
    wait_attr(page, "snap", {"bars": "bar", "beats": "beat"}[unit])  # the painter has the lines


def test_regions_dragged_with_bar_snapping_change_exactly_the_bars_and_typed_bars_are_the_same(loaded, tmp_path):
    page, source = loaded
    grid = Grid(120.0, 4, 4, downbeat=0.25)  # bars at 0.25, 2.25, 4.25, 6.25 s
    set_grid(page, 120, "4/4", 0.25)
    snap_to(page, "bars")
    bars = grid.lines(SECONDS, "bar")
    mouse_region(page, 0.43, 2.07, (0.3, -0.2), False)   # bar 1, dragged at zoom 1
    set_zoom(page, 2)
    mouse_region(page, 4.12, 6.41, (-0.4, 0.1), True)    # bar 3, scribbled on the spectrogram at zoom 2
    dragged = painted_regions(page)
    want = [edit.snap_span(bars[0], bars[1], SECONDS), edit.snap_span(bars[2], bars[3], SECONDS)]
    assert np.allclose(dragged, want, rtol=0, atol=1e-9)
    rows = [page.locator("#painter .sa3p-row input.bars").nth(i).input_value() for i in range(2)]
    assert rows == ["1–1", "3–3"]  # the rows say the bars, though the edges were snapped outward

    page.click("#generate")
    wait_status(page, "take ready")
    assert "bars 1–1, 3–3" in page.inner_text("#takes")
    assert "seams ≤" in page.inner_text("#takes")  # its worst border against the original's (studio/fit.py)
    page.locator("#take-order").get_by_label("smoothest seams first").check()
    out, _ = sf.read(export_current(page, tmp_path / "take.wav", "#export-take"), dtype="float32", always_2d=True)
    changed_within_painted(out, source, dragged)
    changed = np.flatnonzero(np.any(out != source, axis=1))
    assert abs(changed[0] - edit.to_samples(want[0][0])) <= edit.to_samples(MS)  # starts at bar 1's snapped edge
    assert abs(changed[-1] + 1 - edit.to_samples(want[1][1])) <= edit.to_samples(MS)  # ends at bar 3's

    page.click("#painter .sa3p-foot .clear")
    wait_attr(page, "regions", "0")
    for typed in ("1–1", "3.1–3.4"):
        page.fill("#painter .sa3p-foot input.addbars", typed)
        page.press("#painter .sa3p-foot input.addbars", "Enter")
    wait_attr(page, "regions", "2")
    assert np.allclose(painted_regions(page), dragged, rtol=0, atol=1e-9)
    page.fill("#painter .sa3p-foot input.addbars", "2.7–3")
    page.press("#painter .sa3p-foot input.addbars", "Enter")
    wait_attr(page, "msg", "A bar of 4/4 has beats 1 to 4; beat 7 in '2.7–3' does not exist.")
    assert page.get_attribute("#painter .sa3p", "data-regions") == "2"

    page.reload()  # the takes' order is kept with the session
    wait_attr(page, "ready", "1")
    wait_text(page, "#takes", "seams ≤")
    assert page.locator("#take-order").get_by_label("smoothest seams first").is_checked()


def test_the_painter_reads_and_names_bars_as_studio_meter_does(loaded):
    """The painter's mirrors of Grid.parse_range, position, label and span_label (and edit.line_for)
    against Python's, in 3/4 at an odd tempo with bar 1 off zero, snapping to the latent grid only."""
    from studio import ui_tempo
    page, _ = loaded
    grid = Grid(97.0, 3, 4, downbeat=0.41)
    set_grid(page, 97, "3/4", 0.41)
    typed = ["1.2–1.3", "2–2", "3.2–3.3", "4:4"]
    for text in typed:
        page.fill("#painter .sa3p-foot input.addbars", text)
        page.press("#painter .sa3p-foot input.addbars", "Enter")
    wait_attr(page, "regions", str(len(typed)))
    want = [edit.snap_span(*grid.parse_range(text), SECONDS) for text in typed]
    assert np.allclose(painted_regions(page), want, rtol=0, atol=1e-9)
    rows = [page.locator("#painter .sa3p-row input.bars").nth(i).input_value() for i in range(len(typed))]
    assert rows == [ui_tempo.bars_label(grid, a, b, SECONDS).removeprefix("bars ") for a, b in want]
    assert rows[0] == "1.2–1"  # both ends included: up to the end of beat 3 of bar 1


def test_the_tempo_tapped_and_bar_one_dragged_on_the_ruler_survive_a_reload(loaded):
    page, _ = loaded
    for at in (10.0, 10.5, 11.0, 11.5):  # four taps half a second apart (seconds): 120 BPM
        page.clock.set_fixed_time(at)
        page.click("#tap")
    wait_text(page, "#tempo-note", "120 BPM")
    page.click("#meter input")
    page.locator("ul[role=listbox] li", has_text="3/4").first.click()
    wait_text(page, "#tempo-note", "120 BPM · 3/4")
    wait_attr(page, "ruler", "bars")
    start = float(page.inner_text("#tempo-note").split("bar 1 at ")[1].split(" s")[0])
    x0, _, _ = lane_x(page, ".sa3p-ruler", start)
    x1, y, _ = lane_x(page, ".sa3p-ruler", 1.5)
    page.mouse.move(x0, y - 6)
    page.mouse.down()
    page.mouse.move(x1, y - 6, steps=6)
    page.mouse.up()
    page.wait_for_function("(s) => !document.querySelector('#tempo-note').innerText.includes(s)",
                           arg=f"bar 1 at {start:.3f} s")  # stored, and shown from what was stored
    dragged = float(page.inner_text("#tempo-note").split("bar 1 at ")[1].split(" s")[0])
    assert dragged == pytest.approx(1.5, abs=2 * float(page.get_attribute("#painter .sa3p", "data-extent")) / 1000)

    page.reload()
    wait_attr(page, "ready", "1")
    wait_text(page, "#tempo-note", f"120 BPM · 3/4** · bar 1 at {dragged:.3f} s".replace("**", ""))
    assert float(page.input_value("#bpm input")) == 120 and page.input_value("#meter input") == "3/4"
    assert float(page.input_value("#downbeat input")) == pytest.approx(dragged)
    wait_attr(page, "ruler", "bars")


# Every AudioBufferSourceNode the page starts, with its loop settings, and each stop: the wrap must be
# the node's own (Web Audio loops on the sample), not a JS restart.
_RECORD_NODES = """(() => { window.sa3Nodes = [];
  const start = AudioBufferSourceNode.prototype.start, stop = AudioBufferSourceNode.prototype.stop;
  AudioBufferSourceNode.prototype.start = function (...a) {
    window.sa3Nodes.push({loop: this.loop, loopStart: this.loopStart, loopEnd: this.loopEnd, stopped: false});
    this.sa3Index = window.sa3Nodes.length - 1; return start.apply(this, a); };
  AudioBufferSourceNode.prototype.stop = function (...a) {
    window.sa3Nodes[this.sa3Index].stopped = true; return stop.apply(this, a); }; })();"""


def test_the_loop_player_wraps_a_region_without_a_gap(loaded):
    page, _ = loaded
    page.add_init_script(_RECORD_NODES)
    page.reload()  # the recorder is in place before the painter's script runs
    wait_attr(page, "ready", "1")
    mouse_region(page, 1.02, 1.55, (0.2, 0.2), False)  # selected once drawn
    (a, b), = painted_regions(page)
    page.click("#painter .loop-btn")
    wait_attr(page, "loop", f"{a:.4f},{b:.4f}")
    late, early = b - 0.2 * (b - a), a + 0.5 * (b - a)
    page.wait_for_function(f"() => Number(document.querySelector('#painter .sa3p').dataset.time) > {late}")
    page.wait_for_function(f"() => Number(document.querySelector('#painter .sa3p').dataset.time) < {early}")
    nodes = page.evaluate("() => window.sa3Nodes")
    assert len(nodes) == 1 and nodes[0]["loop"] and not nodes[0]["stopped"]  # one node, still looping
    assert nodes[0]["loopStart"] == pytest.approx(a, abs=MS) and nodes[0]["loopEnd"] == pytest.approx(b, abs=MS)
    assert int(page.get_attribute("#painter .sa3p", "data-loop-passes")) >= 1
    page.click("#painter .loop-btn")
    wait_attr(page, "loop", "")
    assert page.evaluate("() => window.sa3Nodes[0].stopped")


def test_the_upload_icon_sits_clear_of_the_file_fields_labels(studio, browser):
    """Issue 19, item 7: the drop zone's icon overlapped the label of every file field."""
    page = open_page(browser, studio[0])
    page.locator("#lora > button").first.click()
    for field in ("#upload", "#guide", "#lora1-file", "#lora2-file"):
        label = page.locator(f"{field} label").first.bounding_box()
        icon = page.locator(f"{field} .upload-container .icon-wrap").bounding_box()
        assert icon["y"] >= label["y"] + label["height"] or icon["x"] >= label["x"] + label["width"], field
    page.close()
