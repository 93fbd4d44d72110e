"""Speed and memory of SAME at full size (seeded random weights, no download).

    python -m bench.autoencoder --config ../shared/reference/configs/SAME-S.json --seconds 10 30 120

Prints one JSON line per (duration, dtype): seconds for encode / decode, plain and chunked,
and the peak resident memory during each (sampled every 5 ms). bf16 runs only where the CPU
has native bf16 (avx512_bf16 / amx_bf16) or on CUDA, unless --force-bf16.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from bench._common import PeakRSS, bf16_support
from models.config import load_model_config
from models.same import Same


def timed(fn, device):
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return out, round(seconds, 3), round(mem.peak / 2**30, 3)


def bench(model, seconds, sample_rate, chunk, overlap, device, dtype_name):
    g = torch.Generator().manual_seed(int(seconds))
    audio = (0.1 * torch.randn(1, 2, int(seconds * sample_rate), generator=g)).to(device)
    row = {"seconds": seconds, "dtype": dtype_name}
    latents, row["encode_s"], row["encode_peak_rss_gib"] = timed(lambda: model.encode(audio), device)
    _, row["encode_chunked_s"], row["encode_chunked_peak_rss_gib"] = timed(
        lambda: model.encode_chunked(audio, chunk, overlap), device)
    _, row["decode_s"], row["decode_peak_rss_gib"] = timed(lambda: model.decode(latents), device)
    _, row["decode_chunked_s"], row["decode_chunked_peak_rss_gib"] = timed(
        lambda: model.decode_chunked(latents, chunk, overlap), device)
    row["latents"] = latents.shape[-1]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="SAME-S/SAME-L or a full model_config.json")
    p.add_argument("--seconds", type=float, nargs="+", default=[10, 30, 120])
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--chunk-size", type=int, default=128, help="chunked windows, in latents (official default)")
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu")
    p.add_argument("--force-bf16", action="store_true")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_model_config(args.config)
    torch.manual_seed(0)
    base = Same(cfg.same).eval()
    head = {"config": Path(args.config).name, "threads": args.threads, "device": str(device),
            "torch": torch.__version__, "chunk_size": args.chunk_size, "overlap": args.overlap}
    for name in args.dtypes:
        why = bf16_support(device) if name == "bf16" else None
        if why and not args.force_bf16:
            print(json.dumps({**head, "dtype": name, "skipped": why}), flush=True)
            continue
        model = base.to(device=device, dtype=torch.bfloat16 if name == "bf16" else torch.float32)
        warm = torch.zeros(1, 2, cfg.sample_rate, device=device)  # first calls pay one-off setup
        model.decode(model.encode(warm))
        for seconds in args.seconds:
            row = bench(model, seconds, cfg.sample_rate, args.chunk_size, args.overlap, device, name)
            print(json.dumps({**head, **row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
