"""The Loops panel and the drag-out list: layout plus wiring over studio.loops, beside studio/ui.py.

*Make it loop* heals bars K..K+N-1 of the current version across their wrap as a take (the track
with the healed loop in place, heard as B, accepted or exported like any take); *Generate a loop*
makes a clip of exactly N bars at a BPM (a new version, its grid set) and heals it as a take; the
wrap's seam is shown before and after; *Export the loop* writes exactly N bars of the take heard as
B (or of the current version). The drag-out list holds the current version, every take and every
export as real files a DAW track or the desktop takes: each item's dragstart sets Chrome's
``DownloadURL`` ("audio/wav:<name>:<absolute URL>") and ``text/uri-list``; names come from
``loops.take_name``. ui.py calls ``panel`` and ``drag_panel`` in its layout and ``wire`` in its wiring.
"""
from __future__ import annotations

import html
import secrets
from pathlib import Path

import gradio as gr

from studio import loops, recipe, seams, session, tempo, ui_tempo
from studio.ui_common import PROBLEMS, engine_progress, file_url, status
from studio.api import SAMPLE_RATE, Cancelled
from studio.audio_io import wav_bytes
from studio.meter import MAX_LOOP_BARS, METERS, Grid

NO_GRID = ("Set the tempo first (BPM, meter and the first downbeat): loops are cut at bar lines. "
           "A generated loop has its tempo already.")
MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg"}


def panel(c) -> None:
    """The Loops accordion (components on ``c``)."""
    with gr.Accordion("Loops", open=False, elem_id="loops"):
        c.loop_grid = gr.Markdown(NO_GRID, elem_id="loop-grid")
        with gr.Row():
            c.loop_bars = gr.Number(4, label="Bars", precision=0, minimum=1, maximum=MAX_LOOP_BARS,
                                    elem_id="loop-bars")
            c.loop_from = gr.Number(1, label="From bar", precision=0, elem_id="loop-from")
        with gr.Row():
            c.loop_make = gr.Button("Make it loop", variant="primary", elem_id="loop-make")
            c.loop_export = gr.Button("Export the loop", elem_id="loop-export")
        c.loop_seam = gr.Markdown("", elem_id="loop-seam")
        c.loop_player = gr.Audio(label="The loop", loop=True, interactive=False, elem_id="loop-player",
                                 waveform_options=gr.WaveformOptions(show_recording_waveform=False))
        c.loop_file = gr.File(label="Exported loop", interactive=False, elem_id="loop-file")
        gr.Markdown("**Generate a loop**: exactly that many bars at that tempo, healed at its wrap.")
        c.loop_prompt = gr.Textbox(label="Prompt", placeholder="lofi house, warm analog bass", elem_id="loop-prompt")
        with gr.Row():
            c.loop_gen_bars = gr.Number(4, label="Bars", precision=0, minimum=1, maximum=MAX_LOOP_BARS,
                                        elem_id="loop-gen-bars")
            c.loop_bpm = gr.Number(120, label="BPM", minimum=20, maximum=400, elem_id="loop-bpm")
            c.loop_meter = gr.Dropdown(list(METERS), value="4/4", label="Meter", elem_id="loop-meter")
        c.loop_generate = gr.Button("Generate a loop", elem_id="loop-generate")


def _grid(s: session.Session, track) -> tuple[Grid, str]:
    """(the current version's grid, ""), or when it has none the grid studio.tempo finds in ``track``
    (not stored: the tempo panel keeps the musician's) and a note saying so; ValueError without a beat."""
    grid = session.grid_of(s)
    if grid is not None:
        return grid, ""
    found = tempo.detect(track)
    if found.grid is None:
        raise ValueError(f"{found.reason.split(':')[0]}: {NO_GRID[0].lower()}{NO_GRID[1:]}")
    return found.grid, f" (on the tempo found: {found.reason.split(';')[0]})"


def _fields(model, prompt, seed, steps, crossfade) -> dict:
    """The request fields a loop's generation and heal share with the Regenerate panel."""
    return dict(model=model, prompt=prompt or "", seed=seed, steps=int(steps), crossfade_ms=float(crossfade))


