"""The first GPU run of SA3 Studio in one prepared script (no network, under 10 minutes on one GPU).

    python -m bench.gpu_check                                  # everything, on cuda
    python -m bench.gpu_check --only tiny full                 # some sections
    python -m bench.gpu_check --device cpu --only tiny         # the script's own check, on a CPU
    python -m bench.gpu_check --device cpu --seconds 2 --track-seconds 20   # every section, small sizes

Prints one JSON line per figure (a failing section prints its error and the others still run).
Full-size models have seeded random weights (the released configs, tests/fixtures/reference/):
speed and memory do not depend on the weights' values.
  env      torch, CUDA and the card: name, compute capability, memory, whether flash-attn can run,
           the precision chosen (models.precision)
  tiny     the golden tiny models' generate runs on the device in fp32 and bf16 against the same
           runs on the CPU in fp32: snr_db and max_abs_err of the output, per run
  full     small-music (up to its 120 s) and medium in bf16 at --seconds (default 10/120/380 s):
           step_s (mean of the 7 sampler steps after the first), first_step_s (conditioning,
           prepare and the first step), decode_s, total_s, peak_allocated_gib, peak_reserved_gib
  edit     a 4 s edit (per prompt group) of a --track-seconds track (default 380 s) through
           RealEngine.edit on medium with 1 and 4 prompt groups: first_edit_s (encodes the track),
           cached_edit_s (the track's latents cached), heard_s, peak_allocated_gib
  switch   RealEngine switching medium -> medium-base (the weights built in place of the
           download) under a 12 GiB memory fraction, a take of the shortest --seconds on each
           (medium-base: 50 steps with CFG): allocated_gib after each take, peak_allocated_gib,
           models_in_memory; running out of the 12 GiB shows as the section's error
  kernels  a medium generation (the longest --seconds up to 120 s) with sdpa choosing its kernel,
           with its math kernel only, and with flash-attn (when it can run: sm80+, flash-attn
           >= 2.3): step_s, decode_s; and SAME-L's windowed attention as one 4-D sdpa call
           against the same call handed 5-D tensors (as before the 4-D change): decode_s of
           each and the max_abs_err between them
  profile  a 10 s small-music generation under torch.profiler: host_syncs (cudaStreamSynchronize,
           cudaDeviceSynchronize, cudaEventSynchronize calls), device_to_host and host_to_device
           copies over the whole generation; step_host_syncs: values read back to the host
           during each sampler step (0 is the design: everything data-dependent is prepared once)
Without CUDA and without --device cpu it prints one sentence and exits 0.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from bench._common import HostSyncs, snr_db
from bench.generate import PROMPT, build_model
from models import transformer
from models.config import HEADROOM_SECONDS
from models.noise import generator_noise
from models.parity import generate as parity
from models.parity.core import Fixture
from models.precision import choose_precision
from models.sa3 import Generation
from studio.api import SAMPLE_RATE

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
CONFIGS = ROOT / "tests" / "fixtures" / "reference" / "configs"
SMALL, MEDIUM, MEDIUM_BASE = ("stable-audio-3-small-music.json", "stable-audio-3-medium.json",
                              "stable-audio-3-medium-base.json")
SMALL_MAX_SECONDS = 120
GIB = 2**30
SWITCH_BUDGET_GIB = 12


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def cuda(device: str) -> bool:
    return device.startswith("cuda")


def sync(device: str) -> None:
    if cuda(device):
        torch.cuda.synchronize()


def memory(device: str, **names) -> dict:
    """Peak allocated / reserved GiB since the last reset (CUDA only), under the given names."""
    if not cuda(device):
        return {}
    read = {"allocated": torch.cuda.max_memory_allocated, "reserved": torch.cuda.max_memory_reserved}
    return {name: round(read[kind]() / GIB, 2) for name, kind in names.items()}


def reset_peak(device: str) -> None:
    if cuda(device):
        torch.cuda.reset_peak_memory_stats()


# --------------------------------------------------------------------------- models


class Models:
    """Full-size models with random weights, one on the device at a time (so each section's memory
    figures are that model's alone), kept for the next section that uses it."""

    def __init__(self, device: str):
        self.device, self._built = device, {}

    def get(self, config: str):
        if config not in self._built:
            self.clear()
            self._built[config] = on_device(build_model(CONFIGS / config, choose_precision(self.device, "auto")),
                                            self.device)
        return self._built[config]

    def clear(self) -> None:
        self._built.clear()
        gc.collect()
        if cuda(self.device):
            torch.cuda.empty_cache()


def on_device(model, device: str):
    """The model and its text encoder (which ``Module.to`` does not reach) on ``device``."""
    model = model.to(device)
    encoder = model.conditioner.prompt.encoder
    if encoder is not None:
        encoder.encoder.to(device)
        encoder._cache.clear()
    return model


def generation(model, device: str, seconds: float) -> dict:
    """One 8-step generation and its decode (in windows past 512 latents), timed by phase."""
    L = model.latent_length(seconds, HEADROOM_SECONDS)
    job = Generation((PROMPT,), (float(seconds),), L, 8, headroom_seconds=HEADROOM_SECONDS)
    stamps = []
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    latents = model.sample(job, generator_noise(torch.Generator().manual_seed(0)),
                           callback=lambda s: (sync(device), stamps.append(time.perf_counter())))
    t1 = time.perf_counter()
    model.decode(latents, latents.shape[-1] > 512, window=512)
    sync(device)
    t2 = time.perf_counter()
    steps = [b - a for a, b in zip([t0] + stamps, stamps)]
    return {"step_s": round(sum(steps[1:]) / max(1, len(steps) - 1), 4), "first_step_s": round(steps[0], 4),
            "decode_s": round(t2 - t1, 3), "total_s": round(t2 - t0, 3),
            **memory(device, peak_allocated_gib="allocated", peak_reserved_gib="reserved")}


# --------------------------------------------------------------------------- sections


def env(device: str, models: Models, args) -> None:
    row = {"torch": torch.__version__, "device": device, "precision": choose_precision(device, "auto").describe()}
    if cuda(device):
        props = torch.cuda.get_device_properties(device)
        probe = torch.zeros(1, device=device, dtype=torch.bfloat16)
        row.update(card=props.name, capability=list(torch.cuda.get_device_capability(device)),
                   memory_gib=round(props.total_memory / GIB, 1), cuda=torch.version.cuda,
                   flash_attn=transformer.flash_kernel(probe, "flash_attn_varlen_func") is not None)
    emit(section="env", **row)


def tiny(device: str, models: Models, args) -> None:
    dtypes = ("fp32",) if device == "cpu" else ("fp32", "bf16")
    for folder in ("sa3_small_tiny", "sa3_medium_tiny"):
        fx = Fixture.read(GOLDEN / folder / "generate.json")
        audio = parity.audio_input(fx)
        for spec in fx.meta["runs"]:
            config = parity.config_name(fx, spec)
            reference = parity.run_output(fx, parity._model(fx.folder, config), spec, audio)[2]
            for name in dtypes:
                model = copy.deepcopy(parity._model(fx.folder, config))  # the cached one stays the reference
                model = model.set_precision(choose_precision(device, name)).to(device)
                out = parity.run_output(fx, model, spec, audio.to(device))[2].float().cpu()
                emit(section="tiny", model=folder, run=spec["name"], device=device, precision=name,
                     snr_db=snr_db(out, reference), max_abs_err=float((out - reference).abs().max()))


def full(device: str, models: Models, args) -> None:
    for config in (SMALL, MEDIUM):
        model = models.get(config)
        generation(model, device, min(args.seconds))  # warm-up: one-off setup, kernel choice
        for seconds in args.seconds:
            if config == SMALL and seconds > SMALL_MAX_SECONDS:
                continue
            emit(section="full", config=config, seconds=seconds, device=device, **generation(model, device, seconds))


def edit(device: str, models: Models, args) -> None:
    import numpy as np
    from studio.api import EditRequest, Region
    from studio.engine import RealEngine
    engine = RealEngine.from_model(models.get(MEDIUM), "medium")
    seconds = args.track_seconds
    track = (0.1 * np.random.default_rng(0).standard_normal((2, int(seconds * SAMPLE_RATE)))).astype(np.float32)
    middle = seconds / 2
    for groups in (1, 4):
        regions = tuple(Region(middle - 12 + 6 * k, middle - 8 + 6 * k, f"part {k}" if groups > 1 else None)
                        for k in range(groups))
        req = EditRequest(model="medium", source=track, regions=regions, prompt=PROMPT, seed=0)
        engine._latents.clear()  # the first edit encodes the track
        reset_peak(device)
        t0 = time.perf_counter()
        engine.edit(req)
        t1 = time.perf_counter()
        engine.edit(req)
        t2 = time.perf_counter()
        emit(section="edit", track_s=seconds, prompt_groups=groups, device=device,
             first_edit_s=round(t1 - t0, 3), cached_edit_s=round(t2 - t1, 3),
             heard_s=engine.estimate("medium", seconds, regions).heard_seconds,
             **memory(device, peak_allocated_gib="allocated"))


def switch(device: str, models: Models, args) -> None:
    from studio.api import GenerateRequest
    from studio.engine import RealEngine
    models.clear()  # nothing else in memory: the fraction measures the switch alone
    if cuda(device):
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, SWITCH_BUDGET_GIB * GIB / total))
    configs = {"medium": MEDIUM, "medium-base": MEDIUM_BASE}
    built = lambda ckpt, device, precision: on_device(build_model(CONFIGS / configs[ckpt], precision), device)
    engine = RealEngine(device=device)
    reset_peak(device)
    try:
        with mock.patch("studio.engine.resolve", lambda name, **kw: name), \
             mock.patch("studio.engine.StableAudio3.from_checkpoint", built):
            for name in ("medium", "medium-base"):
                t0 = time.perf_counter()
                engine.generate(GenerateRequest(model=name, prompt=PROMPT, seconds=min(args.seconds), seed=0))
                emit(section="switch", model=name, budget_gib=SWITCH_BUDGET_GIB,
                     load_and_take_s=round(time.perf_counter() - t0, 2), models_in_memory=engine.loaded(),
                     allocated_gib=round(torch.cuda.memory_allocated() / GIB, 2) if cuda(device) else None,
                     **memory(device, peak_allocated_gib="allocated"))
    finally:
        del engine
        gc.collect()
        if cuda(device):
            torch.cuda.empty_cache()
            torch.cuda.set_per_process_memory_fraction(1.0)


