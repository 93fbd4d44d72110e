"""Capacity of the studio's engines on Ray Serve: takes per minute for 1 and for 2 replicas under
concurrent visitors, on a local Ray cluster started here.

    python -m bench.serve                      # fake engine (a fixed cost per step) and the tiny real model
    python -m bench.serve --engines fake --visitors 4 --takes 6 --step-delay 0.05

One JSON line per (engine, replicas): takes, seconds, takes_per_minute; then one per engine with
the ratio of 2 replicas to 1. Each replica is a worker of one CPU (as a GPU replica holds one
GPU): the fake engine's steps sleep (its work parallelises perfectly, as on one GPU per replica);
the tiny real model computes, so two replicas need two free cores to double, and on a machine
whose cores are busy with other work its ratio is bounded by the cores, not by Ray.
Each visitor runs its takes one after another (a 2.5 s clip, a 0.7 s region, 8 steps); every
replica has loaded the model before the clock starts.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import ray

from bench._common import load_average
from studio import ray_engine
from studio.api import SAMPLE_RATE, EditRequest, Region
from studio.engine import RealEngine
from studio.fake_engine import FakeEngine

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "golden"


def tiny_checkpoint(root: Path) -> str:
    """The tiny test checkpoint (random weights, the released layout) as a model folder."""
    folder = root / "sa3-small-tiny"
    folder.mkdir()
    for name in ("model_config.json", "model.safetensors"):
        shutil.copy(GOLDEN / "sa3_small_tiny" / name, folder)
    shutil.copytree(GOLDEN / "t5gemma-b-b-ul2", folder / "t5gemma-b-b-ul2")
    return str(folder)


def request(model: str, seed: int) -> EditRequest:
    src = (0.1 * np.random.default_rng(seed).standard_normal((2, int(2.5 * SAMPLE_RATE)))).astype(np.float32)
    return EditRequest(model=model, source=src, regions=(Region(0.5, 1.2),), prompt="pads", seed=seed, steps=8)


def takes_per_minute(engine, model: str, visitors: int, takes: int) -> dict:
    """``visitors`` threads, each making ``takes`` takes one after another, all at once."""
    for _ in range(3):  # every replica loads the model (and the router learns who holds it)
        warm = [threading.Thread(target=engine.edit, args=(request(model, 10_000 + k),)) for k in range(engine.slots)]
        for t in warm:
            t.start()
        for t in warm:
            t.join()
    errors = []

    def visitor(v):
        try:
            for k in range(takes):
                engine.edit(request(model, 100 * v + k))
        except Exception as e:  # noqa: BLE001 - counted below
            errors.append(e)
    threads = [threading.Thread(target=visitor, args=(v,)) for v in range(visitors)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {"takes": visitors * takes, "seconds": round(seconds, 2),
            "takes_per_minute": round(60 * visitors * takes / seconds, 1)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engines", nargs="+", choices=("fake", "tiny"), default=["fake", "tiny"])
    p.add_argument("--visitors", type=int, default=4)
    p.add_argument("--takes", type=int, default=6, help="takes each visitor makes")
    p.add_argument("--step-delay", type=float, default=0.05, help="the fake engine's seconds per step")
    args = p.parse_args(argv)
    cpus = os.cpu_count()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for kind in args.engines:
                if kind == "fake":
                    make, model = functools.partial(FakeEngine, step_delay=args.step_delay), "small-music"
                else:
                    make, model = functools.partial(RealEngine, device="cpu"), tiny_checkpoint(Path(tmp))
                rates = {}
                for replicas in (1, 2):
                    engine = ray_engine.start(make, make(), replicas, cpus=1)
                    try:
                        line = takes_per_minute(engine, model, args.visitors, args.takes)
                    finally:
                        engine.close()
                    rates[replicas] = line["takes_per_minute"]
                    print(json.dumps({"bench": "serve", "engine": kind, "replicas": replicas, "visitors": args.visitors,
                                      **line, "cpus": cpus, "load_average": load_average()}), flush=True)
                print(json.dumps({"bench": "serve", "engine": kind, "ratio_2_to_1": round(rates[2] / rates[1], 2)}),
                      flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
