"""Generate and edit audio with Stable Audio 3 from the command line (batch use).

    python -m studio generate "lofi house loop, 90 BPM" --seconds 30 -o loop.wav
    python -m studio edit song.wav --regions 4:8,16:20 --prompt "drum fill" -o fixed.flac
    python -m studio edit song.wav --continue 10 --prompt "outro" -o longer.wav
    python -m studio edit song.wav --bars 9:12 --bpm 120 --prompt "drum fill" -o fill.wav
    python -m studio loop song.wav --bars 4 --bpm 120 -o loop.wav    # bars 1-4, healed across the wrap
    python -m studio loop --prompt "lofi house" --bars 4 --bpm 90 -o loop.wav
    python -m studio replay fixed.json -o again.flac     # the same take again, from its side-car

Every run writes the audio (atomically) and a side-car JSON holding everything the take depends
on (studio/recipe.py), like the studio's export; `replay` makes the take again from it. Every
argument is checked before a model is loaded; a problem is one line on stderr (`--debug` adds
the traceback of an unexpected one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import traceback
from dataclasses import asdict, replace
from pathlib import Path

from studio import loops, recipe, seams, tempo
from studio.api import (CROSSFADE_MS, LATENT_HOP, MAX_CFG, MAX_SEED, MAX_STEPS, SAMPLE_RATE, Cancelled, EditRequest,
                        EngineError, LoraSpec, GenerateRequest, Guidance, Region, check_length)
from studio.meter import MAX_BPM, MAX_LOOP_BARS, MIN_BPM, Grid

FORMATS = {".wav": "wav24", ".flac": "flac", ".mp3": "mp3"}
MIN_SECONDS = LATENT_HOP / SAMPLE_RATE  # one latent frame (~0.093 s): the shortest clip a model makes


class Refused(Exception):
    """A run the arguments make impossible; str(e) is the sentence shown (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"error: {message}; see `{self.prog} --help`.\n")


