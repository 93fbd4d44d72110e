"""The studio's Gradio Blocks: layout plus wiring over an Engine (studio/api.py).

Per-user state is the session id in gr.State (the session itself lives on disk, where every
change is applied under its lock, so tabs sharing a session never overwrite each other), the
painter's JSON value and ordinary input components; build_ui's closure holds only what every
user shares (the engine and the settings from app.py). Handlers re-read the session and return
the whole visible state through `view`. No session folder exists until the user stores something.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import inspect
import json
import queue
import secrets
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import gradio as gr
import numpy as np

from studio import edit, fair, fit, hub, recipe, seams, session, ui_loops, ui_tempo
from studio.api import (CROSSFADE_MS, MAX_CFG, SAMPLE_RATE, Cancelled, EditRequest, Engine, EngineError,
                        GenerateRequest, Guidance, LoraSpec, Preview)
from studio.audio_io import TEMP_PREFIX, Limits, load_audio, wav_bytes
from studio.catalog import prompt_for_model
from studio.painter import Painted, Painter, bind_field
from studio.ui_common import PROBLEMS, engine_progress, file_url, status
from studio.ui_view import ensure_view, read_view, spectrogram_rgb

SYNC_SECONDS = 2.0  # how often a tab looks for changes other tabs (or a run it was reloaded during) made
EXPORT_FORMATS = [("WAV · 24-bit", "wav24"), ("WAV · 32-bit float", "wav32f"), ("FLAC · 24-bit", "flac"),
                  ("MP3", "mp3")]


@dataclass(frozen=True)
class StudioConfig:
    sessions: Path                      # root of the session folders
    default_model: str
    limits: Limits = Limits()
    assets: Path = Path(__file__).parent.parent / "assets"
    hardware: str = ""                  # one line shown under the title
    session_quota_mb: float = 2048.0    # a session holding more takes no new work (0: no limit)
    gpu: Callable = lambda fn, seconds: fn  # spaces.GPU(duration=seconds) on ZeroGPU Spaces
    encode_ahead: bool = True           # off on ZeroGPU: a GPU worker's cache dies with the call
    hub_token_for_visitors: bool = False  # fetch visitors' Hub adapters with the host's login (HF_TOKEN)
    jobs_per_session: int = fair.PER_SESSION  # takes a session may have waiting or running (studio/fair.py)
    jobs_per_client: int = fair.PER_CLIENT    # the same for one client address


def painter_value(s: session.Session | None, old: Painted | None, take_id: str | None = None,
                  keep_regions: bool = True) -> dict:
    """The painter's contract for session `s`: current version as A, take `take_id` as B, the
    current version's bar grid and its lines, and the snap unit (the painter's, else the session's last)."""
    prev = old.kept if old is not None else {}
    value = {"track": None, "take": None, "highlight": [],
             "regions": prev.get("regions", []) if keep_regions else [],
             "continue_seconds": prev.get("continue_seconds", 0) if keep_regions else 0,
             "extend_start_seconds": prev.get("extend_start_seconds", 0) if keep_regions else 0}
    snap = prev.get("snap") or (s.last.get("snap") if s is not None else None)
    value.update(ui_tempo.grid_value(None, 0.0), snap=snap if snap in ui_tempo.SNAP_UNITS else "grid")
    if s is not None and s.current is not None:
        v = s.current
        value["track"] = _side(s, "current", f"{v.id.split('-')[0]} · {v.label}")
        value["highlight"] = [{"start": r.start, "end": r.end} for r in v.regions]
        value.update(ui_tempo.grid_value(s, value["track"]["duration"]))
    if s is not None and take_id:
        t = s.take(take_id)
        value["take"] = _side(s, take_id, f"{session.take_label(t)} · seed {t.seed}")
        value["take"]["start"] = -t.shift / SAMPLE_RATE  # a take with an intro starts before the track
    return value


def _side(s: session.Session, what: str, label: str) -> dict:
    """The painter's A or B: a full WAV of `what` (version/take id or 'current') and its view."""
    audio, view = _view_of(s, what)
    return {"audio": file_url(audio), "view": file_url(view), "label": label,
            "duration": read_view(view)["duration"]}


def _view_of(s: session.Session, what: str) -> tuple[Path, Path]:
    """(the full WAV of `what`, its painter view), each made once."""
    audio = session.track_file(s, what)
    with session.locked(s):  # every file in a session folder is written under its lock
        return audio, ensure_view(audio)


def current_seconds(s: session.Session | None) -> float:
    """Seconds of the current version (0 before a clip), read from its painter view."""
    return read_view(_view_of(s, "current")[1])["duration"] if s is not None and s.current is not None else 0.0


def takes_update(s: session.Session | None, selected: str | None = None, *, leave_selection: bool = False):
    """The takes list of ``s`` with ``selected`` picked (None if it is gone). ``leave_selection``:
    update the list only and leave the tab's pick alone, unless the picked take is gone (a
    timer's view, which may land after this tab picked a newer take)."""
    takes = s.live_takes if s else ()
    rows = []
    for t in takes:
        grid = ui_tempo.take_grid(s, t)
        rows.append((t, grid, _fit(s, t, grid)))
    rows = fit.ordered(rows, s.last.get("take_order", "made") if s else "made", fit_of=lambda row: row[2])
    choices = [(_take_choice(t, grid, found), t.id) for t, grid, found in rows]
    value = selected if selected in {t.id for t in takes} else None
    if leave_selection and value == selected:
        return gr.update(choices=choices)
    return gr.update(choices=choices, value=value)


def _fit(s: session.Session, t: session.TakeRecord, grid) -> fit.Fit:
    """How well take ``t`` keeps to its track (nothing measured if its audio cannot be read)."""
    try:
        return fit.of_take(s, t.id, grid)
    except (*PROBLEMS, OSError):
        return fit.Fit((), None)


def _take_choice(t: session.TakeRecord, grid=None, found: fit.Fit | None = None) -> str:
    """A take's line in the list: its regions in bars when its version has a grid, else in seconds,
    then its worst seam and its drift from the grid (``studio.fit``)."""
    if grid is not None:
        where = "bars " + ", ".join(ui_tempo.bars_label(grid, r.start, r.end, t.frames / SAMPLE_RATE)
                                    .removeprefix("bars ") for r in t.regions[:3])
    else:
        where = ", ".join(f"{r.start:.1f}–{r.end:.1f}s" for r in t.regions[:3])
    loras = "".join(f" · LoRA {Path(lo['file']).stem} ×{lo['strength']:g}" for lo in t.settings.get("loras", []))
    measured = f" · {found.text()}" if found is not None and found.text() else ""
    return f"{session.take_label(t).capitalize()} · seed {t.seed} · {where}{measured}{loras}"


