"""Speed and memory of a whole SA3 generation at full size (seeded random weights, no download).

    python -m bench.generate --config tests/fixtures/reference/configs/stable-audio-3-small-music.json \
        --seconds 10 30 120 --plain

Builds the released config's DiT + SAME + conditioners and the full-size T5Gemma encoder
(``config_used`` of tests/fixtures/reference/manifests/t5gemma-b-b-ul2.json, random init, the
tiny word-level tokenizer of tests/fixtures/golden/t5gemma-b-b-ul2). Prints one JSON line per
duration: seconds of a full 8-step generation (conditioning + sampling + decode, decoded in one
piece as the official ``generate`` does), each DiT step, the decode, and peak RSS, with the
exact-math savings on and the DiT and text encoder in ``--precision`` (``fast``; auto: bf16
where the CPU computes it natively, models.precision) and, with ``--plain``, the savings off
and everything fp32 (``plain``: ``sample(plain=True)``, the official per-step cost, so
``speedup`` is what a user gains) in the same process, so both see the same machine load;
``cpu_s`` is the process's CPU time over the run (all threads). Then one
line for an inpaint of a 4 s region in the middle of a 120 s track through ``RealEngine.edit``
(first edit of the track, which encodes it; then a second edit, which reuses the latents).

Each duration (and the inpaint) runs in its own subprocess, so its peak RSS is its own:
``peak_rss_gib`` is the process's peak while that run went (weights included, sampled every
5 ms); ``model_rss_gib`` is the process after building and warming up. ``loadavg`` is
``os.getloadavg()`` at the end of the run: on a shared machine compare fast/plain only
within one line. ``--precision bf16`` on a CPU without native bf16 is refused (emulated: slow).
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

from bench._common import PeakRSS, load_average, rss_bytes, snr_db
from bench.text import build_encoder
from models.config import HEADROOM_SECONDS, load_model_config
from models.noise import generator_noise
from models.sa3 import Generation, StableAudio3
from models.precision import FP32, Precision, choose_precision, native_bf16

ROOT = Path(__file__).resolve().parent.parent  # the checkout: its fixtures; child runs start there

MANIFEST = ROOT / "tests" / "fixtures" / "reference" / "manifests" / "t5gemma-b-b-ul2.json"
TOKENIZER = ROOT / "tests" / "fixtures" / "golden" / "t5gemma-b-b-ul2"
PROMPT = "TrackType: Music, VocalType: Instrumental, warm lofi house with soft piano and a deep bass line"
GIB = 2**30


def build_model(config: Path, precision: Precision = FP32) -> StableAudio3:
    """The released architecture with seeded random weights and a full-size random T5Gemma,
    each part in ``precision``'s dtype (the weights drawn in fp32 first: the same model)."""
    from transformers import AutoTokenizer

    cfg = load_model_config(config)
    text = build_encoder(MANIFEST, torch.float32, "cpu")
    text.tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)  # word-level; ids < its vocab
    torch.manual_seed(0)
    model = StableAudio3(cfg, text).eval().requires_grad_(False)
    return model.set_precision(precision)


def generation(model: StableAudio3, seconds: float, plain: bool) -> dict:
    """One full generation (sample + decode), timed by phase."""
    L = model.latent_length(seconds, HEADROOM_SECONDS)
    job = Generation((PROMPT,), (float(seconds),), L, 8, headroom_seconds=HEADROOM_SECONDS)
    model.conditioner.prompt.encoder._cache.clear()  # the prompt is encoded in every run
    marks = []
    with PeakRSS() as mem:
        c0, t0 = time.process_time(), time.perf_counter()
        latents = model.sample(job, generator_noise(torch.Generator().manual_seed(0)),
                               callback=lambda s: marks.append(time.perf_counter()), plain=plain)
        t1 = time.perf_counter()
        model.decode(latents)
        t2, c2 = time.perf_counter(), time.process_time()
    steps = np.diff([t0, *marks])  # the first also holds the conditioning and (fast) the prepare
    return {"total_s": round(t2 - t0, 3), "cpu_s": round(c2 - c0, 3), "sample_s": round(t1 - t0, 3),
            "step_s": [round(s, 3) for s in steps], "step_mean_s": round(float(np.mean(steps[1:])), 3),
            "decode_s": round(t2 - t1, 3), "peak_rss_gib": round(mem.peak / GIB, 3)}, latents


