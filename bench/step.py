"""One DiT step at full size, fp32 official cost vs our fast paths, interleaved (robust on a busy CPU).

    python -m bench.step --config tests/fixtures/reference/configs/stable-audio-3-small-music.json --seconds 10 30

Builds the released config's DiT with seeded random weights, and a bf16 copy. For each clip
length, times three ways to run one step on the same inputs (a text-to-audio step: 20 prompt
rows, 236 learned-padding copies, the seconds row):

    plain_fp32   ``forward_plain``: everything recomputed, every context row its own key (official)
    fast_fp32    ``prepare`` once, then the step (our exact-math savings)
    fast_bf16    the same with bf16 weights (what ``--precision auto`` runs on a CPU with native bf16)

Rounds alternate between the three and each keeps its fastest: other jobs sharing the cores
slow every way alike, so the ratios hold where absolute seconds do not. One JSON line per length.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

from models import plan
from models.config import HEADROOM_SECONDS as HEADROOM
from models.config import load_model_config
from models.dit import DiT



def step_inputs(cfg, seconds: float) -> dict:
    """A text-to-audio step's inputs for a clip of ``seconds``."""
    d = cfg.diffusion.config
    ratio = cfg.same.downsampling_ratio
    L = plan.audio_length(cfg.same, cfg.sample_size, seconds, HEADROOM, cfg.sample_rate) // ratio
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(1, 20, d.cond_token_dim, generator=g)
    padding = torch.randn(1, 1, d.cond_token_dim, generator=g).expand(-1, 236, -1)
    return dict(x=torch.randn(1, d.io_channels, L, generator=g), t=torch.tensor([0.7]),
                cross=torch.cat([rows, padding, torch.randn(1, 1, d.cond_token_dim, generator=g)], dim=1),
                glob=torch.randn(1, d.global_cond_dim, generator=g), local=torch.zeros(1, 1 + d.io_channels, L),
                pad=plan.padding_mask([seconds], HEADROOM, cfg.sample_rate, ratio, L))


@torch.no_grad()
def measure(dit32: DiT, dit16: DiT, i: dict, rounds: int) -> dict:
    c32 = dit32.prepare(i["cross"], i["glob"], i["local"], i["pad"])
    c16 = dit16.prepare(i["cross"], i["glob"], i["local"], i["pad"])
    ways = {"plain_fp32": lambda: dit32.forward_plain(i["x"], i["t"], i["cross"], i["glob"], i["local"], i["pad"]),
            "fast_fp32": lambda: dit32(i["x"], i["t"], c32),
            "fast_bf16": lambda: dit16(i["x"], i["t"], c16)}
    best = {}
    for r in range(rounds + 1):  # round 0 warms up
        for name, run in ways.items():
            t0 = time.perf_counter()
            run()
            if r:
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    return {k: round(v, 3) for k, v in best.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="a released SA3 model_config.json")
    p.add_argument("--seconds", type=float, nargs="+", default=[10, 30])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_model_config(args.config)
    torch.manual_seed(0)
    dit32 = DiT(cfg.diffusion.config).eval().requires_grad_(False)
    dit16 = copy.deepcopy(dit32).to(torch.bfloat16)
    for seconds in args.seconds:
        best = measure(dit32, dit16, step_inputs(cfg, seconds), args.rounds)
        print(json.dumps({"config": args.config.name, "seconds": seconds, "threads": torch.get_num_threads(),
                          "step_s": best, "bf16_vs_plain": round(best["fast_bf16"] / best["plain_fp32"], 3),
                          "bf16_vs_fast_fp32": round(best["fast_bf16"] / best["fast_fp32"], 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