def versions_text(s: session.Session | None) -> str:
    if s is None or s.current is None:
        return "No version yet."
    v = s.current
    note = f" · converted: {v.note}" if v.note else ""
    return f"**Version {s.cursor + 1} of {len(s.history)}** · {v.label}{note}"


def session_signature(s: session.Session | None) -> str:
    """What a tab shows of `s`, in one string: the current version first, then history and live takes,
    and last the current version's grid and how it was found."""
    if s is None or s.current is None:
        return ""
    return "|".join([s.current.id, str(s.cursor), str(len(s.history))] + [t.id for t in s.live_takes]
                    + [json.dumps(s.current.grid, sort_keys=True), s.current.tempo])


def session_text(s: session.Session | None) -> str:
    if s is None:
        return "Session: none yet; one is created (and put in the page's address) when you load a clip."
    source = s.last.get("source", "")
    # never the folder: a visitor of a shared studio has no business knowing the server's paths
    return (f"Session `{s.id}` · this page's address opens it: share it only with people who may change it"
            + (f" · {source}" if source else ""))


def build_ui(engine: Engine, cfg: StudioConfig) -> gr.Blocks:
    """The studio over `engine`: layout (the _*_panel functions) then wiring (_wire)."""
    models = {m.name: m for m in engine.models()}
    demos = sorted(p.name for p in cfg.assets.glob("*.wav")) if cfg.assets.is_dir() else []
    c = SimpleNamespace()  # the components, by name, for the wiring
    with gr.Blocks(title="SA3 Studio") as demo:
        c.sess = gr.State(None)  # the tab's session id; None until the user stores something
        with gr.Row(elem_id="header"):
            gr.Markdown(f"## SA3 Studio\n<span class='sub'>Paint a region, regenerate it with Stable Audio 3, "
                        f"keep the best take. {cfg.hardware}</span>")
        c.painter = Painter(elem_id="painter")
        c.status = gr.Markdown("Load a clip to begin.", elem_id="status")
        ui_tempo.tempo_panel(c)
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=280):
                _source_panel(c, demos, models[cfg.default_model])
            with gr.Column(scale=5, min_width=320):
                _edit_panel(c, models, cfg.default_model)
            with gr.Column(scale=4, min_width=280):
                _takes_panel(c)
                _seams_panel(c)
                ui_loops.drag_panel(c)
                ui_loops.panel(c)
        c.session_md = gr.Markdown(elem_id="session-info")
        c.sid_box = gr.Textbox(visible=False)
        c.seen = gr.State("")   # session_signature of what this tab shows
        c.sync = gr.Timer(SYNC_SECONDS)
        _wire(demo, c, _Handlers(engine, cfg, models), cfg.gpu)
    return demo


def _source_panel(c, demos: list[str], info) -> None:
    gr.Markdown("### Source")
    with gr.Tabs():
        with gr.Tab("Upload"):
            c.upload = gr.File(label="WAV, FLAC, OGG or MP3", file_types=["audio"], elem_id="upload", height=120)
        with gr.Tab("Record"):
            c.record = gr.Audio(sources=["microphone"], type="filepath", label="Record")
        with gr.Tab("Prompt"):
            c.src_prompt = gr.Textbox(label="Prompt", placeholder="warm lo-fi drums, 90 BPM", elem_id="src-prompt")
            c.src_seconds = gr.Slider(1, int(info.max_seconds), value=10, step=1, label="Seconds",
                                      elem_id="src-seconds")
            c.src_btn = gr.Button("Generate source", elem_id="src-generate")
    with gr.Row():
        c.demo_pick = gr.Dropdown(demos, value=demos[0] if demos else None, label="Demo clip",
                                  elem_id="demo-pick", scale=3)
        c.demo_btn = gr.Button("Load demo", elem_id="demo-load", scale=1, min_width=90)


def _edit_panel(c, models: dict, default: str) -> None:
    gr.Markdown("### Regenerate")
    c.model = gr.Dropdown([(m.label, m.name) for m in models.values()], value=default, label="Model",
                          info=models[default].needs, elem_id="model")
    c.prompt = gr.Textbox(label="Prompt", placeholder="what the painted regions should become",
                          elem_id="prompt", lines=2)
    c.sent = gr.Markdown(elem_id="sent")
    with gr.Row():
        c.seed = gr.Number(label="Seed", value=0, precision=0, elem_id="seed", min_width=120)
        c.random_seed = gr.Checkbox(label="New random seed each time", value=True, elem_id="random-seed")
    with gr.Row():
        c.n_takes = gr.Slider(1, 4, value=1, step=1, label="Takes", elem_id="n-takes")
        c.steps = gr.Slider(1, 100, value=models[default].default_steps, step=1, label="Steps", elem_id="steps")
    with gr.Row():
        c.strength = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Strength", elem_id="strength",
                               info="1 = new audio; lower keeps the region's shape")
        c.crossfade = gr.Slider(0, 200, value=CROSSFADE_MS, step=5, label="Crossfade (ms)", elem_id="crossfade")
    with gr.Row():
        c.context = gr.Dropdown(CONTEXT_CHOICES, value="auto", label="Context the model hears", elem_id="context",
                                info="around the regions; more is slower")
        c.match = gr.Checkbox(label="Match loudness at the seams", value=False, elem_id="match-loudness")
    c.guide = gr.File(label="Guide file (optional; Strength < 1 restyles from it)",
                      file_types=["audio"], elem_id="guide", height=120)
    c.extend_start = gr.Number(label="Extend start by (s)", value=0, minimum=0, maximum=edit.MAX_INTRO_SECONDS,
                               elem_id="extend-start", info="new audio before the track (an intro or a pickup; or "
                               "drag into the striped area before it); the track follows unchanged")
    _lora_panel(c)
    info = models[default]
    with gr.Accordion("Guidance · -base models", open=True, visible=info.guided, elem_id="guidance") as c.guidance:
        with gr.Row():
            c.cfg = gr.Slider(0, MAX_CFG, value=info.default_cfg, step=0.5, label="CFG scale", elem_id="cfg",
                              info="how closely to follow the prompt; 1 = no guidance")
            c.apg = gr.Slider(0, 1, value=1.0, step=0.1, label="APG", elem_id="apg",
                              info="1 = adaptive projected guidance (less harsh), 0 = plain CFG")
        c.negative = gr.Textbox(label="Negative prompt", placeholder="what to avoid, e.g. vocals, distortion",
                                elem_id="negative")
    with gr.Row():
        c.gen_btn = gr.Button("Generate takes", variant="primary", elem_id="generate")
        c.cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
    c.show_previews = gr.Checkbox(label="Show step previews", value=False, elem_id="show-previews",
                                  info="the take's spectrogram every few steps while it is made (each costs a decode)")
    c.preview = gr.Image(label="Step preview", type="numpy", interactive=False, visible=False, height=160,
                         elem_id="step-preview")
    c.cost = gr.Markdown("", elem_id="cost")
    c.ahead = gr.Markdown("", elem_id="ahead")


