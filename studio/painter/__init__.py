"""The region painter as one Gradio component: a gr.HTML whose view lives beside this file
(painter.html, painter.css, painter.js) and whose value is the JSON contract of README.md.

Python owns the facts the painter draws with: the latent grid and the snapping tolerance
(studio.edit, from studio.api's sample rate and latent hop) and the longest continuation and intro
a drag asks for travel as props, so the painter shows exactly the edges studio.edit.snap_regions keeps.
Handlers receive a typed `Painted`; they return the contract as a dict (or its JSON string).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from studio import edit
from studio.api import Region

HERE = Path(__file__).parent
KEPT = ("regions", "continue_seconds", "extend_start_seconds", "snap")  # what the musician made, kept across re-renders
SNAPS = ("grid", "beat", "bar")  # what regions snap to before the latent grid: nothing more, beat or bar lines
UNREADABLE = ("The painter's regions could not be read (the page may be out of date): reload the page "
              "and paint the regions again.")


@dataclass(frozen=True)
class Painted:
    """What the painter sends back. `regions` are in the painter's order, unsnapped and
    unvalidated (studio.edit.snap_regions judges them); `error` is one sentence when the value
    could not be read, and then regions are empty."""
    regions: tuple[Region, ...] = ()
    continue_seconds: float = 0.0
    extend_start_seconds: float = 0.0         # new audio before the track (an intro), seconds
    kept: dict = field(default_factory=dict)  # the contract's KEPT fields as sent, for the next render
    error: str | None = None
    duration: float = 0.0                     # seconds of the track shown (A); 0 before a clip is loaded
    snap: str = "grid"                        # one of SNAPS
    downbeat: float | None = None             # the grid's first downbeat as the painter holds it (dragged), s


def read(value: str | dict | None) -> Painted:
    """The painter's JSON (a string or its dict) as a `Painted`; never raises."""
    try:
        data = json.loads(value) if isinstance(value, str) and value else value or {}
    except ValueError:
        return Painted(error=UNREADABLE)
    if not isinstance(data, dict) or not isinstance(data.get("regions") or [], list):
        return Painted(error=UNREADABLE)
    kept = {k: data[k] for k in KEPT if k in data}
    try:
        regions = tuple(_region(i, item) for i, item in enumerate(data.get("regions") or [], 1))
        track = data.get("track") if isinstance(data.get("track"), dict) else {}
        duration = float(track.get("duration") or 0.0)
        return Painted(regions, _seconds("Continue-by", data.get("continue_seconds")),
                       _seconds("Extend-start-by", data.get("extend_start_seconds"), edit.MAX_INTRO_SECONDS), kept,
                       duration=duration if math.isfinite(duration) and duration > 0 else 0.0,
                       snap=data.get("snap") if data.get("snap") in SNAPS else "grid", downbeat=_downbeat(data))
    except ValueError as e:
        return Painted(kept=kept, error=str(e))


def _downbeat(data: dict) -> float | None:
    """The grid's first downbeat in the value (seconds), or None when there is no grid or it is not a number."""
    grid = data.get("grid")
    try:
        t = float(grid["downbeat"]) if isinstance(grid, dict) else math.nan
    except (KeyError, TypeError, ValueError):
        return None
    return t if math.isfinite(t) else None


def _region(i: int, item) -> Region:
    try:
        start, end = float(item["start"]), float(item["end"])
        prompt = str(item.get("prompt") or "").strip() or None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ValueError(f"Region {i}: start and end must be numbers, got {item!r}.") from None
    return Region(start, end, prompt)


def _seconds(name: str, value, maximum: float = math.inf) -> float:
    """`value` (seconds; None or "" = 0) as a float in [0, maximum], else ValueError naming `name`."""
    try:
        seconds = float(value or 0.0)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be zero or more seconds, got {value!r}.")
    if seconds > maximum:
        raise ValueError(f"{name} is at most {maximum:g} s, got {seconds:g} s: ask for a shorter one.")
    return seconds


class Painter(gr.HTML):
    """The painter component: preprocess gives handlers a `Painted`, postprocess takes the
    contract as a dict or a JSON string (studio.ui.painter_value builds it)."""

    def __init__(self, **kwargs):
        super().__init__(value="", html_template=(HERE / "painter.html").read_text(),
                         css_template=(HERE / "painter.css").read_text(),
                         js_on_load=(HERE / "painter.js").read_text(), apply_default_css=False,
                         grid=edit.GRID_SECONDS, snap_tolerance=edit.SNAP_TOLERANCE,
                         max_continue=edit.MAX_CONTINUE_SECONDS, max_intro=edit.MAX_INTRO_SECONDS, **kwargs)

    def preprocess(self, payload: str | None) -> Painted:
        return read(payload)

    def postprocess(self, value: dict | str | None) -> str:
        return json.dumps(value) if isinstance(value, dict) else value or ""


# A typed field and the painter hold one value (seconds under `key` in the contract): typing writes it
# into the painter's JSON, and every change of the painter (a drag, a value from Python) shows it in the
# field to the millisecond. Both run in the browser, so a Generate pressed right after typing sees it.
_FIELD_TO_PAINTER = """(value, n) => { let s; try { s = JSON.parse(value || "{}"); } catch (e) { return value; }
  s[%(key)r] = Math.max(0, Number(n) || 0); return JSON.stringify(s); }"""
_PAINTER_TO_FIELD = """(value) => { try { return Math.round((JSON.parse(value || "{}")[%(key)r] || 0) * 1000) / 1000; }
  catch (e) { return 0; } }"""


def bind_field(painter: Painter, field: gr.Number, key: str) -> None:
    """Keep `field` and the painter's `key` in sync both ways (call inside the Blocks). The painter
    clamps what is typed to its limit (a prop), and the field then shows the clamped value."""
    field.input(None, [painter, field], [painter], js=_FIELD_TO_PAINTER % {"key": key})
    painter.change(None, [painter], [field], js=_PAINTER_TO_FIELD % {"key": key})