def run_duration(args, seconds: float) -> dict:
    """The fast run, then (``--plain``) the official one; one model in memory at a time."""
    model = build_model(args.config, choose_precision("cpu", args.precision))
    generation(model, 1.0, plain=False)  # warm-up: first calls pay one-off setup
    row = {"seconds": seconds, "latents": model.latent_length(seconds, HEADROOM_SECONDS),
           "model_rss_gib": round(rss_bytes() / GIB, 3)}
    row["fast"], fast = generation(model, seconds, plain=False)
    if args.plain:
        del model
        official = build_model(args.config)  # fp32, as the official code runs on a CPU
        generation(official, 1.0, plain=True)
        row["plain"], plain = generation(official, seconds, plain=True)
        row["speedup"] = round(row["plain"]["total_s"] / row["fast"]["total_s"], 3)
        row["step_speedup"] = round(row["plain"]["step_mean_s"] / row["fast"]["step_mean_s"], 3)
        row["latents_snr_db"] = snr_db(fast, plain)  # precision and savings together vs official
    return row


def run_inpaint(args, track_seconds: float = 120.0, region_seconds: float = 4.0) -> dict:
    """A 4 s region in the middle of a 120 s track through the studio's edit path."""
    from studio.api import EditRequest, Region
    from studio.engine import RealEngine

    model = build_model(args.config, choose_precision("cpu", args.precision))
    engine = RealEngine.from_model(model, "small-music")
    sr = model.sample_rate
    source = (0.1 * torch.randn(2, int(track_seconds * sr), generator=torch.Generator().manual_seed(1))).numpy()
    start = (track_seconds - region_seconds) / 2
    req = EditRequest(model="small-music", source=source, regions=(Region(start, start + region_seconds),),
                      prompt=PROMPT, seed=0)
    model.conditioner.prompt.encoder._cache.clear()
    row = {"inpaint": f"{region_seconds:g} s region in a {track_seconds:g} s track",
           "model_rss_gib": round(rss_bytes() / GIB, 3)}
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        engine.edit(req)
        t1 = time.perf_counter()
        engine.edit(req)  # the track's latents are cached now
        t2 = time.perf_counter()
    row.update(first_edit_s=round(t1 - t0, 3), cached_edit_s=round(t2 - t1, 3), peak_rss_gib=round(mem.peak / GIB, 3))
    return row


def child(args) -> None:
    torch.set_num_threads(args.threads)
    head = {"config": args.config.name, "threads": torch.get_num_threads(),
            "precision": choose_precision("cpu", args.precision).describe(), "torch": torch.__version__}
    row = run_inpaint(args) if args.child == "inpaint" else run_duration(args, float(args.child))
    print(json.dumps({**head, **row, "loadavg": load_average()}), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="a released SA3 model_config.json")
    p.add_argument("--seconds", type=float, nargs="+", default=[10, 30, 120])
    p.add_argument("--plain", action="store_true", help="also run without the exact-math savings")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="the fast run's precision (models.precision); plain is always fp32")
    p.add_argument("--no-inpaint", action="store_true", help="skip the 120 s inpaint line")
    p.add_argument("--child", help=argparse.SUPPRESS)  # one run, in this process
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if args.precision == "bf16" and (why := native_bf16("cpu")):
        print(json.dumps({"config": args.config.name, "precision": "bf16", "skipped": why}), flush=True)
        return 0
    forward = [a for a in (argv if argv is not None else sys.argv[1:])]
    runs = [str(s) for s in args.seconds] + ([] if args.no_inpaint else ["inpaint"])
    failed = 0
    for run in runs:  # one process each: peak RSS per run
        done = subprocess.run([sys.executable, "-m", "bench.generate", *forward, "--child", run], cwd=ROOT)
        failed += done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