LORA_SLOTS = 2  # LoRAs stacked at once from the studio (the CLI takes any number); the generate
# handlers name each slot's three values (Gradio injects gr.Request only into named parameters)


def _lora_panel(c) -> None:
    """LoRA slots: an uploaded .safetensors file or owner/repo/file on Hugging Face, and a strength.
    Stacked in slot order; a strength change never re-reads the file (the engine keeps it)."""
    c.loras = []
    with gr.Accordion("LoRA: your own sound", open=False, elem_id="lora"):
        for k in range(1, LORA_SLOTS + 1):
            with gr.Row():
                file = gr.File(label=f"LoRA {k} (.safetensors)", file_types=[".safetensors"], elem_id=f"lora{k}-file",
                               height=80, scale=2)
                hub = gr.Textbox(label="or on Hugging Face", placeholder="owner/repo/adapter.safetensors",
                                 elem_id=f"lora{k}-hub", scale=2)
                strength = gr.Slider(0, 2, value=1.0, step=0.05, label="Strength", elem_id=f"lora{k}-strength",
                                     scale=1)
            c.loras += [file, hub, strength]


def _lora_slots(values) -> list[tuple[Path | hub.HubFile, float]]:
    """The LoRA slots' (file, hub path, strength) values as (an upload's path or a HubFile, strength),
    empty slots left out. A typed path is never looked up on the server: anything but
    owner/repo/file.safetensors is refused with one sentence (hub.parse) before any slot is fetched.
    An upload's path is Gradio's: it accepts only files a visitor uploaded (see tests/test_visitors.py)."""
    slots = []
    for file, typed, strength in zip(values[0::3], values[1::3], values[2::3], strict=True):
        if file:
            slots.append((_path(file), float(strength)))
        elif (typed or "").strip():
            slots.append((hub.parse(typed), float(strength)))
    return slots


def _takes_panel(c) -> None:
    gr.Markdown("### Takes")
    c.takes = gr.Radio([], label="Pick a take to hear it as B", elem_id="takes",
                       info="Seams: the largest jump at a border against the original's jump there (1× flows "
                            "as the original did), and its loudness step. Drift: how far the take's beats sit "
                            "from the bar grid.")
    c.take_order = gr.Radio([(words, key) for key, words in fit.ORDERS.items()], value="made",
                            label="Order takes", elem_id="take-order")
    with gr.Row():
        c.accept_btn = gr.Button("Accept", variant="primary", elem_id="accept")
        c.discard_btn = gr.Button("Discard", elem_id="discard")
    c.versions = gr.Markdown(versions_text(None), elem_id="versions")
    with gr.Row():
        c.undo_btn = gr.Button("↶ Undo", elem_id="undo")
        c.redo_btn = gr.Button("↷ Redo", elem_id="redo")
    c.fmt = gr.Radio(EXPORT_FORMATS, value="wav24", label="Export as", elem_id="export-format")
    with gr.Row():
        c.export_cur = gr.Button("Export current", elem_id="export-current")
        c.export_take = gr.Button("Export take", elem_id="export-take")
    c.exported = gr.File(label="Exported file", elem_id="exported", interactive=False)


NO_TAKE_SEAMS = "Make a take first: the borders of its regions are listed here to loop, A against B."


def _seams_panel(c) -> None:
    """The seam audition: pick a border of the take heard as B, loop a few seconds around it as A and B."""
    with gr.Accordion("Seams: loop a border", open=False, elem_id="seams"):
        c.seam_pick = gr.Dropdown([], value=None, label="Border of the take", elem_id="seam-pick")
        with gr.Row():
            c.seam_pre = gr.Slider(0, seams.MAX_SIDE_SECONDS, value=seams.PRE_SECONDS, step=0.5,
                                   label="Pre-roll (s)", elem_id="seam-pre")
            c.seam_post = gr.Slider(0, seams.MAX_SIDE_SECONDS, value=seams.POST_SECONDS, step=0.5,
                                    label="After (s)", elem_id="seam-post")
        # the browser's own players: their <audio> elements loop, and the swap reaches them
        plain = gr.WaveformOptions(show_recording_waveform=False)
        c.seam_a = gr.Audio(label="A · current", loop=True, interactive=False, waveform_options=plain,
                            elem_id="seam-a")
        c.seam_b = gr.Audio(label="B · take", loop=True, interactive=False, waveform_options=plain, elem_id="seam-b")
        c.seam_swap = gr.Button("A ⇄ B at the same spot", size="sm", elem_id="seam-swap")
        c.seam_note = gr.Markdown(NO_TAKE_SEAMS, elem_id="seam-note")


def _wire_seams(c, h: "_Handlers") -> None:
    loops = [c.seam_a, c.seam_b, c.seam_note]
    c.takes.change(h.seam_borders, [c.sess, c.takes], [c.seam_pick] + loops, show_progress="hidden")
    heard = dict(fn=h.seam_loop, inputs=[c.sess, c.takes, c.seam_pick, c.seam_pre, c.seam_post], outputs=loops,
                 trigger_mode="always_last")  # while a slider is dragged, only its latest value is cut
    for trigger in (c.seam_pick.input, c.seam_pre.input, c.seam_post.input):
        trigger(**heard).then(None, None, None, js=_SEAM_LOOP_JS)
    c.seam_swap.click(None, None, None, js=_SEAM_SWAP_JS)


