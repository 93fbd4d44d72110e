"""Loops: N bars whose end flows into their start, healed across the wrap through the Engine API.

A loop of N bars is cut from a track at a bar line, exactly ``Grid.loop_samples(N)`` samples long
(see studio/meter.py for the rounding). Played round, its last sample runs into its first: the
*wrap*, usually a seam. ``heal`` turns the loop (``np.roll``) so that the wrap sits in its middle on
a latent grid line, asks the engine for one edit that regenerates a short span around the wrap
with the loop's own audio on both sides as context, and turns the result back. The engine's splice
keeps every sample outside the span bit for bit, and the span's crossfades lie at its borders, so
the wrap itself is inside generated audio. ``generate_loop`` makes a clip of exactly N bars at a
BPM (stated in the prompt the model reads) and heals it the same way.

Every heal is described by a *step*, a small dict the recipe records beside the edit's request
(studio/recipe.py): where the loop was cut from its input (``start``, ``samples``), how far it was
turned (``turn``) and whether the output is the loop alone or the input with the healed loop in
place (``in_place``, how the studio stores a loop as a take of its track). ``source_of`` and
``output_of`` are the two halves of that description, used both here and by a replay.

Pure numpy over studio.api: it runs with the fake engine, the real one or a Ray engine alike.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, fields, replace

import numpy as np

from studio import edit
from studio.api import LATENT_HOP, SAMPLE_RATE, EditRequest, GenerateRequest, Progress, Region, Take
from studio.meter import Grid, with_bpm

SPAN_SECONDS = 1.0  # the default healed span: the whole beats closest to this, snapped outward to the latent grid
NAME_CHARS = 48     # the prompt's part of a file name is cut to this many characters (at a word)


@dataclass(frozen=True)
class Healed:
    """A healed loop. ``take``: its audio is the output (the loop, or with ``step["in_place"]`` the
    input with the healed loop at ``step["start"]``), its regions the healed pieces on that axis
    (the loop's last samples and its first), its request the edit of the turned loop. ``step``:
    what the recipe records so a replay remakes it (see the module doc)."""
    take: Take
    step: dict

    @property
    def loop(self) -> np.ndarray:
        """(2, samples): the healed loop itself."""
        start = self.step["start"] if self.step["in_place"] else 0
        return self.take.audio[:, start:start + self.step["samples"]]


def loop_start(grid: Grid, first_bar: int, sr: int = SAMPLE_RATE) -> int:
    """The sample where bar ``first_bar`` begins (the loop's first sample); ValueError before 0."""
    start = edit.to_samples(grid.time(first_bar), sr)
    if start < 0:
        raise ValueError(f"Bar {first_bar} begins before the track does ({grid.time(first_bar):.2f} s): "
                         "start the loop at a later bar.")
    return start


def cut(track: np.ndarray, grid: Grid, bars: int, first_bar: int = 1) -> tuple[int, int]:
    """(start, samples) of the loop of ``bars`` bars from bar ``first_bar`` of ``track`` (2, N);
    ValueError (a sentence) when the track ends before the loop does."""
    start, samples = loop_start(grid, first_bar), grid.loop_samples(bars)
    if start + samples > track.shape[1]:
        have = max(0.0, (track.shape[1] - start) / SAMPLE_RATE)
        raise ValueError(f"{bars} bar{'s' * (bars != 1)} of {grid.meter} at {grid.bpm:g} BPM last "
                         f"{samples / SAMPLE_RATE:.2f} s, but the track holds {have:.2f} s from bar {first_bar}: "
                         "choose fewer bars or an earlier bar.")
    return start, samples


def turn_for(samples: int) -> int:
    """How far a loop of ``samples`` is turned: its wrap moves to the latent grid line nearest below its middle."""
    return samples // 2 // LATENT_HOP * LATENT_HOP


def source_of(audio: np.ndarray, step: dict) -> np.ndarray:
    """The edit's source for ``step``: the loop cut from ``audio`` (2, N) and turned, (2, samples)."""
    loop = edit.fit(audio[:, step["start"]:], step["samples"])
    return np.roll(loop, step["turn"], axis=1)


def output_of(audio: np.ndarray, take: Take, step: dict) -> Take:
    """``take`` (the engine's edit of ``source_of(audio, step)``) as the step's output: turned back,
    and with ``in_place`` put into a copy of ``audio``; its regions moved to that axis."""
    n, turn, start = step["samples"], step["turn"], step["start"] if step["in_place"] else 0
    out = np.roll(take.audio, -turn, axis=1)
    if step["in_place"]:
        out = np.concatenate([audio[:, :start], out, audio[:, start + n:]], axis=1).astype(np.float32)
    (a, b), sr = _samples(take.regions[0]), SAMPLE_RATE
    pieces = (Region(start / sr, (start + b - turn) / sr), Region((start + n - (turn - a)) / sr, (start + n) / sr))
    return replace(take, audio=out, regions=pieces)


def _samples(r: Region) -> tuple[int, int]:
    return edit.to_samples(r.start), edit.to_samples(r.end)


def healed_span(grid: Grid, samples: int, span_seconds: float | None = None) -> Region:
    """The span regenerated around the wrap of a turned loop of ``samples``: ``span_seconds`` (None:
    the whole beats nearest SPAN_SECONDS, at most a quarter of the loop's) centred on the wrap, snapped
    outward by the one rule. ValueError when it would take more than half the loop (the loop's own
    audio is its context)."""
    if span_seconds is None:
        beats = min(round(SPAN_SECONDS / grid.beat_seconds), round(samples / SAMPLE_RATE / grid.beat_seconds) // 4)
        span_seconds = max(1, beats) * grid.beat_seconds
    if not np.isfinite(span_seconds) or span_seconds <= 0:
        raise ValueError(f"The healed span must be more than 0 seconds, got {span_seconds!r}.")
    wrap, duration = turn_for(samples) / SAMPLE_RATE, samples / SAMPLE_RATE
    (span,) = edit.snap_regions([Region(max(0.0, wrap - span_seconds / 2),
                                        min(duration, wrap + span_seconds / 2))], duration)
    if span.end - span.start > duration / 2 + edit.SNAP_TOLERANCE:
        raise ValueError(f"Healing {span.end - span.start:.2f} s around the wrap would regenerate more than half "
                         f"of this {duration:.2f} s loop: heal a shorter span or loop more bars.")
    return span


def heal(engine, track: np.ndarray, grid: Grid, bars: int, *, first_bar: int = 1, in_place: bool = False,
         span_seconds: float | None = None, progress: Progress | None = None, **request) -> Healed:
    """Heal the loop of ``bars`` bars from bar ``first_bar`` of ``track`` (2, N) across its wrap with
    one ``engine.edit``; ``request``: the EditRequest's other fields (model, prompt, seed, steps,
    crossfade_ms, guidance, loras...). Outside the healed span the output is the input bit for bit."""
    start, samples = cut(track, grid, bars, first_bar)
    step = {"start": start, "samples": samples, "turn": turn_for(samples), "in_place": bool(in_place),
            "bars": bars, "grid": {"bpm": grid.bpm, "meter": grid.meter}}
    req = EditRequest(source=source_of(track, step), regions=(healed_span(grid, samples, span_seconds),), **request)
    return Healed(output_of(track, engine.edit(req, progress), step), step)


def generate_loop(engine, grid: Grid, bars: int, *, span_seconds: float | None = None,
                  progress: Progress | None = None, **request) -> tuple[Take, Healed]:
    """(the generated clip, the loop healed from it): a clip of exactly ``grid.loop_samples(bars)``
    samples made from the prompt with the grid's BPM written into it (``meter.with_bpm``), then
    healed at its wrap. ``request``: model, prompt, seed and the other request fields (those a
    GenerateRequest lacks, like crossfade_ms, go to the heal only)."""
    samples = grid.loop_samples(bars)
    request = {**request, "prompt": with_bpm(request.get("prompt", ""), grid.bpm)}
    shared = {f.name for f in fields(GenerateRequest)}
    made = engine.generate(GenerateRequest(seconds=samples / SAMPLE_RATE,
                                           **{k: v for k, v in request.items() if k in shared}), progress)
    clip = edit.fit(made.audio, samples)
    made = replace(made, audio=clip)
    on_clip = Grid(grid.bpm, grid.beats_per_bar, grid.beat_unit, 0.0)  # the clip starts on the one
    return made, heal(engine, clip, on_clip, bars, span_seconds=span_seconds, progress=progress, **request)


def take_name(prompt: str, bpm: float | None = None, bars: int | str | None = None, tag: str = "",
              ext: str = ".wav") -> str:
    """A file name a DAW or a desktop shows well: 'lofi-house_120bpm_4bars_t003.wav'.

    The prompt's words (ASCII letters and digits, a tempo it states left out: the BPM has its own
    part) cut to NAME_CHARS at a word; ``bars`` an int (a loop's length: '4bars') or a range
    ('9–12': 'bars9-12'); ``tag`` e.g. a take id. Only [a-z0-9._-]: no path, no hidden file."""
    text = unicodedata.normalize("NFKD", prompt or "").encode("ascii", "ignore").decode().lower()
    text = re.sub(r"\d+(?:\.\d+)?\s*bpm\b", " ", text)
    words = re.findall(r"[a-z0-9]+", re.sub(r"(tracktype|vocaltype)\s*:\s*\w+", " ", text))  # the model's prefix
    slug = ""
    for word in words:
        if len(slug) + len(word) + 1 > NAME_CHARS:
            break
        slug = f"{slug}-{word}" if slug else word
    parts = [slug or "sa3"]
    if bpm:
        parts.append(f"{round(bpm, 1):g}bpm".replace(".", "p"))  # a found tempo (120.131) named as 120.1
    if isinstance(bars, int):
        parts.append(f"{bars}bar{'s' * (bars != 1)}")
    elif bars:
        parts.append("bars" + re.sub(r"[^0-9.]+", "-", str(bars)).strip("-"))
    parts.append(re.sub(r"[^a-z0-9]+", "", tag.lower()))
    return "_".join(p for p in parts if p) + re.sub(r"[^a-z0-9.]", "", ext.lower())
