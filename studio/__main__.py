"""Generate and edit audio with Stable Audio 3 from the command line (batch use).

    python -m studio generate "lofi house loop, 90 BPM" --seconds 30 -o loop.wav
    python -m studio edit song.wav --regions 4:8,16:20 --prompt "drum fill" -o fixed.flac
    python -m studio edit song.wav --continue 10 --prompt "outro" -o longer.wav
    python -m studio replay fixed.json -o again.flac     # the same take again, from its side-car

Every run writes the audio (atomically) and a side-car JSON holding everything the take depends
on (studio/recipe.py), like the studio's export; `replay` makes the take again from it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from studio import recipe
from studio.api import SAMPLE_RATE, Cancelled, EditRequest, EngineError, GenerateRequest, Guidance, Region

FORMATS = {".wav": "wav24", ".flac": "flac", ".mp3": "mp3"}


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
    common.add_argument("--token", default=None, help="Hugging Face token for gated repos (default: HF_TOKEN / login)")
    common.add_argument("--seed", type=int, default=None, help="random seed; the same seed gives the same take "
                                                                "(default: random, printed)")
    common.add_argument("--steps", type=int, default=None,
                        help="sampling steps (default: the model's: 8, or 50 for -base models)")
    common.add_argument("--cfg", type=float, default=None,
                        help="-base models: classifier-free guidance scale (default 7; 1 turns guidance off)")
    common.add_argument("--apg", type=float, default=1.0,
                        help="-base models: adaptive projected guidance, 1 = full APG, 0 = plain CFG (default 1)")
    common.add_argument("--negative-prompt", default="", help="-base models: what the take should avoid")
    common.add_argument("-o", "--output", type=Path, required=True,
                        help="output file, .wav (24-bit), .flac or .mp3; a .json side-car is written beside it")
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
    ed.add_argument("--extend-start", dest="extend_start_seconds", type=float, default=0.0,
                    help="put this many seconds of new audio before the start (an intro); the track follows unchanged")
    ed.add_argument("--context", type=float, default=None,
                    help="seconds of the track the model hears on each side of the regions "
                         "(default: the whole track while it fits the model)")
    ed.add_argument("--crossfade-ms", type=float, default=30.0, help="equal-power crossfade at region borders")
    ed.add_argument("--match-loudness", action="store_true",
                    help="scale each region to the loudness of the 2 s around it (within ±12 dB)")
    ed.add_argument("--strength", type=float, default=1.0,
                    help="1 regenerates the regions from noise; lower keeps more of their shape")
    ed.add_argument("--guide", type=Path, default=None,
                    help="audio-to-audio: restyle the regions from this file (aligned to the track's start) "
                         "instead of the track itself; needs --strength below 1")
    rep = sub.add_parser("replay", help="make a take again from its side-car JSON (bit-exact on the same "
                                        "machine and precision)")
    rep.add_argument("sidecar", type=Path, help="the .json written beside an export")
    rep.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    rep.add_argument("--token", default=None, help="Hugging Face token for gated repos")
    rep.add_argument("-o", "--output", type=Path, required=True, help="output file, .wav (24-bit), .flac or .mp3")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from studio import audio_io
    from studio.engine import RealEngine

    fmt = FORMATS.get(args.output.suffix.lower())
    if fmt is None:
        print(f"error: --output must end in .wav, .flac or .mp3, got {args.output.name}", file=sys.stderr)
        return 2
    engine = RealEngine(device=args.device, token=args.token)
    try:
        req, files = _replayed(args) if args.command == "replay" else _request(args)
        take = (engine.edit if isinstance(req, EditRequest) else engine.generate)(req, progress=_print_progress)
    except (EngineError, ValueError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    except (Cancelled, KeyboardInterrupt):
        print("\ncancelled", file=sys.stderr)
        return 130
    for note in take.notes:
        print(f"\nnote: {note}", file=sys.stderr)
    sidecar = recipe.to_recipe(take, files, precision=str(engine.dtype).removeprefix("torch."), device=engine.device)
    audio_path, json_path = audio_io.export(args.output, take.audio, fmt, sidecar)
    print(f"\nwrote {audio_path} ({take.audio.shape[1] / SAMPLE_RATE:.2f} s, seed {take.seed}, "
          f"{take.elapsed:.1f} s) and {json_path.name}", file=sys.stderr)
    return 0


def _request(args) -> tuple[GenerateRequest | EditRequest, dict]:
    """The request the command line asks for, and the files its audio comes from."""
    from studio import audio_io
    from studio.engine import default_model

    model = args.model or default_model()
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    if args.command == "generate":
        init = audio_io.load_audio(args.init)[0] if args.init else None
        req = GenerateRequest(model=model, prompt=args.prompt, seconds=args.seconds, seed=seed, steps=args.steps,
                              init_audio=init, init_strength=args.strength, guidance=_guidance(args))
        return req, ({"init_audio": args.init} if args.init else {})
    source, note = audio_io.load_audio(args.source)
    if note:
        print(f"note: {args.source.name}: {note}", file=sys.stderr)
    guide = audio_io.load_audio(args.guide)[0] if args.guide else None
    req = EditRequest(model=model, source=source, regions=args.regions, prompt=args.prompt, seed=seed,
                      steps=args.steps, continue_seconds=args.continue_seconds,
                      extend_start_seconds=args.extend_start_seconds, context_seconds=args.context,
                      crossfade_ms=args.crossfade_ms, match_loudness=args.match_loudness, strength=args.strength,
                      guide=guide, guidance=_guidance(args))
    return req, {"source": args.source, **({"guide": args.guide} if args.guide else {})}


def _replayed(args) -> tuple[GenerateRequest | EditRequest, dict]:
    """The request a side-car records (its audio files checked unchanged), and those files."""
    from studio import audio_io

    try:
        data = json.loads(args.sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{args.sidecar} is not a readable side-car JSON ({e}).") from None
    req = recipe.from_recipe(data, lambda path: audio_io.load_audio(path)[0])
    files = {name: data[name]["file"] for name in recipe.AUDIO_FIELDS if data.get(name)}
    return req, files


def _guidance(args) -> Guidance:
    return Guidance(cfg_scale=args.cfg, apg_scale=args.apg, negative_prompt=args.negative_prompt)


def _print_progress(stage: str, done: int, total: int) -> None:
    print(f"\r{stage:>7} {done}/{total}", end="", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
