"""Generate and edit audio with Stable Audio 3 from the command line (batch use).

    python -m studio generate "lofi house loop, 90 BPM" --seconds 30 -o loop.wav
    python -m studio edit song.wav --regions 4:8,16:20 --prompt "drum fill" -o fixed.flac
    python -m studio edit song.wav --continue 10 --prompt "outro" -o longer.wav

Every run writes the audio (atomically) and a side-car JSON with the prompt, seed, model
and regions, like the studio's export. Every argument is checked before a model is loaded;
a problem is one line on stderr (`--debug` adds the traceback of an unexpected one).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import traceback
from pathlib import Path

from studio.api import LATENT_HOP, SAMPLE_RATE, Cancelled, EditRequest, EngineError, GenerateRequest, Region

FORMATS = {".wav": "wav24", ".flac": "flac"}
MAX_STEPS = 500  # the released models use 8 (base: 50); more only costs time
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer
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


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--model", default=None,
                        help="small-music, small-sfx, medium (or a -base variant, a Hugging Face repo id, "
                             "or a local checkpoint folder); default: medium with a GPU, else small-music")
    common.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    common.add_argument("--token", default=None, help="Hugging Face token for gated repos (default: HF_TOKEN / login)")
    common.add_argument("--seed", type=SEED, default=None, help="random seed; the same seed gives the same take "
                                                                 "(default: random, printed)")
    common.add_argument("--steps", type=STEPS, default=None,
                        help=f"sampling steps, 1 to {MAX_STEPS} (default: the model's, 8)")
    common.add_argument("-o", "--output", type=Path, required=True,
                        help="output file, .wav (24-bit) or .flac; a .json side-car is written beside it")
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
    ed.add_argument("--context", type=NON_NEGATIVE, default=None,
                    help="seconds of the track the model hears on each side of the regions "
                         "(default: the whole track while it fits the model)")
    ed.add_argument("--crossfade-ms", type=NON_NEGATIVE, default=30.0, help="equal-power crossfade at region borders")
    ed.add_argument("--strength", type=STRENGTH, default=1.0,
                    help="above 0 and at most 1: 1 regenerates the regions from noise; lower keeps more of their shape")
    return parser


# --------------------------------------------------------------------------- checks before any work


def check_output(output: Path, inputs: list[Path]) -> str:
    """The export format of ``output``, or Refused when it cannot be written or would overwrite an input."""
    if output.is_dir():
        raise Refused(f"--output {output} is a folder: give a file name, such as {output / 'out.wav'}.")
    fmt = FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise Refused(f"--output must end in .wav or .flac, got {output.name!r}.")
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


def check_seconds(args, info) -> None:
    """--seconds within the model's range: a catalogue model's is known before loading it, any
    other's once loaded (``info`` None: not known yet)."""
    if args.command == "generate" and info is not None and args.seconds > info.max_seconds:
        raise Refused(f"--seconds {args.seconds:g} is longer than {Path(info.name).name} makes: at most "
                      f"{info.max_seconds:.1f} s.")


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
    from studio.catalog import model_info
    from studio.engine import RealEngine, default_model

    args.model = args.model or default_model()
    sources = [p for p in (getattr(args, "init", None), getattr(args, "source", None)) if p is not None]
    fmt = check_output(args.output, sources)
    check_seconds(args, model_info(args.model))
    engine = RealEngine(device=args.device, token=args.token)  # refuses a device this machine lacks
    audio = {}
    for path in sources:  # read (and refused) before the model loads
        audio[path], note = audio_io.load_audio(path)
        if note:
            print(f"note: {path.name}: {note}", file=sys.stderr)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    info = engine.load(args.model, progress=_print_progress)
    check_seconds(args, info)
    if args.command == "generate":
        req = GenerateRequest(prompt=args.prompt, seconds=args.seconds, seed=seed, steps=args.steps,
                              init_audio=audio.get(args.init), init_strength=args.strength)
        take = engine.generate(req, progress=_print_progress)
    else:
        req = EditRequest(source=audio[args.source], regions=args.regions, prompt=args.prompt, seed=seed,
                          steps=args.steps, continue_seconds=args.continue_seconds, context_seconds=args.context,
                          crossfade_ms=args.crossfade_ms, strength=args.strength)
        take = engine.edit(req, progress=_print_progress)
    sidecar = dict(prompt=args.prompt, seed=seed, model=take.model, steps=args.steps or info.default_steps,
                   regions=[dict(start=r.start, end=r.end, prompt=r.prompt) for r in take.regions])
    audio_path, json_path = audio_io.export(args.output, take.audio, fmt, sidecar)
    _say(f"wrote {audio_path} ({take.audio.shape[1] / SAMPLE_RATE:.2f} s, seed {seed}, {take.elapsed:.1f} s) "
         f"and {json_path.name}")
    return 0


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