# Gradio loops its waveform player itself, not the browser's: the <audio> elements are told to loop.
_SEAM_LOOP_JS = """() => { document.querySelectorAll('#seam-a audio, #seam-b audio').forEach((x) => { x.loop = true; });
  return []; }"""
# Whichever of A and B plays stops, and the other plays on from the same time (B first when neither plays).
_SEAM_SWAP_JS = """() => {
  const a = document.querySelector('#seam-a audio'), b = document.querySelector('#seam-b audio');
  if (!a || !b || !a.src || !b.src) return [];
  const [from, to] = !a.paused ? [a, b] : !b.paused ? [b, a] : [a, b];
  to.loop = from.loop = true; to.currentTime = from.currentTime; from.pause(); to.play(); return []; }"""


def _wire(demo: gr.Blocks, c, h: "_Handlers", gpu: Callable) -> None:
    view = [c.sess, c.painter, c.status, c.takes, c.versions, c.sid_box, c.session_md, c.seen,
            *ui_tempo.tempo_outputs(c)]  # what most return
    on_take = [c.sess, c.painter, c.takes]
    restored = [c.prompt, c.n_takes, c.strength, c.crossfade, c.snap, c.take_order]  # Handlers.open: from session.last
    opened = demo.load(h.open, [c.painter], view + restored)
    opened.then(None, [c.sid_box], None, js=_SET_URL_JS)
    c.sid_box.change(None, [c.sid_box], None, js=_SET_URL_JS)  # a session made by the first store
    synced = [x for x in view if x is not c.status]  # never the status line: it shows what this tab did
    c.sync.tick(h.sync, [c.sess, c.seen, c.painter, c.takes], synced, show_progress="hidden", concurrency_limit=None)
    bind_field(c.painter, c.extend_start, "extend_start_seconds")  # the painter's value is the one Generate reads
    cost = dict(fn=h.cost, inputs=[c.painter, c.model, c.steps, c.context], outputs=[c.cost], show_progress="hidden")
    for trigger in (c.painter.change, c.model.change, c.steps.change, c.context.change):
        trigger(**cost)
    ahead = dict(fn=h.encode_ahead, inputs=[c.sess, c.model], outputs=[c.ahead], show_progress="hidden")
    loaded = [c.upload.upload(h.load_upload, [c.sess, c.painter, c.upload], view + [c.upload]),
              c.record.stop_recording(h.load_file, [c.sess, c.painter, c.record], view),
              c.demo_btn.click(h.load_demo, [c.sess, c.painter, c.demo_pick], view)]
    for event in loaded:
        event.then(**ahead)
    # Both generations wait at the fair gate (studio/fair.py), which needs them there to order them:
    # Gradio's own queue is first come first served. GATE_SEATS bounds the threads that wait.
    gated = dict(concurrency_id="generate", concurrency_limit=GATE_SEATS)
    source = with_previews(h.generate_source, len(view) + 1)
    loaded.append(c.src_btn.click(gpu(source, h.gpu_seconds(source)),
                                  [c.show_previews, c.sess, c.painter, c.src_prompt, c.src_seconds, c.seed,
                                   c.random_seed, c.model, c.steps, c.cfg, c.apg, c.negative, *c.loras],
                                  view + [c.seed, c.preview], **gated))
    tempo_handlers = ui_tempo.TempoHandlers(h.latest, current_seconds, status, session_signature)
    ui_tempo.wire_tempo(c, tempo_handlers, [opened, *loaded])
    c.model.change(h.pick_model, [c.model], [c.model, c.steps, c.status, c.guidance, c.cfg, c.src_seconds])
    for trigger in (c.prompt.change, c.model.change):
        trigger(h.sent_text, [c.model, c.prompt], [c.sent])
    # progress on the status line only, so the takes stay usable (pick, accept, discard) during a run
    takes = with_previews(h.generate, len(view) + 1)
    c.gen_btn.click(gpu(takes, h.gpu_seconds(takes)),
                    [c.show_previews, c.sess, c.painter, c.model, c.prompt, c.seed, c.random_seed, c.n_takes, c.steps,
                     c.strength, c.crossfade, c.cfg, c.apg, c.negative, c.guide, c.context, c.match, *c.loras],
                    view + [c.seed, c.preview], show_progress_on=[c.status], **gated).then(**cost)
    c.show_previews.change(lambda on: gr.update(visible=bool(on)), [c.show_previews], [c.preview],
                           show_progress="hidden")
    # runs beside generate; no output, so it cannot overwrite the "Cancelled" that generate reports
    c.cancel_btn.click(h.cancel, None, None, concurrency_limit=None)
    c.takes.select(h.pick_take, on_take, view)
    c.take_order.input(h.order_takes, [c.sess, c.take_order, c.takes], [c.takes], show_progress="hidden")
    c.accept_btn.click(h.accept, on_take, view).then(**ahead)
    c.discard_btn.click(h.discard, on_take, view)
    c.undo_btn.click(h.undo, on_take, view)
    c.redo_btn.click(h.redo, on_take, view)
    c.export_cur.click(h.export, [c.sess, c.fmt, gr.State("current")], [c.exported, c.status])
    c.export_take.click(h.export, [c.sess, c.fmt, c.takes], [c.exported, c.status])
    _wire_seams(c, h)
    ui_loops.wire(c, h, gpu)


_SET_URL_JS = """(sid) => { const u = new URL(window.location.href);
  if (sid) u.searchParams.set('session', sid); else u.searchParams.delete('session');
  window.history.replaceState(null, '', u); return []; }"""

VIEW_OUTPUTS = 8 + len(ui_tempo.TEMPO_OUTPUTS)  # what _Handlers.view returns (see _wire's `view`)
# Generations that may wait at the fair gate at once (more wait in Gradio's queue): above one
# visitor's cap (fair.PER_CLIENT), so another visitor's take reaches the gate past a script's, and
# well below Gradio's 40 worker threads, so page loads and timers always find one. Each holds its
# clip in memory while it waits (at most 212 MB for a 600 s clip).
GATE_SEATS = 16
HUB_FOLDER = "hub-cache"  # in the sessions root: visitors' Hub adapters (not a session id, so sweep leaves it)
SAVED_NOT_SHOWN = ("The server's disk is full: what you did is saved in your session, but it cannot be shown or "
                   "played until there is room again; try again later.")