def drag_panel(c) -> None:
    """The drag-out list: real files to drag onto a DAW track or the desktop."""
    c.drag = gr.HTML("", elem_id="drag-out", js_on_load=_DRAG_JS, css_template=_DRAG_CSS)


# Chrome and Edge save a DownloadURL drop as a file of that name (the desktop, Ableton, Reaper...);
# text/uri-list serves apps that fetch a dropped link. Delegated: the items are re-rendered with the value.
_DRAG_JS = """element.addEventListener('dragstart', (e) => {
  const a = e.target.closest && e.target.closest('a.sa3-drag-item');
  if (!a) return;
  const url = new URL(a.getAttribute('href'), window.location.href).href;
  e.dataTransfer.effectAllowed = 'copy';
  e.dataTransfer.setData('DownloadURL', `${a.dataset.mime}:${a.dataset.name}:${url}`);
  e.dataTransfer.setData('text/uri-list', url);
  e.dataTransfer.setData('text/plain', url);
});"""


_DRAG_CSS = """.sa3-drag { display: flex; flex-direction: column; gap: 4px; font-size: 13px; }
.sa3-drag-title { opacity: .75; }
.sa3-drag-item { cursor: grab; padding: 3px 8px; border: 1px dashed var(--border-color-primary); border-radius: 6px;
  text-decoration: none; color: inherit; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.sa3-drag-item:hover { border-style: solid; }"""
MAX_DRAG_EXPORTS = 12  # the newest exports listed to drag (all stay in the session's exports/)


def file_stem(s: session.Session, what: str, bars: int | None = None) -> str:
    """The file name (no extension) of the current version or a take id: its prompt, its tempo, its
    bars (``bars``: a loop of that many; else a take's regions as bars, or a loop take's length) and
    its id (``loops.take_name``)."""
    if what == "current":
        v = s.current
        prompt = s.take(v.take).prompt if v.take else v.recipe.get("prompt") or Path(v.label.split(": ", 1)[-1]).stem
        return loops.take_name(prompt, _bpm(session.grid_of(s)), bars, v.id, ext="")
    t = s.take(what)
    grid = session.grid_of(s, t.base) if t.base else None
    bpm = _bpm(grid)
    if "loop" in t.settings:  # a loop take: the tempo and the bars it was healed at
        bpm, bars = t.settings["loop"]["grid"]["bpm"], bars or t.settings["loop"]["bars"]
    elif bars is None and grid is not None and t.regions:
        bars = grid.span_label(min(r.start for r in t.regions), max(r.end for r in t.regions)).split(" ", 1)[1]
    return loops.take_name(t.prompt, bpm, bars, t.id, ext="")


def _bpm(grid: Grid | None) -> float | None:
    return grid.bpm if grid is not None else None


def drag_html(s: session.Session | None, take_id: str | None = None) -> str:
    """The drag-out list: the current version, every live take and the newest exports, each a link to a
    real file in the session (served by Gradio's file route) named for the DAW."""
    if s is None or s.current is None:
        return ""
    items = [("current", "Current version", f"{file_stem(s, 'current')}.wav", session.track_file(s, "current"))]
    items += [("take", session.take_label(t).capitalize() + (" · B" if t.id == take_id else ""),
               f"{file_stem(s, t.id)}.wav", session.track_file(s, t.id)) for t in s.live_takes]
    exported = sorted((p for p in s.path("exports").glob("*") if p.suffix in MIME), key=lambda p: p.stat().st_mtime,
                      reverse=True) if s.path("exports").is_dir() else []
    items += [("export", "Export", p.name, p) for p in exported[:MAX_DRAG_EXPORTS]]
    rows = "".join(
        f'<a class="sa3-drag-item" draggable="true" data-kind="{kind}" data-name="{html.escape(name)}" '
        f'data-mime="{MIME[Path(path).suffix]}" href="{html.escape(file_url(path))}" '
        f'download="{html.escape(name)}">⇱ {html.escape(label)} · {html.escape(name)}</a>'
        for kind, label, name, path in items)
    title = '<div class="sa3-drag-title">Drag into a DAW track or onto the desktop:</div>'
    return f'<div class="sa3-drag">{title}{rows}</div>'


