"""Generate and edit audio with Stable Audio 3 from the command line (batch use).

    python -m studio generate "lofi house loop, 90 BPM" --seconds 30 -o loop.wav
    python -m studio edit song.wav --regions 4:8,16:20 --prompt "drum fill" -o fixed.flac
    python -m studio edit song.wav --continue 10 --prompt "outro" -o longer.wav

Every run writes the audio (atomically) and a side-car JSON with the prompt, seed, model
and regions, like the studio's export.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from studio.api import Cancelled, EditRequest, EngineError, GenerateRequest, Region

FORMATS = {".wav": "wav24", ".flac": "flac"}


def parse_regions(text: str) -> tuple[Region, ...]:
    """``"4:8,16:20"`` -> regions in seconds; clear errors for anything else."""
    regions = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            start, end = (float(x) for x in part.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"region {part!r} is not START:END in seconds (e.g. 4:8.5)") from None
        regions.append(Region(start, end))
    return tuple(regions)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=None,
                        help="small-music, small-sfx, medium (or a -base variant, a Hugging Face repo id, "
                             "or a local checkpoint folder); default: medium with a GPU, else small-music")
    common.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    common.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",  # models.precision.CHOICES
                        help="auto: bf16 where the device computes it natively (AVX512-BF16/AMX CPUs, recent GPUs), "
                             "else fp32")
    common.add_argument("--token", default=None, help="Hugging Face token for gated repos (default: HF_TOKEN / login)")
    common.add_argument("--seed", type=int, default=None, help="random seed; the same seed gives the same take "
                                                                "(default: random, printed)")
    common.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's, 8)")
    common.add_argument("-o", "--output", type=Path, required=True,
                        help="output file, .wav (24-bit) or .flac; a .json side-car is written beside it")
    parser = argparse.ArgumentParser(prog="python -m studio", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", parents=[common], help="text-to-audio, or audio-to-audio with --init")
    gen.add_argument("prompt", help="what to make; the model's TrackType prefix is added when missing")
    gen.add_argument("--seconds", type=float, default=30.0, help="length in seconds (default 30)")
    gen.add_argument("--init", type=Path, default=None, help="audio-to-audio: a file to start from")
    gen.add_argument("--strength", type=float, default=0.7,
                     help="audio-to-audio: 1 ignores --init, 0 returns it (default 0.7)")

    ed = sub.add_parser("edit", parents=[common], help="regenerate regions of a track and/or continue it")
    ed.add_argument("source", type=Path, help="the track to edit (WAV, FLAC, OGG, MP3; never modified)")
    ed.add_argument("--prompt", required=True, help="what the regions should hold")
    ed.add_argument("--regions", type=parse_regions, default=(),
                    help="START:END seconds, comma separated, e.g. 4:8,16:20")
    ed.add_argument("--continue", dest="continue_seconds", type=float, default=0.0,
                    help="append this many seconds of new audio after the end")
    ed.add_argument("--context", type=float, default=None,
                    help="seconds of the track the model hears on each side of the regions "
                         "(default: the whole track while it fits the model)")
    ed.add_argument("--crossfade-ms", type=float, default=30.0, help="equal-power crossfade at region borders")
    ed.add_argument("--strength", type=float, default=1.0,
                    help="1 regenerates the regions from noise; lower keeps more of their shape")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from studio import audio_io
    from studio.engine import RealEngine, default_model

    fmt = FORMATS.get(args.output.suffix.lower())
    if fmt is None:
        print(f"error: --output must end in .wav or .flac, got {args.output.name}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    engine = RealEngine(device=args.device, token=args.token, precision=args.precision)
    try:
        info = engine.load(args.model or default_model(), progress=_print_progress)
        if args.command == "generate":
            init = audio_io.load_audio(args.init)[0] if args.init else None
            req = GenerateRequest(args.prompt, args.seconds, seed, args.steps, init, args.strength)
            take = engine.generate(req, progress=_print_progress)
            prompt = args.prompt
        else:
            source, note = audio_io.load_audio(args.source)
            if note:
                print(f"note: {args.source.name}: {note}", file=sys.stderr)
            req = EditRequest(source, args.regions, args.prompt, seed, args.steps, args.continue_seconds,
                              args.context, args.crossfade_ms, args.strength)
            take = engine.edit(req, progress=_print_progress)
            prompt = args.prompt
    except (EngineError, ValueError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    except (Cancelled, KeyboardInterrupt):
        print("\ncancelled", file=sys.stderr)
        return 130
    sidecar = dict(prompt=prompt, seed=seed, model=take.model, steps=args.steps or info.default_steps,
                   regions=[dict(start=r.start, end=r.end, prompt=r.prompt) for r in take.regions])
    audio_path, json_path = audio_io.export(args.output, take.audio, fmt, sidecar)
    print(f"\nwrote {audio_path} ({take.audio.shape[1] / 44100:.2f} s, seed {seed}, {take.elapsed:.1f} s) "
          f"and {json_path.name}", file=sys.stderr)
    return 0


def _print_progress(stage: str, done: int, total: int) -> None:
    print(f"\r{stage:>7} {done}/{total}", end="", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