def _as_5d(sdpa):
    """sdpa handed the band's 4-D (B*H, blocks, block, D) tensors as 5-D (1, B*H, blocks, block, D),
    the rank it had before the 4-D change: fused kernels refuse 5-D, so this runs the math kernel."""
    def call(q, k, v, attn_mask=None, **kw):
        return sdpa(q[None], k[None], v[None], attn_mask=attn_mask, **kw)[0]
    return call


def kernels(device: str, models: Models, args) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    model, seconds = models.get(MEDIUM), max(s for s in args.seconds if s <= SMALL_MAX_SECONDS)
    generation(model, device, min(args.seconds))
    original = transformer.flash_kernel
    probe = torch.zeros(1, device=device, dtype=torch.bfloat16)
    runs = {"sdpa": (lambda q, n: None, None), "sdpa_math_only": (lambda q, n: None, SDPBackend.MATH),
            "flash_attn": (original, None)}
    for name, (kernel, backend) in runs.items():
        if name == "flash_attn" and original(probe, "flash_attn_varlen_func") is None:
            emit(section="kernels", kernel=name, skipped="flash-attn is not installed or cannot run on this card")
            continue
        with mock.patch.object(transformer, "flash_kernel", kernel), \
             (sdpa_kernel(backend) if backend is not None else nullcontext()):
            emit(section="kernels", kernel=name, seconds=seconds, **generation(model, device, seconds))
    latents = torch.randn(1, model.cfg.io_channels, model.latent_length(seconds, 0.0),
                          generator=torch.Generator().manual_seed(0)).to(device)
    outs = {}
    sdpa = F.scaled_dot_product_attention
    for name, call in (("same_windowed_4d", sdpa), ("same_windowed_5d", _as_5d(sdpa))):
        with mock.patch.object(transformer.F, "scaled_dot_product_attention", call):
            model.decode(latents[..., :64])
            reset_peak(device)
            sync(device)
            t0 = time.perf_counter()
            outs[name] = model.decode(latents, True, window=512).float()
            sync(device)
            emit(section="kernels", kernel=name, seconds=seconds, decode_s=round(time.perf_counter() - t0, 3),
                 **memory(device, peak_allocated_gib="allocated"))
    emit(section="kernels", compare="same_windowed_4d vs 5d",
         max_abs_err=float((outs["same_windowed_4d"] - outs["same_windowed_5d"]).abs().max()),
         snr_db=snr_db(outs["same_windowed_4d"], outs["same_windowed_5d"]))


