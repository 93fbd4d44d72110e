"""Fidelity of reduced precision: SNR (dB) of bf16 against fp32 on the full-size model.

    python -m bench.precision --config tests/fixtures/reference/configs/stable-audio-3-small-music.json \
        --seconds 10 30 120

Builds the released architecture with seeded random weights (as bench/generate.py does), makes
one text-to-audio generation per duration in fp32, then the same one (same prompt, same noise
draws) with the DiT and the text encoder in bf16 (``--precision``, default what ``auto`` picks on
a CPU with native bf16: SAME stays fp32), and prints one JSON line per duration:

    latents_snr_db   the final latents, bf16 run against fp32 run
    audio_snr_db     their decoded audio (SAME fp32 for both, decoded as the engine does)
    cond_snr_db      the conditioning rows (text encoder in bf16 against fp32)
    step0_snr_db     the first DiT call's velocity (same inputs): the per-step error

``--same`` adds lines for SAME itself in bf16 (encode of a random track, decode of the fp32
latents) against fp32, to judge whether SAME could run in bf16 too. SNR = 10 log10(|ref|^2 /
|ours - ref|^2). Timings are not the point here (bench/generate.py measures speed).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from bench._common import snr_db
from bench.generate import PROMPT, build_model
from models.noise import generator_noise
from models.config import HEADROOM_SECONDS
from models.precision import choose_precision
from models.sa3 import Generation, StableAudio3

CODEC_WINDOW = 512  # latents decoded per window, as studio/engine.py does for long spans


def run(model: StableAudio3, seconds: float) -> dict:
    """Conditioning, first velocity, final latents and audio of one seeded generation."""
    L = model.latent_length(seconds, HEADROOM_SECONDS)
    job = Generation((PROMPT,), (float(seconds),), L, 8, headroom_seconds=HEADROOM_SECONDS)
    first = []  # the first call's velocity

    def keep_first(s):
        if not first:
            first.append((s.x - s.denoised) / s.t.view(-1, 1, 1))

    latents = model.sample(job, generator_noise(torch.Generator().manual_seed(0)), callback=keep_first)
    audio = model.decode(latents, L > CODEC_WINDOW, window=CODEC_WINDOW)
    cond = model.conditioner((PROMPT,), (float(seconds),)).cross_attn_cond
    return {"cond": cond.float(), "step0": first[0], "latents": latents.float(), "audio": audio.float()}


def same_lines(model: StableAudio3, latents: torch.Tensor, seconds: float) -> dict:
    """SAME in bf16 (a copy) against fp32: encode of a random track, decode of the given latents."""
    track = 0.1 * torch.randn(1, 2, int(seconds * model.sample_rate), generator=torch.Generator().manual_seed(1))
    chunked = latents.shape[-1] > CODEC_WINDOW
    results = []
    for same in (model.same, copy.deepcopy(model.same).to(torch.bfloat16)):
        enc = same.encode_chunked(track, CODEC_WINDOW) if chunked else same.encode(track)
        dec = same.decode_chunked(latents, CODEC_WINDOW) if chunked else same.decode(latents)
        results.append((enc.float(), dec.float()))
    (ref_enc, ref_dec), (enc, dec) = results
    return {"same_encode_snr_db": snr_db(enc, ref_enc), "same_decode_snr_db": snr_db(dec, ref_dec)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="a released SA3 model_config.json")
    p.add_argument("--seconds", type=float, nargs="+", default=[10, 30, 120])
    p.add_argument("--precision", choices=["auto", "bf16"], default="bf16",
                   help="the reduced precision to measure (auto: what this machine would pick)")
    p.add_argument("--same", action="store_true", help="also measure SAME in bf16")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = choose_precision("cpu", args.precision)
    if chosen.dit == torch.float32:
        print(json.dumps({"config": args.config.name, "skipped": chosen.reason}), flush=True)
        return 0
    model = build_model(args.config)
    reduced = copy.deepcopy(model).set_precision(chosen)  # a copy: casting back would lose the fp32 bits
    for seconds in args.seconds:
        ref, ours = run(model, seconds), run(reduced, seconds)
        row = {"config": args.config.name, "seconds": seconds, "precision": chosen.describe(),
               **{f"{k}_snr_db": snr_db(ours[k], ref[k]) for k in ("latents", "audio", "cond", "step0")}}
        if args.same:
            row.update(same_lines(model, ref["latents"], seconds))
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