# Context each side of the regions: auto = the whole track while it fits the model, else 15 s.
CONTEXT_SECONDS = {"auto": None, "whole track (up to the model's limit)": 10_000.0, "5 s each side": 5.0,
                   "10 s each side": 10.0, "15 s each side": 15.0, "30 s each side": 30.0}
CONTEXT_CHOICES = list(CONTEXT_SECONDS)
# ZeroGPU durations: the model is loaded at start-up (app.preload), so a call holds the GPU for the
# steps, the encode and the decode. Generous per step (a medium step on a 380 s track is ~0.15 s on
# an H200); ZeroGPU queues shorter requests first, so the estimate follows the work.
GPU_SECONDS_BASE, GPU_SECONDS_PER_STEP, GPU_SECONDS_MAX = 20, 1.5, 300


def gpu_seconds(takes: int, steps: int) -> int:
    return int(min(GPU_SECONDS_MAX, GPU_SECONDS_BASE + int(takes) * int(steps) * GPU_SECONDS_PER_STEP))


class _Handlers:
    """Event handlers; each takes plain values and returns the outputs of the event it serves.

    `sid` is the tab's session id (None until the user first stores something); every handler
    reads the latest session from disk, so what it shows includes other tabs' changes."""

    def __init__(self, engine: Engine, cfg: StudioConfig, models: dict):
        self.engine, self.cfg, self.models = engine, cfg, models
        self.quota = int(cfg.session_quota_mb * 2**20)
        # visitors' Hub adapters: beside the sessions, not in one (a session's own copy is made by add_take)
        self.hub = hub.HubFiles(cfg.sessions / HUB_FOLDER, token=None if cfg.hub_token_for_visitors else False)
        # takes pass this gate: visitors take turns (an engine with several replicas says how many run at once)
        self.gate = fair.FairQueue(getattr(engine, "slots", 1), cfg.jobs_per_session, cfg.jobs_per_client)

    @staticmethod
    def visitor(sid, request: gr.Request | None) -> tuple[str, str]:
        """(session key, client key) of a request at the gate: the session id (before the first
        store, the tab's Gradio session), and the client's address (as uvicorn reads it: behind a
        proxy listed in FORWARDED_ALLOW_IPS, the visitor's own)."""
        tab = getattr(request, "session_hash", None) or ""
        client = getattr(getattr(request, "client", None), "host", None) or "local"
        return sid or f"tab {tab}", client

    def loras(self, values, progress=None) -> tuple[LoraSpec, ...]:
        """The LoRA slots as specs of local files: uploads as they are, Hub files fetched (hub.HubFiles)."""
        specs = []
        for source, strength in _lora_slots(values):
            if isinstance(source, hub.HubFile):
                if progress is not None:
                    progress(0.0, desc=f"Fetching {source} from Hugging Face")
                source = self.hub.fetch(source)
            specs.append(LoraSpec(path=str(source), strength=strength))
        return tuple(specs)

    @staticmethod
    def gpu_seconds(handler) -> Callable[..., int]:
        """A ZeroGPU duration for ``handler``: called with the handler's own arguments."""
        signature = inspect.signature(handler)

        def seconds(*args, **kwargs) -> int:
            given = signature.bind_partial(*args, **kwargs).arguments
            return gpu_seconds(given.get("n_takes", 1), given.get("steps", 8))
        return seconds

    def view(self, s, painter, msg, take_id=None, keep=True):
        sid = s.id if s else None
        try:
            value = painter_value(s, painter, take_id, keep)
        except session.DiskFull:  # the painter's files (views, a take's full WAV) could not be written
            return self.failed(s, painter, take_id, session.DiskFull(SAVED_NOT_SHOWN))
        seconds = value["track"]["duration"] if value["track"] else 0.0
        return [sid, value, status(msg), takes_update(s, take_id), versions_text(s), sid or "", session_text(s),
                session_signature(s), *ui_tempo.tempo_view(s, seconds)]

    def failed(self, s, painter, take_id, err):
        sid = s.id if s else None
        return [sid, gr.update(), status(err), takes_update(s, take_id), versions_text(s),
                sid or "", session_text(s), session_signature(s)] + [gr.update()] * len(ui_tempo.TEMPO_OUTPUTS)

    def sync(self, sid, seen, painter, take_id):
        """Timer: if the session on disk differs from what this tab shows (another tab's change, or
        takes of a run that finished after a reload), show it; the painter only if the current
        version changed. Otherwise change nothing."""
        s = self.latest(sid)
        sig = session_signature(s)
        if s is None or sig == seen:
            return [gr.update()] * (VIEW_OUTPUTS - 1)
        out = self.view(s, painter, None, take_id)
        out[3] = takes_update(s, take_id, leave_selection=True)  # Generate may pick its take meanwhile
        if sig.split("|")[0] == (seen or "").split("|")[0]:
            out[1] = gr.update()
        if sig.split("|")[-2:] == (seen or "").split("|")[-2:]:  # the grid is as shown: leave the fields being typed in
            out[-len(ui_tempo.TEMPO_OUTPUTS):] = [gr.update()] * len(ui_tempo.TEMPO_OUTPUTS)
        return out[:2] + out[3:]  # all but the status

    def latest(self, sid) -> session.Session | None:
        """The session `sid` as it is on disk now; None if there is none (or it was deleted)."""
        try:
            return session.open_session(self.cfg.sessions, sid) if sid else None
        except (OSError, ValueError):
            return None

    def stored(self, sid) -> session.Session:
        """The session to store into: the tab's, or a new one (the first time the user stores)."""
        s = self.latest(sid) or session.create(self.cfg.sessions)
        session.check_room(s, self.quota)
        return s

    def open(self, painter, request: gr.Request):
        """Page load: restore ?session= (nothing is created; a bad id is said once and dropped)."""
        sid = dict(request.query_params).get("session", "") if request else ""
        s, msg = None, "Load a clip to begin."
        if sid:
            try:
                s = session.open_session(self.cfg.sessions, sid)
                session.recover(s.folder)
                session.touch(s)
                msg = f"Welcome back: session {sid} restored."
            except session.SessionError as e:
                msg = e
            except (OSError, ValueError, KeyError):
                msg = session.SessionError(f"Session “{sid}” was not found (sessions unused for a while are "
                                           "deleted); load a clip to start a new one.")
        last = s.last if s else {}
        restored = [last.get(k, gr.update()) for k in ("prompt", "n_takes", "strength", "crossfade_ms", "snap",
                                                       "take_order")]
        return self.view(s, painter, msg, keep=False) + restored

    def cost(self, painter, model, steps, context):
        """Before Generate: how much audio the model will hear, and about how long a take takes
        here (known once this machine has made one)."""
        duration = painter.duration if painter else 0.0
        if not duration or painter.error:
            return ""
        try:
            intro = painter.extend_start_seconds
            _, spans = edit.spans(painter.regions, duration, painter.continue_seconds, intro)
            est = self.engine.estimate(model, duration + intro + painter.continue_seconds, spans, int(steps),
                                       CONTEXT_SECONDS[context])
        except PROBLEMS:  # Generate explains what is wrong
            return ""
        time = f"a take takes about {est.seconds:.0f} s here" if est.seconds is not None else \
            "how long a take takes here is known after the first one"
        return f"The model will hear {est.heard_seconds:.0f} s of audio; {time}."

    def encode_ahead(self, sid, model):
        """Encode the current version for ``model`` while the musician paints, so the first Generate
        starts at the steps (the engine gives way as soon as a Generate arrives)."""
        s = self.latest(sid)
        if not self.cfg.encode_ahead or s is None or s.current is None:
            return ""
        try:
            done = self.engine.encode_ahead(model, session.audio(s, "current"))
        except PROBLEMS:  # the next Generate says what is wrong, as a sentence
            return ""
        return f"Encoded ahead ({s.current.label}): edits start at the steps." if done else ""

    def load_file(self, sid, painter, path):
        s = self.latest(sid)
        if not path:
            return self.view(s, painter, gr.update())
        path = _path(path)
        try:
            audio, note = load_audio(path, self.cfg.limits)
            s = session.set_source(self.stored(sid), audio, f"source: {path.name}", note)
        except PROBLEMS as e:
            return self.failed(s, painter, None, e)
        msg = f"Loaded **{path.name}** ({audio.shape[1] / SAMPLE_RATE:.1f} s)."
        msg += f" Converted: {note}." if note else " 44.1 kHz stereo, used as is."
        return self.view(s, painter, msg, keep=False)

    def load_upload(self, sid, painter, path):
        """load_file, then empty the drop zone so the next file can be dropped at once; Gradio's
        temporary copy is deleted, read or refused (the session keeps its own)."""
        try:
            return self.load_file(sid, painter, path) + [None]
        finally:
            discard_upload(path)

    def load_demo(self, sid, painter, name):
        if not name:
            return self.failed(self.latest(sid), painter, None, ValueError("There are no demo clips in assets/."))
        return self.load_file(sid, painter, str(self.cfg.assets / name))

    def pick_model(self, name, progress=gr.Progress()):
        """Load the picked model now, so a download shows its progress before the first edit."""
        info = self.models[name]
        try:
            self.engine.prepare(name, lambda stage, done, total: progress(done / max(total, 1),
                                                                          desc=f"Loading {info.label}"))
            msg = f"Model **{info.label}** ready."
        except EngineError as e:
            msg = e
        return (gr.update(info=info.needs), info.default_steps, status(msg), gr.update(visible=info.guided),
                info.default_cfg, gr.update(maximum=int(info.max_seconds)))

    def sent_text(self, name, prompt):
        sent = prompt_for_model(prompt or "", self.models[name])
        return f"Sent to the model as: “{sent}”" if sent else ""

    def generate(self, sid, painter, model, prompt, seed, random_seed, n_takes, steps, strength, crossfade,
                 cfg=None, apg=1.0, negative="", guide=None, context="auto", match=False,
                 lora1=None, lora1_hub="", lora1_strength=1.0, lora2=None, lora2_hub="", lora2_strength=1.0,
                 request: gr.Request = None, progress=gr.Progress(), on_preview=None):
        loras = (lora1, lora1_hub, lora1_strength, lora2, lora2_hub, lora2_strength)  # LORA_SLOTS = 2
        seed = secrets.randbelow(2**31) if random_seed else int(seed or 0)
        s = self.latest(sid)
        try:
            if s is None or s.current is None:
                raise ValueError("Load or generate a clip first, then paint the regions to regenerate.")
            session.check_room(s, self.quota)
            source = session.audio(s, "current")
            if painter.error:
                raise ValueError(painter.error)
            regions, cont = painter.regions, painter.continue_seconds
            seconds = source.shape[1] / SAMPLE_RATE
            regions = edit.snap_regions(regions, seconds, beats=ui_tempo.snap_lines(s, painter.snap, seconds))
            intro = painter.extend_start_seconds
            guide_audio = load_audio(_path(guide), self.cfg.limits)[0] if guide else None
            info = self.models[model]
            specs = self.loras(loras, progress)
            reqs = [EditRequest(model=model, source=source, regions=regions, prompt=prompt or "", seed=seed + k,
                                steps=int(steps), continue_seconds=cont, extend_start_seconds=intro,
                                crossfade_ms=float(crossfade), context_seconds=CONTEXT_SECONDS[context],
                                match_loudness=bool(match), strength=float(strength), guide=guide_audio,
                                guidance=_guidance(cfg, apg, negative), loras=specs)
                    for k in range(int(n_takes))]
            session.remember(s, prompt=prompt or "", n_takes=int(n_takes), strength=float(strength),
                             crossfade_ms=float(crossfade))
        except PROBLEMS as e:
            return self.failed(s, painter, None, e) + [seed]
        settings = {"steps": int(steps), "strength": float(strength), "crossfade_ms": float(crossfade),
                    "continue_seconds": cont, "extend_start_seconds": intro, "prefix": info.prompt_prefix,
                    "loras": [{"file": Path(lo.path).name, "strength": lo.strength} for lo in reqs[0].loras]}
        made, msg, err, notes = self._takes(s, reqs, settings, progress, self.cancel_flag(request), on_preview,
                                            self.visitor(sid, request))
        if err is not None:
            return self.failed(session.reload(s), painter, made[-1] if made else None, err) + [seed]
        if made and not msg:
            msg = f"{len(made)} take{'s' if len(made) > 1 else ''} ready (seed {seed}). Press B to compare."
        msg = " ".join(filter(None, [msg, *notes]))
        return self.view(session.reload(s), painter, msg, made[0] if made else None) + [seed]

    def _takes(self, s, reqs, settings, progress, flag: Path, on_preview=None, who=("", "")):
        """Run the edit requests (made from s.current) and store each take as it finishes;
        ``on_preview`` hears each take's step previews (see ``with_previews``). Each take waits its
        turn at the gate (``who``: this visitor's session and client keys), so the takes of visitors
        interleave, one take each. Returns (take ids, message if cancelled, error if one failed, the takes' notes)."""
        made, notes, n, encoded = [], [], len(reqs), []
        flag.unlink(missing_ok=True)
        for k, req in enumerate(reqs):
            try:
                with self.gate.turn(*who, _waiting(progress, flag, k, n)):
                    take = self.engine.edit(req, engine_progress(progress, flag, k, n, encoded), preview=on_preview)
                _, rec = session.add_take(s, take, req.prompt, settings, self.engine.made_on(req.model))  # s: its base
            except Cancelled:
                flag.unlink(missing_ok=True)
                return made, f"Cancelled after {len(made)} of {n} takes; finished takes are kept.", None, notes
            except PROBLEMS as e:  # session.DiskFull too: the takes made before are kept
                return made, "", e, notes
            made.append(rec.id)
            notes += [note for note in take.notes if note not in notes]
            if k == 0 and not encoded:
                notes.append("The track was already encoded, so the take went straight to the steps.")
        flag.unlink(missing_ok=True)
        return made, "", None, notes

    def generate_source(self, sid, painter, prompt, seconds, seed, random_seed, model, steps, cfg, apg, negative,
                        lora1=None, lora1_hub="", lora1_strength=1.0, lora2=None, lora2_hub="", lora2_strength=1.0,
                        request: gr.Request = None, progress=gr.Progress(), on_preview=None):
        loras = (lora1, lora1_hub, lora1_strength, lora2, lora2_hub, lora2_strength)  # LORA_SLOTS = 2
        seed = secrets.randbelow(2**31) if random_seed else int(seed or 0)
        s, flag = self.latest(sid), self.cancel_flag(request)
        try:
            if s is not None:
                session.check_room(s, self.quota)
            flag.unlink(missing_ok=True)
            req = GenerateRequest(model=model, prompt=prompt or "", seconds=float(seconds), seed=seed,
                                  steps=int(steps), guidance=_guidance(cfg, apg, negative),
                                  loras=self.loras(loras, progress))
            with self.gate.turn(*self.visitor(sid, request), _waiting(progress, flag, 0, 1)):
                take = self.engine.generate(req, engine_progress(progress, flag, 0, 1), preview=on_preview)
            # stored only now: a failed or cancelled first generation leaves no session folder behind
            s = session.set_source(s or session.create(self.cfg.sessions), take.audio,
                                   f"generated: “{prompt}” (seed {seed})",
                                   made_by=recipe.to_recipe(take, {}, **self.engine.made_on(model)))
        except Cancelled:
            return self.failed(s, painter, None, ValueError("Cancelled.")) + [seed]
        except PROBLEMS as e:
            return self.failed(s, painter, None, e) + [seed]
        return self.view(s, painter, f"Generated a {seconds:.0f} s source from your prompt.", keep=False) + [seed]

    def cancel_flag(self, request: gr.Request | None) -> Path:
        """The file whose existence stops this tab's running generation: a file, because on ZeroGPU
        the generation runs in another process; per tab (Gradio's session hash), so Cancel never
        stops another tab's run on the same session; a temporary name, so start-up removes it."""
        key = hashlib.sha256((getattr(request, "session_hash", None) or "").encode()).hexdigest()[:16]
        return self.cfg.sessions / f"{TEMP_PREFIX}cancel-{key}"

    def cancel(self, request: gr.Request) -> None:
        """Leave this tab's flag; the running generation's progress callback sees it."""
        self.cancel_flag(request).touch()

    def pick_take(self, sid, painter, take_id):
        shown = take_id.replace('t', 'take ', 1) if take_id else '—'
        return self.view(self.latest(sid), painter, f"Comparing with {shown}: press A / B (or the B key) "
                         "to switch at the same playhead.", take_id)

    def seam_borders(self, sid, take_id):
        """The borders of the take heard as B, to pick one to loop; the loops emptied."""
        s = self.latest(sid)
        none = gr.update(choices=[], value=None)
        if s is None or not s.live_takes:
            return none, None, None, status(NO_TAKE_SEAMS)
        if not take_id:
            return none, None, None, status("Pick a take to hear its seams.")
        try:
            found = seams.take_borders(s, take_id)
        except PROBLEMS as e:
            return none, None, None, status(e)
        label = session.take_label(s.take(take_id))
        measured = _fit(s, s.take(take_id), ui_tempo.take_grid(s, s.take(take_id))).borders
        choices = [(b.choice(), b.border.sample) for b in measured] or [(b.choice(), b.sample) for b in found]
        return (gr.update(choices=choices, value=None), None, None,
                status(f"{len(found)} border{'s' * (len(found) != 1)} in {label}: pick one to loop it."))

    def order_takes(self, sid, order, take_id):
        """The takes listed in ``order`` (a key of fit.ORDERS), kept with the session for its other tabs."""
        s = self.latest(sid)
        if s is None or order not in fit.ORDERS:
            return gr.update()
        try:
            s = session.remember(s, take_order=order)
        except PROBLEMS:  # a full disk: this tab still orders its list
            s = replace(s, last={**s.last, "take_order": order})
        return takes_update(s, take_id)

    def seam_loop(self, sid, take_id, border, pre, post):
        """A and B looped around ``border`` (samples on the take's axis), cut from the files."""
        s = self.latest(sid)
        try:
            if s is None or s.current is None or not take_id:
                raise ValueError(NO_TAKE_SEAMS if s is None or not s.live_takes else "Pick a take to hear its seams.")
            if border is None:
                raise ValueError("Pick a border to loop.")
            heard = seams.audition(s, take_id, int(border), float(pre), float(post))
            a, b = wav_bytes(heard.a), wav_bytes(heard.b)
        except PROBLEMS as e:
            return None, None, status(e)
        t = s.take(take_id)
        made_from = "" if t.base == s.current.id else " (A is the current version, not the one this take was made from)"
        return (a, b,
                status(f"Looping {heard.start / SAMPLE_RATE:.2f}–{heard.end / SAMPLE_RATE:.2f} s of "
                       f"{session.take_label(t)}{made_from}: both loop; A ⇄ B switches at the same spot."))

    def accept(self, sid, painter, take_id):
        return self._act_on_take(sid, painter, take_id, "accept", session.accept,
                                 lambda label: f"Accepted {label}: it is now the current version.", keep=False)

    def discard(self, sid, painter, take_id):
        return self._act_on_take(sid, painter, take_id, "discard", session.discard,
                                 lambda label: f"Discarded {label} (its file stays in the session folder).")

    def _act_on_take(self, sid, painter, take_id, verb, act, said, **view):
        """``act(session, take_id)`` (accept or discard), then the view with ``said(the take's label)``."""
        s = self.latest(sid)
        try:
            if not take_id or s is None:
                raise ValueError(f"Pick a take to {verb} first.")
            s = act(s, take_id)
        except PROBLEMS as e:
            return self.failed(s, painter, None, e)
        return self.view(s, painter, said(session.take_label(s.take(take_id))), **view)

    def undo(self, sid, painter, take_id):
        return self._walk_versions(sid, painter, take_id, session.undo, "Undone.", "Nothing to undo.")

    def redo(self, sid, painter, take_id):
        return self._walk_versions(sid, painter, take_id, session.redo, "Redone.", "Nothing to redo.")

    def _walk_versions(self, sid, painter, take_id, step, moved_msg, stuck_msg):
        """Undo or redo: ``step(session) -> (session, moved)``, then the view saying which happened."""
        s = self.latest(sid)
        s, moved = step(s) if s else (s, False)
        return self.view(s, painter, moved_msg if moved else stuck_msg, take_id)

    def export(self, sid, fmt, what):
        s = self.latest(sid)
        try:
            if not what or s is None or s.current is None:
                raise ValueError("Pick a take to export first." if s and s.current else "Nothing to export yet.")
            path = session.export(s, what, fmt, name=ui_loops.file_stem(s, what))
        except PROBLEMS as e:
            return None, status(e)
        return str(path), status(f"Exported **{path.name}** with its settings in {path.with_suffix('.json').name}.")