def number(kind: type, rule: str, low: float, high: float = math.inf, above: bool = False):
    """An argparse type: ``kind`` (int or float) within [low, high] ((low, high] when ``above``);
    NaN, infinity and anything else is refused with ``rule`` (what the value must be)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low or (above and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value

    return parse


SECONDS = number(float, f"a length in seconds of at least {MIN_SECONDS:.3f} (one latent frame)", MIN_SECONDS)
NON_NEGATIVE = number(float, "a number of at least 0", 0.0)
STRENGTH = number(float, "a number above 0 and at most 1", 0.0, 1.0, above=True)
STEPS = number(int, f"a whole number from 1 to {MAX_STEPS}", 1, MAX_STEPS)
SEED = number(int, f"a whole number from 0 to {MAX_SEED} (2**63 - 1)", 0, MAX_SEED)
CFG = number(float, f"a number from 0 to {MAX_CFG:g}", 0.0, MAX_CFG)
APG = number(float, "a number from 0 to 1", 0.0, 1.0)
BPM = number(float, f"a tempo from {MIN_BPM:g} to {MAX_BPM:g} (quarter notes a minute)", MIN_BPM, MAX_BPM)
BARS = number(int, f"a whole number of bars from 1 to {MAX_LOOP_BARS}", 1, MAX_LOOP_BARS)
BAR = number(int, "a bar number of at least 1", 1)


def parse_regions(text: str) -> tuple[Region, ...]:
    """``"4:8,16:20"`` -> regions in seconds; clear errors for anything else."""
    regions = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            start, end = (float(x) for x in part.split(":"))
        except ValueError:
            start = end = math.nan
        if not (math.isfinite(start) and math.isfinite(end)):
            raise argparse.ArgumentTypeError(f"region {part!r} is not START:END in seconds (e.g. 4:8.5)")
        regions.append(Region(start=start, end=end))
    return tuple(regions)


def parse_bars(text: str) -> tuple[str, ...]:
    """``"9:12,17-20"`` -> the ranges as typed (read with the track's grid once it is known), each
    checked now as meter.Grid.parse_range reads it."""
    parts = tuple(filter(None, (p.strip() for p in text.split(","))))
    for part in parts or (text,):
        try:
            Grid(120.0).parse_range(part)  # the syntax only: any grid reads the same text
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parts


def parse_meter(text: str) -> tuple[int, int]:
    try:
        beats, unit = Grid.parse_meter(text)
        Grid(120.0, beats, unit)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return beats, unit


def parse_lora(text: str) -> LoraSpec:
    """``PATH[:STRENGTH]`` -> a LoraSpec; the strength is what follows the last colon when it is a number."""
    path, _, strength = text.rpartition(":")
    if not path:
        path, strength = text, "1"
    try:
        value = float(strength)
    except ValueError:
        path, value = text, 1.0
    try:
        return LoraSpec(path=path, strength=value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--model", default=None,
                        help="small-music, small-sfx, medium (or a -base variant, a Hugging Face repo id, "
                             "or a local checkpoint folder); default: medium with a GPU, else small-music")
    common.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    common.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",  # models.precision.CHOICES
                        help="auto: bf16 where the device computes it natively (AVX512-BF16/AMX CPUs, recent GPUs), "
                             "else fp32")
    common.add_argument("--token", default=None, help="Hugging Face token for gated repos (default: HF_TOKEN / login)")
    common.add_argument("--seed", type=SEED, default=None, help="random seed; the same seed gives the same take "
                                                                 "(default: random, printed)")
    common.add_argument("--steps", type=STEPS, default=None,
                        help=f"sampling steps, 1 to {MAX_STEPS} (default: the model's: 8, or 50 for -base models)")
    common.add_argument("--cfg", type=CFG, default=None,
                        help="-base models: classifier-free guidance scale (default 7; 1 turns guidance off)")
    common.add_argument("--apg", type=APG, default=1.0,
                        help="-base models: adaptive projected guidance, 1 = full APG, 0 = plain CFG (default 1)")
    common.add_argument("--negative-prompt", default="", help="-base models: what the take should avoid")
    common.add_argument("--lora", dest="loras", type=parse_lora, action="append", default=[], metavar="PATH[:STRENGTH]",
                        help="a LoRA adapter (.safetensors file, or owner/repo/file.safetensors on Hugging Face) "
                             "at a strength (default 1); repeat to stack several, in order")
    common.add_argument("-o", "--output", type=Path, required=True,
                        help="output file, .wav (24-bit), .flac or .mp3; a .json side-car is written beside it")
    common.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    parser = _Parser(prog="python -m studio", description=__doc__.split("\n\n")[0],
                     epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", parents=[common], help="text-to-audio, or audio-to-audio with --init")
    gen.add_argument("prompt", help="what to make; the model's TrackType prefix is added when missing")
    gen.add_argument("--seconds", type=SECONDS, default=30.0,
                     help="length in seconds (default 30; at most the model's longest clip)")
    gen.add_argument("--init", type=Path, default=None, help="audio-to-audio: a file to start from")
    gen.add_argument("--strength", type=STRENGTH, default=0.7,
                     help="audio-to-audio, above 0 and at most 1: 1 ignores --init, near 0 returns it (default 0.7)")

    ed = sub.add_parser("edit", parents=[common], help="regenerate regions of a track and/or continue it")
    ed.add_argument("source", type=Path, help="the track to edit (WAV, FLAC, OGG, MP3; never modified)")
    ed.add_argument("--prompt", required=True, help="what the regions should hold")
    ed.add_argument("--regions", type=parse_regions, default=(),
                    help="START:END seconds, comma separated, e.g. 4:8,16:20")
    ed.add_argument("--continue", dest="continue_seconds", type=NON_NEGATIVE, default=0.0,
                    help="append this many seconds of new audio after the end")
    ed.add_argument("--extend-start", dest="extend_start_seconds", type=NON_NEGATIVE, default=0.0,
                    help="put this many seconds of new audio before the start (an intro); the track follows unchanged")
    ed.add_argument("--context", type=NON_NEGATIVE, default=None,
                    help="seconds of the track the model hears on each side of the regions "
                         "(default: the whole track while it fits the model)")
    ed.add_argument("--crossfade-ms", type=NON_NEGATIVE, default=CROSSFADE_MS,
                    help="equal-power crossfade at region borders")
    ed.add_argument("--match-loudness", action="store_true",
                    help="scale each region to the loudness of the 2 s around it (within ±12 dB)")
    ed.add_argument("--strength", type=STRENGTH, default=1.0,
                    help="above 0 and at most 1: 1 regenerates the regions from noise; lower keeps more of their shape")
    ed.add_argument("--guide", type=Path, default=None,
                    help="audio-to-audio: restyle the regions from this file (aligned to the track's start) "
                         "instead of the track itself; needs --strength below 1")
    ed.add_argument("--bars", type=parse_bars, default=(),
                    help="regions as bars, both ends included, comma separated: 9:12 is bars 9 to 12, 9.3:10 from "
                         "beat 3 of bar 9 to the end of bar 10 (the grid: --bpm, --meter, --downbeat, else found)")
    _timing(ed)
    lp = sub.add_parser("loop", parents=[common], help="heal a file's loop across its wrap, or generate a loop")
    lp.add_argument("source", type=Path, nargs="?", default=None,
                    help="the track whose loop to heal (its bars from --from-bar); without it, --prompt makes one")
    lp.add_argument("--prompt", default=None,
                    help="what the loop is; without a file, a loop is generated from it (its BPM written into it)")
    lp.add_argument("--bars", type=BARS, required=True, help="the loop's length in bars")
    lp.add_argument("--from-bar", type=BAR, default=1, help="the loop's first bar in the file (default 1)")
    lp.add_argument("--span", type=SECONDS, default=None,
                    help="seconds regenerated across the wrap (default: the whole beats nearest 1 s, at most a "
                         "quarter of the loop), snapped outward to the latent grid")
    lp.add_argument("--crossfade-ms", type=NON_NEGATIVE, default=CROSSFADE_MS,
                    help="equal-power crossfade at the healed span's borders")
    _timing(lp)
    rep = sub.add_parser("replay", help="make a take again from its side-car JSON (bit-exact on the same "
                                        "machine and precision)")
    rep.add_argument("sidecar", type=Path, help="the .json written beside an export")
    rep.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    rep.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                     help="default: the precision the take was made in (its side-car's 'precision'), the only "
                          "one that remakes it bit for bit")
    rep.add_argument("--token", default=None, help="Hugging Face token for gated repos")
    rep.add_argument("-o", "--output", type=Path, required=True, help="output file, .wav (24-bit), .flac or .mp3")
    rep.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    return parser


def _timing(parser) -> None:
    """The bar grid's flags (studio.meter.Grid)."""
    parser.add_argument("--bpm", type=BPM, default=None,
                        help="the track's tempo in quarter notes a minute, as a DAW counts (default: found by "
                             "studio.tempo)")
    parser.add_argument("--meter", type=parse_meter, default=None,
                        help="beats/unit, e.g. 4/4, 3/4, 6/8 (default 4/4, or as found with the tempo)")
    parser.add_argument("--downbeat", type=NON_NEGATIVE, default=None,
                        help="seconds where bar 1 begins (default 0 with --bpm, or as found with the tempo)")


# --------------------------------------------------------------------------- checks before any work


def check_output(output: Path, inputs: list[Path]) -> str:
    """The export format of ``output``, or Refused when it cannot be written or would overwrite an input."""
    if output.is_dir():
        raise Refused(f"--output {output} is a folder: give a file name, such as {output / 'out.wav'}.")
    fmt = FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise Refused(f"--output must end in .wav, .flac or .mp3, got {output.name!r}.")
    folder = output.absolute().parent  # where atomic_write puts its temporary file
    if not folder.is_dir():
        raise Refused(f"The folder of --output, {folder}, does not exist: create it first, or choose another path.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Refused(f"The folder {folder} is not writable: choose another --output.")
    for written in (output, output.with_suffix(".json")):
        for source in inputs:
            if _same_file(written, source):
                raise Refused(f"--output would overwrite {source} ({written.name}); the source is never "
                              "modified: choose another output name.")
    return fmt


def _same_file(a: Path, b: Path) -> bool:
    """The same file, through symlinks and hard links."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def check_seconds(args) -> None:
    """--seconds within a catalogue model's range, known before loading it (others: the engine
    checks once the model's config is read, still before any sampling)."""
    from studio.catalog import model_info

    info = model_info(args.model)
    if args.command == "generate" and info is not None:
        check_length(args.seconds, info)


def inputs(args) -> list[Path]:
    """The files a run reads; the output must overwrite none of them."""
    if args.command == "replay":
        return [args.sidecar, *_recorded_files(args.sidecar)]
    read = {"generate": ("init",), "loop": ("source",)}.get(args.command, ("source", "guide"))
    read = [getattr(args, name) for name in read]
    return [p for p in read if p is not None]


def _recorded_files(sidecar: Path) -> list[Path]:
    """The files a side-car names (none if it cannot be read: replaying it says why)."""
    try:
        return recipe.files(_sidecar(sidecar))
    except ValueError:
        return []


# --------------------------------------------------------------------------- the run


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except Refused as e:
        _say(f"error: {e}")
        return 2
    except (EngineError, ValueError) as e:  # AudioError, a region outside the clip, a bad length...
        _say(f"error: {_sentence(e)}")
        return 1
    except (Cancelled, KeyboardInterrupt):
        _say("cancelled")
        return 130
    except Exception as e:  # a bug or something unforeseen: still one line, the traceback on request
        if args.debug:
            traceback.print_exc()
        from models.loading import first_line
        _say(f"error: unexpected {type(e).__name__}: {first_line(e)}"
             + ("." if args.debug else "; run with --debug for details."))
        return 1


def run(args) -> int:
    from studio import audio_io
    from studio.engine import RealEngine, default_model

    data = _sidecar(args.sidecar) if args.command == "replay" else None
    if data is None:
        args.model = args.model or default_model()
        check_seconds(args)
    fmt = check_output(args.output, inputs(args))
    audio_io.check_writable(fmt)  # MP3 needs libsndfile >= 1.1: said now, not after the compute
    precision = args.precision or _recorded(data, "precision") or "auto"
    if precision not in ("auto", "fp32", "bf16"):  # fp16: a dtype given to the engine, not a --precision
        precision = "auto"
    engine = RealEngine(device=args.device, token=args.token, precision=precision,  # refuses a missing device
                        revision=_recorded(data, "revision"))
    if args.command == "loop":
        take, sidecar = _loop(engine, args)
    elif data is None:
        req, files, bars = _request(args)  # audio read before any model
        take = _make(engine, req)
        sidecar = recipe.to_recipe(take, files, **engine.made_on(req.model), **bars)
    else:
        take, sidecar = _replay(engine, data)
    for note in take.notes:
        _say(f"note: {note}")
    audio_path, json_path = audio_io.export(args.output, take.audio, fmt, sidecar)
    _say(f"wrote {audio_path} ({take.audio.shape[1] / SAMPLE_RATE:.2f} s, seed {take.seed}, {take.elapsed:.1f} s) "
         f"and {json_path.name}")
    return 0


def _request(args) -> tuple[GenerateRequest | EditRequest, dict, dict]:
    """The request the command line asks for, the files its audio comes from, and what the recipe
    records of typed bars (their ranges and the grid that read them; {} without --bars)."""
    if args.command == "generate":
        init = _load(args.init) if args.init else None
        req = GenerateRequest(seconds=args.seconds, init_audio=init, init_strength=args.strength, **_fields(args))
        return req, ({"init_audio": args.init} if args.init else {}), {}
    source = _load(args.source)
    regions, bars = args.regions, {}
    if args.bars:
        grid = _grid(args, source)
        regions += tuple(Region(*grid.parse_range(part)) for part in args.bars)
        bars = {"bars": {"ranges": list(args.bars), "grid": asdict(grid)}}
    req = EditRequest(source=source, regions=regions, continue_seconds=args.continue_seconds,
                      extend_start_seconds=args.extend_start_seconds, context_seconds=args.context,
                      crossfade_ms=args.crossfade_ms, match_loudness=args.match_loudness, strength=args.strength,
                      guide=_load(args.guide) if args.guide else None, **_fields(args))
    return req, {"source": args.source, **({"guide": args.guide} if args.guide else {})}, bars


def _fields(args) -> dict:
    """What every request of the command line names: model, prompt, seed (random when not given), steps,
    guidance, LoRAs."""
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    guidance = Guidance(cfg_scale=args.cfg, apg_scale=args.apg, negative_prompt=args.negative_prompt)
    return dict(model=args.model, prompt=args.prompt or "", seed=seed, steps=args.steps, guidance=guidance,
                loras=tuple(args.loras))


def _grid(args, audio) -> Grid:
    """The bar grid of ``audio``: from --bpm (--meter, --downbeat), else found by studio.tempo (its
    meter and first downbeat replaced by the flags given; said on stderr)."""
    if args.bpm is not None:
        return Grid(args.bpm, *(args.meter or (4, 4)), args.downbeat or 0.0)
    detected = tempo.detect(audio, meter="/".join(map(str, args.meter)) if args.meter else None)
    if detected.grid is None:  # its reason is "what is wrong: what to do in the studio"
        raise ValueError(f"{detected.reason.split(':')[0].rstrip('.')}: give the tempo with --bpm N (and --meter, "
                         "and --downbeat SECONDS when bar 1 does not begin at 0).")
    grid = detected.grid if args.downbeat is None else replace(detected.grid, downbeat=args.downbeat)
    _say(f"note: bars at {grid.bpm:.2f} BPM in {grid.meter}, bar 1 at {grid.downbeat:.3f} s, found by "
         f"{detected.tracker} (confidence {detected.confidence:.2f}).")
    return grid


def _loop(engine, args):
    """(the healed loop as a take, its side-car): the file's loop healed, or a loop generated and
    healed (the side-car then a chain: the generation, then the heal)."""
    options = dict(span_seconds=args.span, crossfade_ms=args.crossfade_ms, progress=_print_progress, **_fields(args))
    made_on = engine.made_on(args.model)
    if args.source is not None:
        audio = _load(args.source)
        grid = _grid(args, audio)
        healed = loops.heal(engine, audio, grid, args.bars, first_bar=args.from_bar, **options)
        before = audio[:, healed.step["start"]:healed.step["start"] + healed.step["samples"]]
        sidecar = recipe.to_recipe(healed.take, {"source": args.source}, loop=healed.step, **made_on)
    else:
        if args.prompt is None or args.bpm is None:
            raise Refused("Give a FILE whose loop to heal, or --prompt and --bpm to generate a loop.")
        made, healed = loops.generate_loop(engine, Grid(args.bpm, *(args.meter or (4, 4))), args.bars, **options)
        before = made.audio
        sidecar = recipe.chained([recipe.to_recipe(made, {}, **made_on),
                                  recipe.to_recipe(healed.take, {"source": None}, loop=healed.step, **made_on)])
    _say(f"note: the wrap before healing: {seams.wrap_jump(before).text()}; after: "
         f"{seams.wrap_jump(healed.loop).text()}.")
    return healed.take, sidecar


def _load(path: Path):
    """A file's audio, (2, N) float32 at 44.1 kHz; what was converted is said as a note."""
    from studio import audio_io

    audio, note = audio_io.load_audio(path)
    if note:
        _say(f"note: {path.name}: {note}")
    return audio


def _make(engine, req):
    return (engine.edit if isinstance(req, EditRequest) else engine.generate)(req, progress=_print_progress)


def _sidecar(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable side-car JSON ({e}).") from None


def _recorded(data: dict | None, key: str):
    """What every take of a side-car's chain records under ``key`` (its precision, its model's
    revision); None for a new take, or when they differ (a replay then uses the defaults)."""
    try:
        values = {step.get(key) for step in recipe.steps(data)} if data is not None else {None}
    except ValueError:  # not a recipe: the replay says so
        return None
    return values.pop() if len(values) == 1 else None


def _replay(engine, data: dict):
    """(the take a side-car records, made again step by step; the replay's own side-car, the same chain).
    Says whether the samples equal the recorded take's."""
    take = recipe.replay(data, _load, lambda req: _make(engine, req))
    *below, last = recipe.steps(data)
    files = {name: last[name]["file"] for name in recipe.AUDIO_FIELDS if last.get(name)}
    kept = {key: last[key] for key in ("loop", "bars") if key in last}  # how a loop was cut, typed bars
    again = recipe.to_recipe(take, files, **engine.made_on(take.request.model), **kept)
    if again["output_sha256"] == last.get("output_sha256"):
        _say("note: the same samples as the take this side-car records.")
    elif last.get("output_sha256"):
        _say(f"note: the samples differ from the recorded take (made in {last.get('precision')} on "
             f"{last.get('device')}); torch kernels differ between machines and precisions.")
    excerpt = data.get("excerpt")  # an export of some bars of the take (a loop): those samples again
    if excerpt:
        take, again["excerpt"] = replace(take, audio=take.audio[:, excerpt["start"]:excerpt["end"]]), excerpt
    return take, recipe.chained([*below, again])


def _sentence(e: Exception) -> str:
    text = str(e).strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _say(line: str) -> None:
    """One line on stderr, over the progress line on a terminal."""
    print(("\r\033[K" if sys.stderr.isatty() else "") + line, file=sys.stderr)


def _print_progress(stage: str, done: int, total: int) -> None:
    if sys.stderr.isatty():  # a log file gets the result line, not hundreds of \r updates
        print(f"\r{stage:>7} {done}/{total}", end="", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