def profile(device: str, models: Models, args) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile
    model = models.get(SMALL)
    generation(model, device, min(args.seconds))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda(device) else [])
    seconds = min(10.0, SMALL_MAX_SECONDS)
    L = model.latent_length(seconds, HEADROOM_SECONDS)
    job = Generation((PROMPT,), (seconds,), L, 8, headroom_seconds=HEADROOM_SECONDS)
    counter, per_step = HostSyncs(), []

    def stamp(_state) -> None:  # after each step: the values read back since the last one
        per_step.append(len(counter.calls))
        counter.calls.clear()

    with torch_profile(activities=activities) as prof:
        with counter:
            latents = model.sample(job, generator_noise(torch.Generator().manual_seed(0)), callback=stamp)
        model.decode(latents)
        sync(device)
    names = [e.name for e in prof.events()]
    emit(section="profile", device=device, generation_s=seconds, steps=len(per_step),
         host_syncs=sum(n in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize") for n in names),
         device_to_host=sum("DtoH" in n or "DeviceToHost" in n for n in names),
         host_to_device=sum("HtoD" in n or "HostToDevice" in n for n in names),
         first_step_host_syncs=per_step[0], step_host_syncs=per_step[1:])


SECTIONS = {"env": env, "tiny": tiny, "full": full, "edit": edit, "switch": switch, "kernels": kernels,
            "profile": profile}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a check of the script itself)")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    p.add_argument("--seconds", type=float, nargs="+", default=[10.0, 120.0, 380.0],
                   help="generation lengths of the full section (small-music stops at 120 s)")
    p.add_argument("--track-seconds", type=float, default=380.0, help="the edited track's length (edit section)")
    args = p.parse_args(argv)
    if cuda(args.device) and not torch.cuda.is_available():
        print("No CUDA device here: run this on a machine with an NVIDIA GPU, or pass --device cpu "
              "--only tiny to check the script itself.")
        return 0
    models, failed = Models(args.device), 0
    for name in args.only:
        try:
            with torch.inference_mode():
                SECTIONS[name](args.device, models, args)
        except Exception as e:  # one section's failure is a figure too; the others still run
            traceback.print_exc(file=sys.stderr)
            emit(section=name, error=f"{type(e).__name__}: {e}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