def _path(file) -> Path:
    """The path of a gr.File / gr.Audio value (a str, or an object with .name)."""
    return Path(file if isinstance(file, str) else file.name)


def _guidance(cfg, apg, negative) -> Guidance:
    return Guidance(cfg_scale=None if cfg is None else float(cfg), apg_scale=float(apg), negative_prompt=negative or "")


def with_previews(handler: Callable, outputs: int) -> Callable:
    """A generator handler over ``handler`` (one that passes ``on_preview`` to the engine), for an
    event whose inputs are the "Show step previews" checkbox and then ``handler``'s, and whose
    outputs are ``handler``'s (``outputs`` of them) and then the preview image.

    Unticked, it yields ``handler``'s result once (no preview is made). Ticked, ``handler`` runs in
    a thread (in this event's context, so gr.Progress still reports) and every Preview the engine
    makes is yielded as a spectrogram when it arrives (the newest, when several wait), then the
    result. Cancel works as before (the engine's progress callback raises)."""
    params = [p for p in inspect.signature(handler).parameters.values() if p.name != "on_preview"]
    checkbox = inspect.Parameter("show_previews", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    keep = [gr.update()] * outputs

    def run(show_previews, *args):
        if not show_previews:
            yield [*handler(*args), gr.update()]
            return
        yield keep + [gr.update(value=None, label="Step preview", visible=True)]
        events: queue.Queue = queue.Queue()
        work = lambda: events.put(("done", handler(*args, on_preview=lambda p: events.put(("preview", p)))))
        threading.Thread(target=contextvars.copy_context().run, args=(_reporting(work, events),), daemon=True).start()
        while True:
            waiting = [events.get()]
            while not events.empty():
                waiting.append(events.get())
            shown = [value for kind, value in waiting if kind == "preview"]
            if shown:
                yield keep + [preview_image(shown[-1])]
            for kind, value in waiting:
                if kind == "done":
                    yield [*value, gr.update()]
                    return
                if kind == "error":
                    raise value

    run.__signature__ = inspect.Signature([checkbox, *params])
    run.__annotations__ = handler.__annotations__  # Gradio finds gr.Request by its annotation
    run.__name__ = handler.__name__
    return run


def _reporting(work: Callable, events: queue.Queue) -> Callable:
    """``work`` that puts ("error", e) on ``events`` instead of dying silently in its thread."""
    def run():
        try:
            work()
        except BaseException as e:  # noqa: BLE001 - re-raised by the generator that waits for it
            events.put(("error", e))
    return run


PREVIEW_COLUMNS = 800  # a preview's image width: a short region is stretched to it, as the painter stretches


def preview_image(p: Preview):
    """The image update for a step preview: its spectrogram as the painter draws one (magma mel),
    PREVIEW_COLUMNS wide whatever the span's length."""
    rgb = spectrogram_rgb(p.audio)
    rgb = rgb[:, np.linspace(0, rgb.shape[1] - 1, PREVIEW_COLUMNS).round().astype(int)]
    end = p.start + p.audio.shape[1] / SAMPLE_RATE
    return gr.update(value=rgb, label=f"Step preview · step {p.step}/{p.steps} · {p.start:.1f}–{end:.1f} s",
                     visible=True)


def _waiting(progress, flag: Path, k: int, n: int) -> Callable[[fair.Place], None]:
    """What a take waiting at the gate hears: raises Cancelled once the flag file exists, else
    shows why it waits on the status line."""
    def wait(place: fair.Place) -> None:
        if flag.exists():
            raise Cancelled()
        others, yours = place.ahead - place.yours, place.yours
        ahead = " and ".join(filter(None, [f"{others} of other visitors" if others else "",
                                           f"{yours} of yours" if yours else ""]))
        progress(k / n, desc=f"Take {k + 1}/{n} · waiting for its turn: {place.ahead} take"
                             f"{'s' * (place.ahead != 1)} ahead ({ahead}); visitors take turns, one take each")
    return wait


def discard_upload(path) -> None:
    """Delete an upload's file and its per-upload folder, only inside Gradio's upload folder."""
    if not path:
        return
    file = Path(path if isinstance(path, str) else path.name).resolve()
    root = Path(gr.utils.get_upload_folder()).resolve()
    if root not in file.parents:
        return
    file.unlink(missing_ok=True)
    if file.parent != root:
        with contextlib.suppress(OSError):  # not empty: another upload of the same content
            file.parent.rmdir()