def wire(c, h, gpu) -> None:
    """Events of the Loops panel and the drag-out list; ``h``: ui's handlers (engine, views, sessions);
    ``gpu``: StudioConfig.gpu, which runs the handlers that use the engine on a ZeroGPU worker."""
    lh = Loops(h)
    make, generate = (gpu(fn, h.gpu_seconds(fn)) for fn in (lh.make, lh.generate))
    view = [c.sess, c.painter, c.status, c.takes, c.versions, c.sid_box, c.session_md, c.seen,
            *ui_tempo.tempo_outputs(c)]  # ui._Handlers.view
    shown = [c.loop_seam, c.loop_player, c.seed]
    c.loop_make.click(make, [c.sess, c.painter, c.model, c.prompt, c.seed, c.random_seed, c.steps, c.crossfade,
                                c.loop_bars, c.loop_from], view + shown, show_progress_on=[c.status])
    c.loop_generate.click(generate, [c.sess, c.painter, c.model, c.loop_prompt, c.seed, c.random_seed, c.steps,
                                        c.crossfade, c.loop_gen_bars, c.loop_bpm, c.loop_meter],
                          view + shown, show_progress_on=[c.status])
    c.loop_export.click(lh.export, [c.sess, c.takes, c.fmt, c.loop_bars, c.loop_from],
                        [c.loop_file, c.status, c.drag])
    for trigger in (c.seen.change, c.takes.change):
        trigger(lh.listed, [c.sess, c.takes], [c.drag, c.loop_grid], show_progress="hidden")
    c.export_cur.click(lh.listed, [c.sess, c.takes], [c.drag, c.loop_grid], show_progress="hidden")
    c.export_take.click(lh.listed, [c.sess, c.takes], [c.drag, c.loop_grid], show_progress="hidden")


