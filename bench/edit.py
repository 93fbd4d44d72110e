"""The studio's edit loop on the full-size model (seeded random weights, no download): a region in
the middle of a track, through RealEngine.edit, as a musician meets it.

    python -m bench.edit --config tests/fixtures/reference/configs/stable-audio-3-small-music.json

One JSON line per (precision, track, takes):
  first_edit_s   an edit of a track never encoded (it encodes only the window it needs)
  ahead_encode_s encode-ahead of another track (what runs while the musician paints)
  ahead_edit_s   the first edit of that track after encode-ahead finished
  cached_edit_s  a second edit of the same version
  each *_edit_s is for all ``takes`` takes (run one after another, as the studio does)
  with --previews: previewed_edit_s  the cached edit again with step previews asked for;
  preview_s  the engine's extra time per decoded preview (the last preview is the take: free),
  preview_decode_s  the median time of one preview's decode (the same, measured directly);
  render_s  the studio's spectrogram of one preview (drawn beside the engine, not in its time)
  heard_s        audio the model hears (the window); peak_rss_gib: the child process's peak
Each precision runs in its own process; compare timings only within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench._common import PeakRSS, load_average
from bench.generate import PROMPT, build_model
from models.precision import choose_precision
from studio.api import SAMPLE_RATE, EditRequest, Region
from studio.engine import RealEngine
from studio.ui_view import spectrogram_rgb

ROOT = Path(__file__).resolve().parent.parent  # the checkout: child runs start there (python -m bench.edit)

GIB = 2**30


def timed_takes(engine: RealEngine, source: np.ndarray, region: Region, takes: int, previews=None) -> float:
    """Seconds for ``takes`` edits; ``previews``: a list the step previews are collected in."""
    t0 = time.perf_counter()
    for k in range(takes):
        engine.edit(EditRequest(model="small-music", source=source, regions=(region,), prompt=PROMPT, seed=k),
                    preview=None if previews is None else previews.append)
    return round(time.perf_counter() - t0, 3)


def preview_costs(engine: RealEngine, source: np.ndarray, region: Region, takes: int, cached_s: float) -> dict:
    """The cached edit again with previews: the extra seconds per decoded preview (from the two
    edits' times, and measured around each preview's decode), and one preview's drawing."""
    shown, decodes = [], []
    original = engine._preview_audio

    def timed(model, x0):
        t0 = time.perf_counter()
        out = original(model, x0)
        decodes.append(time.perf_counter() - t0)
        return out
    engine._preview_audio = timed
    row = {"previewed_edit_s": timed_takes(engine, source, region, takes, shown)}
    engine._preview_audio = original
    row["preview_s"] = round((row["previewed_edit_s"] - cached_s) / len(decodes), 3)
    row["preview_decode_s"] = round(float(np.median(decodes)), 3)
    spectrogram_rgb(shown[0].audio)  # the first drawing imports librosa and builds the mel filters
    t0 = time.perf_counter()
    spectrogram_rgb(shown[0].audio)
    row["render_s"] = round(time.perf_counter() - t0, 3)
    return row


def track(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((2, int(seconds * SAMPLE_RATE)))).astype(np.float32)


def case(engine: RealEngine, track_s: float, region_s: float, takes: int, previews: bool = False) -> dict:
    start = (track_s - region_s) / 2
    region = Region(start, start + region_s)
    row = {"track_s": track_s, "region_s": region_s, "takes": takes,
           "heard_s": round(engine.estimate("small-music", track_s, (region,)).heard_seconds, 2)}
    row["first_edit_s"] = timed_takes(engine, track(track_s, 1), region, takes)
    ahead = track(track_s, 2)
    t0 = time.perf_counter()
    assert engine.encode_ahead("small-music", ahead)
    row["ahead_encode_s"] = round(time.perf_counter() - t0, 3)
    row["ahead_edit_s"] = timed_takes(engine, ahead, region, takes)
    row["cached_edit_s"] = timed_takes(engine, ahead, region, takes)
    if previews:
        row.update(preview_costs(engine, ahead, region, takes, row["cached_edit_s"]))
    return row


def child(args) -> None:
    torch.set_num_threads(args.threads)
    precision = choose_precision("cpu", args.child)
    model = build_model(args.config, precision)
    engine = RealEngine.from_model(model, "small-music")
    engine.edit(EditRequest(model="small-music", source=track(4.0, 0), regions=(Region(1.0, 2.0),),
                            prompt=PROMPT, seed=0))  # warm-up: first calls pay one-off set-up
    for track_s in args.tracks:
        for takes in args.takes:
            with PeakRSS() as mem:
                row = case(engine, track_s, args.region, takes, args.previews)
            print(json.dumps({"config": args.config.name, "precision": precision.describe(), **row,
                              "peak_rss_gib": round(mem.peak / GIB, 3), "threads": torch.get_num_threads(),
                              "loadavg": load_average()}), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="a released SA3 model_config.json")
    p.add_argument("--tracks", type=float, nargs="+", default=[30, 120, 300], help="track lengths, seconds")
    p.add_argument("--region", type=float, default=4.0, help="the region's length, seconds")
    p.add_argument("--takes", type=int, nargs="+", default=[1, 3])
    p.add_argument("--precision", nargs="+", choices=["auto", "fp32", "bf16"], default=["auto", "fp32"])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--previews", action="store_true", help="also time an edit with step previews")
    p.add_argument("--child", help=argparse.SUPPRESS)  # one precision, in this process
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    forward = list(argv if argv is not None else sys.argv[1:])
    failed = 0
    for precision in args.precision:  # one process each: peak RSS and a clean heap per precision
        command = [sys.executable, "-m", "bench.edit", *forward, "--child", precision]
        failed += subprocess.run(command, cwd=ROOT).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
