"""The studio's tempo panel and bar grid: BPM (typed or tapped), meter, first downbeat, how the grid
was found, and what regions snap to; bar labels for regions and takes.

Layout plus wiring like studio/ui.py, which calls ``tempo_panel`` and ``wire_tempo`` and sends
``grid_value`` with every painter value. The grid itself lives with each version in the session
(``session.grid_of`` / ``set_grid``), its arithmetic in studio/meter.py, the snapping rule in
studio/edit.py; tempo detection is studio/tempo.py's ``detect``. Nothing here restates them.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from types import SimpleNamespace

import gradio as gr

from studio import edit, session
from studio.api import SAMPLE_RATE
from studio.meter import MAX_BPM, METERS, MIN_BPM, Grid, prompt_bpm

# What regions snap to before the latent grid (which they always snap to): a Grid.lines unit or none.
SNAP_CHOICES = [("latent grid only", "grid"), ("beats", "beat"), ("bars", "bar")]
SNAP_UNITS = tuple(unit for _, unit in SNAP_CHOICES)
TRACKERS = {"librosa": "librosa", "beat_this": "Beat This!"}  # tempo.Tempo.tracker -> the name shown on the panel
SET_BY_HAND = "Set by hand."


def grid_value(s: session.Session | None, duration: float) -> dict:
    """The painter contract's ``grid`` and ``lines`` for the current version of ``s`` (``duration``
    seconds long): the grid's numbers (meter.Grid's fields plus its bar and beat lengths, from which
    the painter draws bar k at ``downbeat + (k - 1) * bar_seconds``) and its bar and beat lines
    (``Grid.lines``: what regions snap to, by the painter's ``snap``); both None without a grid."""
    grid = session.grid_of(s) if s is not None else None
    if grid is None:
        return {"grid": None, "lines": None}
    numbers = {**asdict(grid), "bar_seconds": grid.bar_seconds, "beat_seconds": grid.beat_seconds}
    return {"grid": numbers, "lines": {unit: grid.lines(duration, unit) for unit in ("bar", "beat")}}


def snap_lines(s: session.Session, snap: str, duration: float) -> list[float] | None:
    """The lines an edit's regions snap to before the latent grid (the ones the painter drew with)."""
    grid = session.grid_of(s)
    return grid.lines(duration, snap) if grid is not None and snap in ("bar", "beat") else None


def bars_label(grid: Grid, start: float, end: float, duration: float) -> str:
    """A region's bars ('bars 9–12'), named by the bar or beat lines its snapped edges came from
    (edit.line_for), so a region typed as 9–12 and snapped outward to the latent grid still reads 9–12."""
    lines = grid.lines(duration, "beat")
    if not lines:
        return grid.span_label(start, end)

    def came_from(t: float, up: bool) -> float:
        line = edit.line_for(lines, t, duration, up)
        if abs(edit.snap_edge(line, duration, up) - t) > edit.SNAP_TOLERANCE:
            return t
        return grid.time(*grid.position(line + 1e-3)[:2])  # the line exactly (Grid.lines rounds to the µs)
    return grid.span_label(came_from(start, False), came_from(end, True))


def take_grid(s: session.Session, t: session.TakeRecord) -> Grid | None:
    """The bar grid on take ``t``'s axis: its base version's, moved by the take's intro."""
    base = next((v for v in s.versions if v.id == t.base), None)
    if base is None or not base.grid:
        return None
    return Grid(**{**base.grid, "downbeat": base.grid["downbeat"] + t.shift / SAMPLE_RATE})


def note_text(s: session.Session | None) -> str:
    """The panel's line: the grid in words and how it was found, or why there is none."""
    v = s.current if s is not None else None
    if v is None:
        return "Load a clip: its tempo, beats and bars are found when it loads."
    grid = session.grid_of(s)
    if grid is None:
        return v.tempo or "Finding the tempo…"
    return f"**{grid.bpm:g} BPM · {grid.meter}** · bar 1 at {grid.downbeat:.3f} s · {v.tempo or SET_BY_HAND}"


def tempo_panel(c: SimpleNamespace) -> None:
    """The tempo row under the painter; its components go on ``c`` for the wiring."""
    with gr.Row(elem_id="tempo", equal_height=True):
        c.bpm = gr.Number(label="BPM", value=None, minimum=MIN_BPM, maximum=MAX_BPM, elem_id="bpm", scale=1,
                          min_width=90)
        c.tap = gr.Button("Tap", elem_id="tap", scale=0, min_width=64)
        c.meter = gr.Dropdown(list(METERS), value="4/4", label="Meter", allow_custom_value=True, elem_id="meter",
                              scale=1, min_width=90)
        c.downbeat = gr.Number(label="Bar 1 starts at (s)", value=0, elem_id="downbeat", scale=1, min_width=120,
                               info="or drag ▼ on the ruler")
        c.snap = gr.Radio(SNAP_CHOICES, value="grid", label="Regions snap to", elem_id="snap", scale=2)
        c.find_tempo = gr.Button("Find the tempo", elem_id="find-tempo", scale=0, min_width=120)
    c.tempo_note = gr.Markdown(note_text(None), elem_id="tempo-note")
    c.grid_box = gr.Textbox(visible=False)  # grid_value as JSON: merged into the painter in the browser


TEMPO_OUTPUTS = ("grid_box", "bpm", "meter", "downbeat", "tempo_note")  # what tempo_view fills, in order


def tempo_outputs(c: SimpleNamespace) -> list:
    return [getattr(c, name) for name in TEMPO_OUTPUTS]


def tempo_view(s: session.Session | None, duration: float) -> list:
    """Values for ``tempo_outputs``: the grid for the painter, the fields, the line."""
    grid = session.grid_of(s) if s is not None else None
    box = json.dumps(grid_value(s, duration))
    if grid is None:
        return [box, None, gr.update(), gr.update(), note_text(s)]
    return [box, grid.bpm, grid.meter, round(grid.downbeat, 3), note_text(s)]


# The grid's numbers and lines, and the snap unit picked, go to the painter in the browser as events it
# merges into its live state (painter.js: "sa3:grid", "sa3:snap"), so a region being painted meanwhile is
# kept, and a late answer from Python (the tracker's, a timer's) never undoes the unit just picked.
_TO_PAINTER = """(value) => { const p = document.querySelector('#painter .sa3p');
  if (p) p.dispatchEvent(new CustomEvent('sa3:%s', { detail: value })); return []; }"""
# Tap: the tempo of the last taps (up to 8; a pause of 2 s starts again), from Date.now() so a test can set it.
_TAP_JS = """(bpm) => { const now = Date.now(), taps = (window.sa3Taps || []).filter((t) => now - t < 2000 * 8);
  if (taps.length && now - taps[taps.length - 1] > 2000) taps.length = 0;
  taps.push(now); window.sa3Taps = taps.slice(-8);
  const t = window.sa3Taps; if (t.length < 2) return bpm;
  return Math.round(600000 * (t.length - 1) / (t[t.length - 1] - t[0])) / 10; }"""


def wire_tempo(c: SimpleNamespace, h: "TempoHandlers", loaded: list) -> None:
    """The panel's events; ``loaded``: the events after which a clip is new (find its tempo then)."""
    out = tempo_outputs(c) + [c.seen, c.status]  # c.seen: so the sync timer does not show it all again
    c.grid_box.change(None, [c.grid_box], None, js=_TO_PAINTER % "grid")
    c.snap.input(None, [c.snap], None, js=_TO_PAINTER % "snap")
    # one at a time, in the order given: a blur's stale values never land after the Enter that followed it
    typed = dict(fn=h.set_tempo, inputs=[c.sess, c.bpm, c.meter, c.downbeat, c.snap], outputs=out,
                 show_progress="hidden", concurrency_id="tempo", concurrency_limit=1)
    for event in (c.bpm.submit, c.bpm.blur, c.meter.input, c.downbeat.submit, c.downbeat.blur):
        event(**typed)
    c.tap.click(None, [c.bpm], [c.bpm], js=_TAP_JS).then(**typed)
    # the painter's ▼ on the ruler: a dragged first downbeat arrives as the painter's "submit"
    c.painter.submit(h.drag_downbeat, [c.sess, c.painter, c.bpm, c.meter, c.snap], out, show_progress="hidden",
                     concurrency_id="tempo", concurrency_limit=1)
    c.snap.input(h.set_snap, [c.sess, c.snap], out, show_progress="hidden")
    c.find_tempo.click(h.find_again, [c.sess, c.meter, c.snap], out)
    for event in loaded:  # not the status line: it says how the load went (and a run's timer there would hide it)
        event.then(h.find_tempo, [c.sess, c.snap], out[:-1], show_progress="hidden")


class TempoHandlers:
    """The panel's handlers: each reads the session from disk (as studio.ui's do) and returns
    ``tempo_outputs`` and the status line."""

    def __init__(self, latest, duration, status, signature):
        # studio.ui's helpers: the session on disk, its current version's seconds, the status line's
        # update, and what a tab shows of a session (its sync timer's signature)
        self.latest, self.duration, self.status, self.signature = latest, duration, status, signature

    def _out(self, s, snap, msg=None) -> list:
        return tempo_view(s, self.duration(s)) + [self.signature(s), gr.update() if msg is None else self.status(msg)]

    def find_tempo(self, sid, snap):
        """After a clip loads (and when a page opens): find its grid unless its version has one
        already (a reload, an accepted take): from the BPM its prompt states (a generated source),
        else with tempo.detect."""
        s = self.latest(sid)
        if s is None or s.current is None or s.current.tempo:
            return self._out(s, snap)[:-1]
        return self._detect(s, snap)[:-1]

    def find_again(self, sid, meter, snap):
        """The Find button: detect again in the meter picked, replacing whatever was set."""
        s = self.latest(sid)
        if s is None or s.current is None:
            return self._out(s, snap, ValueError("Load or generate a clip first, then find its tempo."))
        try:
            Grid.parse_meter(meter or "")
        except ValueError as e:
            return self._out(s, snap, e)
        return self._detect(s, snap, meter=meter)

    def _detect(self, s, snap, meter: str | None = None):
        """Find and store the grid of the current version (``meter``: the Find button's, forcing it)."""
        force = meter is not None
        v = s.current
        stated = prompt_bpm(v.recipe.get("prompt", "")) if v.recipe and not force else None
        if stated is not None:
            grid, note = Grid(stated), f"From the prompt ({stated:g} BPM); bar 1 at the start."
        else:
            from studio import tempo  # studio/tempo.py: the one home of beat tracking (loads librosa)
            try:
                found = tempo.detect(session.audio(s, v.id), meter=meter)
                grid = found.grid
                note = (f"Found by {TRACKERS.get(found.tracker, found.tracker)} · confidence {found.confidence:.2f}."
                        if grid is not None else found.reason)
            except ValueError as e:  # stored as the reason there is no grid, so the panel says it
                grid, note = None, str(e)
        latest = self.latest(s.id)
        if latest is None or latest.current is None or latest.current.id != v.id:
            return self._out(latest, snap)  # another clip was loaded meanwhile: it gets its own turn
        if latest.current.tempo and not force:
            return self._out(latest, snap)  # set by hand while the tracker ran: the musician wins
        s = session.set_grid(latest, grid, note)
        return self._out(s, snap, f"Tempo: {note_text(s)}".replace("**", "") if force else None)

    def set_tempo(self, sid, bpm, meter, downbeat, snap):
        """BPM, meter or first downbeat typed, picked or tapped: store the grid they make."""
        s = self.latest(sid)
        if s is None or s.current is None:
            return self._out(s, snap, None if bpm is None else ValueError("Load a clip first, then set its tempo."))
        old = session.grid_of(s)
        if bpm is None:  # nothing typed: silent, unless there is a grid the empty field would remove
            return self._out(s, snap, None if old is None else ValueError(
                f"The tempo must be from {MIN_BPM:g} to {MAX_BPM:g} BPM: type one or tap it."))
        try:
            beats, unit = Grid.parse_meter(meter or "4/4")
            grid = Grid(float(bpm), beats, unit, float(downbeat or 0.0))
        except ValueError as e:
            return self._out(s, snap, e)
        if grid == old:  # a blur, a tap that made no tempo yet: nothing changes, not even a field being typed in
            return [gr.update()] * (len(TEMPO_OUTPUTS) + 2)
        s = session.set_grid(s, grid, SET_BY_HAND)
        return self._out(s, snap, f"Bar grid: {grid.bpm:g} BPM · {grid.meter} · bar 1 at {grid.downbeat:.3f} s.")

    def drag_downbeat(self, sid, painter, bpm, meter, snap):
        """The painter's first downbeat, dragged on its ruler."""
        if painter.downbeat is None:
            return self._out(self.latest(sid), snap)
        return self.set_tempo(sid, bpm, meter, round(painter.downbeat, 3), snap)

    def set_snap(self, sid, snap):
        s = self.latest(sid)
        if s is not None:
            session.remember(s, snap=snap)
        if snap != "grid" and (s is None or session.grid_of(s) is None):
            return self._out(s, snap, ValueError("There is no bar grid yet: type the tempo (BPM) or tap it; until "
                                                 "then regions snap to the latent grid only."))
        unit = dict((u, name) for name, u in SNAP_CHOICES)[snap]
        return self._out(s, snap, f"Regions snap to {unit}" + (", then to the latent grid." if snap != "grid" else "."))