class Loops:
    """Handlers of the Loops panel; each returns the outputs of the event it serves (ui's view first)."""

    def __init__(self, h):
        self.h = h

    def make(self, sid, painter, model, prompt, seed, random_seed, steps, crossfade, bars, first_bar,
             request: gr.Request = None, progress=gr.Progress()):  # noqa: B008 - Gradio's way
        """Heal bars first_bar.. of the current version as a take (the track with the loop healed in place)."""
        seed = secrets.randbelow(2**31) if random_seed else int(seed or 0)
        s = self.h.latest(sid)
        try:
            if s is None or s.current is None:
                raise ValueError("Load or generate a clip first, then make a loop of its bars.")
            session.check_room(s, self.h.quota)
            track = session.audio(s, "current")
            grid, found = _grid(s, track)
            bars, first_bar = int(bars or 0), int(first_bar or 0)
            prompt = prompt or s.current.recipe.get("prompt", "")  # unsaid: what the clip was made from, if known
            healed = loops.heal(self.h.engine, track, grid, bars, first_bar=first_bar, in_place=True,
                                progress=self._progress(request, progress),
                                **_fields(model, prompt, seed, steps, crossfade))
            s, take_id = self._store(s, healed)
        except (*PROBLEMS, Cancelled) as e:
            return self._failed(s, painter, e, seed)
        return self._shown(s, take_id, healed, track, painter, seed, f"bars {first_bar}–{first_bar + bars - 1}{found}")

    def generate(self, sid, painter, model, prompt, seed, random_seed, steps, crossfade, bars, bpm, meter,
                 request: gr.Request = None, progress=gr.Progress()):  # noqa: B008 - Gradio's way
        """A clip of exactly ``bars`` bars at ``bpm`` (a new version with its grid), healed as a take."""
        seed = secrets.randbelow(2**31) if random_seed else int(seed or 0)
        s = self.h.latest(sid)
        try:
            if s is not None:
                session.check_room(s, self.h.quota)
            grid = Grid(float(bpm or 0), *Grid.parse_meter(meter or ""))
            bars = int(bars or 0)
            made, healed = loops.generate_loop(self.h.engine, grid, bars, progress=self._progress(request, progress),
                                               **_fields(model, prompt, seed, steps, crossfade))
            # stored only now: a failed or cancelled first loop leaves no session folder behind
            s = session.set_source(s or session.create(self.h.cfg.sessions), made.audio,
                                   f"generated loop: “{prompt}” ({bars} bars at {grid.bpm:g} BPM, seed {seed})",
                                   made_by=recipe.to_recipe(made, {}, **self.h.engine.made_on(model)))
            s = session.set_grid(s, Grid(grid.bpm, grid.beats_per_bar, grid.beat_unit, 0.0),
                                 f"Generated as a loop at {grid.bpm:g} BPM; bar 1 at the start.")
            s, take_id = self._store(s, healed)
        except (*PROBLEMS, Cancelled) as e:
            return self._failed(s, painter, e, seed)
        return self._shown(s, take_id, healed, made.audio, painter, seed, f"a {bars}-bar loop at {grid.bpm:g} BPM")

    def _progress(self, request, progress):
        """The engine's progress for this tab: gr.Progress, and Cancelled once the tab's Cancel is pressed."""
        flag = self.h.cancel_flag(request)
        flag.unlink(missing_ok=True)
        return engine_progress(progress, flag, 0, 1)

    def _store(self, s, healed: loops.Healed) -> tuple[session.Session, str]:
        """Store the heal as a take of s.current; its recipe holds the loop's step so a replay remakes it."""
        req = healed.take.request
        settings = {"steps": req.steps, "crossfade_ms": req.crossfade_ms, "loop": healed.step}
        s, rec = session.add_take(s, healed.take, req.prompt, settings,
                                  {**self.h.engine.made_on(req.model), "loop": healed.step})
        return s, rec.id

    def _failed(self, s, painter, err, seed):
        err = ValueError("Cancelled.") if isinstance(err, Cancelled) else err
        return self.h.failed(s, painter, None, err) + [gr.update(), gr.update(), seed]

    def _shown(self, s, take_id, healed: loops.Healed, track, painter, seed, what):
        """The view with the new take as B, the wrap's seam before and after, the loop in its player."""
        start, n = healed.step["start"], healed.step["samples"]
        before, after = seams.wrap_jump(track[:, start:start + n]), seams.wrap_jump(healed.loop)
        seam = f"**The wrap** · before: {before.text()} · healed: {after.text()}"
        msg = f"Healed {what} across the wrap as {session.take_label(s.take(take_id))}: hear it as B, or loop it."
        return self.h.view(s, painter, msg, take_id) + [seam, wav_bytes(healed.loop), seed]

    def export(self, sid, take_id, fmt, bars, first_bar):
        """The loop of the take heard as B when it is a loop (its healed bars), else exactly ``bars``
        bars from ``first_bar`` of that take (or of the current version) on its grid."""
        s = self.h.latest(sid)
        what = take_id or "current"
        try:
            if s is None or s.current is None:
                raise ValueError("Nothing to export yet.")
            step = s.take(take_id).settings.get("loop") if take_id else None
            if step is not None:
                start, n, bars = step["start"], step["samples"], step["bars"]
            else:
                grid = session.grid_of(s, s.take(take_id).base if take_id else None)
                if grid is None:
                    raise ValueError(NO_GRID)
                bars = int(bars or 0)
                start, n = loops.cut(session.audio(s, what), grid, bars, int(first_bar or 0))
            path = session.export(s, what, fmt, name=file_stem(s, what, bars), span=(start, start + n))
        except PROBLEMS as e:
            return None, status(e), gr.update()
        msg = (f"Exported **{path.name}**: exactly {bars} bar{'s' * (bars != 1)}, {n} samples "
               f"({n / SAMPLE_RATE:.3f} s), "
               f"with its settings in {path.with_suffix('.json').name}.")
        return str(path), status(msg), drag_html(s, take_id)

    def listed(self, sid, take_id):
        """The drag-out list and the grid line, for what the tab shows now."""
        s = self.h.latest(sid)
        grid = session.grid_of(s) if s is not None and s.current is not None else None
        line = NO_GRID if grid is None else (f"Bars at **{grid.bpm:g} BPM** in {grid.meter}, bar 1 at "
                                             f"{grid.downbeat:.2f} s: a loop is exact to the nearest sample.")
        return drag_html(s, take_id), line
