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
  fastpath each generation three ways: eager, each sampler step a replayed CUDA graph (graphs), and
           regionally compiled blocks inside the graphs (compiled; at --compile-seconds only: each
           length compiles anew): small-music (up to 120 s) and medium at --seconds: step_s,
           first_step_s, decode_s, total_s, peak_allocated_gib, launches_per_step (kernel launches
           in the step loop, per step, from torch.profiler), capture_s / compile_s (the first
           generation's one-off cost), graph_bytes (static buffers), snr_db and max_abs_err of the
           latents against eager (same seed); then an edit of a --track-seconds medium track (4 s
           region) eager and with graphs, 1 take and 4 takes (4 edits, as the studio makes them),
           and 4 takes of that window as one batch against 4 passes; then the top CUDA kernels of a
           120 s SAME-S and SAME-L decode. Every case runs under --case-budget seconds and the
           section stops starting cases after --budget (a case over budget prints its error);
           --fastpath-tiny runs it on the golden tiny models (a CPU dry run of the script)
Without CUDA and without --device cpu it prints one sentence and exits 0.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import signal
import sys
import time
import traceback
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Optional
from unittest import mock

import torch
import torch.nn.functional as F

from bench._common import HostSyncs, snr_db
from bench.generate import PROMPT, build_model
from models import transformer
from models.config import HEADROOM_SECONDS
from models.graphs import StepGraphs, eager_capture
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


def generation(model, device: str, seconds: float, keep: Optional[list] = None) -> dict:
    """One 8-step generation and its decode (in windows past 512 latents), timed by phase;
    ``keep`` (a list) receives the latents."""
    L = model.latent_length(seconds, HEADROOM_SECONDS)
    job = Generation((PROMPT,), (float(seconds),), L, 8, headroom_seconds=HEADROOM_SECONDS)
    stamps = []
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    latents = model.sample(job, generator_noise(torch.Generator().manual_seed(0)),
                           callback=lambda s: (sync(device), stamps.append(time.perf_counter())))
    if keep is not None:
        keep.append(latents.float().cpu())
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


# --------------------------------------------------------------------------- fastpath


class Budget:
    """Seconds left to a section, and a per-case limit: ``case(**row)`` runs its block under an
    alarm of min(case limit, time left); a case over it, or failing, prints its error row and the
    section goes on; once the section's time is spent the remaining cases print ``skipped``."""

    def __init__(self, seconds: float, per_case: float):
        self.end, self.per_case = time.monotonic() + seconds, per_case

    @contextmanager
    def case(self, **row):
        left = self.end - time.monotonic()
        if left < 1:
            emit(**row, skipped="the section's time budget is spent")
            yield False
            return
        def over(*_):
            raise TimeoutError(f"over its {min(self.per_case, left):.0f} s budget")
        previous = signal.signal(signal.SIGALRM, over)
        signal.alarm(max(1, int(min(self.per_case, left))))
        try:
            yield True
        except Exception as e:  # a case's failure is a figure; the next case runs
            traceback.print_exc(file=sys.stderr)
            emit(**row, error=f"{type(e).__name__}: {e}")
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)


def graphs_for(device: str) -> StepGraphs:
    """Real CUDA graphs on a GPU; on a CPU (a dry run) the same bookkeeping replayed eagerly."""
    return StepGraphs() if cuda(device) else StepGraphs(capture=eager_capture)


def launches(model, device: str, seconds: float) -> Optional[float]:
    """Kernel launches per sampler step (graph launches count one each), from torch.profiler over
    the step loop of one generation; None without CUDA."""
    if not cuda(device):
        return None
    from torch.profiler import ProfilerActivity, profile as torch_profile
    import models.sa3
    inner, counted = models.sa3.integrate, {}

    def profiled(step, x, t, draws, callback=None):
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            out = inner(step, x, t, draws, callback)
            sync(device)
        names = [e.name for e in prof.events()]
        counted["n"] = sum(("LaunchKernel" in n or n == "cudaGraphLaunch") for n in names) / (t.shape[1] - 1)
        return out
    with mock.patch.object(models.sa3, "integrate", profiled):
        generation(model, device, seconds)
    return round(counted["n"], 1)


def fast_generation(model, device: str, seconds: float, eager: Optional[torch.Tensor]) -> tuple[dict, torch.Tensor]:
    """One generation with ``model`` as it is set up (graphs or not), after one untimed first run
    (its extra time over the timed run: capture and compile), against the eager latents."""
    t0 = time.perf_counter()
    generation(model, device, seconds)
    first = time.perf_counter() - t0
    kept = []
    row = generation(model, device, seconds, keep=kept)
    row.update(launches_per_step=launches(model, device, seconds), first_run_s=round(first, 3))
    if model.graphs is not None:
        row.update(graph_bytes=model.graphs.bytes, graphs=len(model.graphs), capture_s=round(model.graphs.capture_s, 3))
    if eager is not None:
        row.update(snr_db=snr_db(kept[0], eager), max_abs_err=float((kept[0] - eager).abs().max()))
    return row, kept[0]


def fast_ways(model, device: str, config: str, seconds: float, args, budget: Budget) -> None:
    """Eager, graphs, and (at --compile-seconds, on CUDA) compiled blocks inside graphs."""
    head = dict(section="fastpath", config=config, seconds=seconds, device=device)
    eager = None
    with budget.case(**head, way="eager") as go:
        if go:
            model.graphs = None
            row, eager = fast_generation(model, device, seconds, None)
            emit(**head, way="eager", **row)
    with budget.case(**head, way="graphs") as go:
        if go:
            model.graphs = graphs_for(device)
            emit(**head, way="graphs", **fast_generation(model, device, seconds, eager)[0])
    if seconds not in args.compile_seconds:
        return
    with budget.case(**head, way="compiled") as go:
        if go and not cuda(device):
            emit(**head, way="compiled", skipped="compiling on a CPU takes minutes; CUDA only")
        elif go:
            try:
                model.graphs = graphs_for(device)
                t0 = time.perf_counter()
                model.dit.compile_blocks()
                row = fast_generation(model, device, seconds, eager)[0]
                emit(**head, way="compiled", compile_s=round(time.perf_counter() - t0, 1), **row)
            finally:
                for layer in model.dit.transformer.layers:
                    layer._compiled_call_impl = None  # back to eager for the next case
                model.graphs = None


def fast_edit(model, device: str, args, budget: Budget) -> None:
    """A 4 s edit of a long track through RealEngine (cached latents), eager and with graphs,
    1 and 4 takes; then 4 takes of the same window as one batch against 4 passes."""
    import numpy as np
    from models.noise import batched_noise
    from studio.api import EditRequest, Region
    from studio.engine import RealEngine
    seconds = args.track_seconds
    track = (0.1 * np.random.default_rng(0).standard_normal((2, int(seconds * SAMPLE_RATE)))).astype(np.float32)
    middle = seconds / 2
    engine = RealEngine.from_model(model, "medium")
    req = lambda seed: EditRequest(model="medium", source=track, regions=(Region(middle - 2, middle + 2),),  # noqa: E731
                                   prompt=PROMPT, seed=seed)
    engine.edit(req(0))  # encodes the track once
    for way in ("eager", "graphs"):
        with budget.case(section="fastpath", edit_track_s=seconds, way=way) as go:
            if not go:
                continue
            model.graphs = None if way == "eager" else graphs_for(device)
            engine.edit(req(0))  # graphs: the capture
            reset_peak(device)
            t0 = time.perf_counter()
            engine.edit(req(1))
            t1 = time.perf_counter()
            for seed in range(2, 6):
                engine.edit(req(seed))
            t2 = time.perf_counter()
            emit(section="fastpath", edit_track_s=seconds, region_s=4, way=way, device=device,
                 one_take_s=round(t1 - t0, 3), four_takes_s=round(t2 - t1, 3),
                 **memory(device, peak_allocated_gib="allocated"))
    with budget.case(section="fastpath", batch_takes=4, way="graphs") as go:
        if go:
            L = model.latent_length(min(seconds, 34.0), HEADROOM_SECONDS)
            keep = torch.ones(1, L)
            keep[:, L // 2 - 22: L // 2 + 22] = 0
            ref = torch.randn(1, model.cfg.io_channels, L, generator=torch.Generator().manual_seed(1))
            job = lambda n: Generation((PROMPT,) * n, (min(seconds, 34.0),) * n, L, 8, reference=ref,  # noqa: E731
                                       keep=keep.expand(n, -1), headroom_seconds=HEADROOM_SECONDS)
            sources = lambda: [generator_noise(torch.Generator().manual_seed(s)) for s in range(4)]  # noqa: E731
            times = {}
            for name, run in (("one_batch_s", lambda: model.sample(job(4), batched_noise(sources()))),
                              ("four_passes_s", lambda: [model.sample(job(1), s) for s in sources()])):
                run()  # capture
                sync(device)
                t0 = time.perf_counter()
                out = run()
                sync(device)
                times[name] = round(time.perf_counter() - t0, 3)
                times[name.replace("_s", "")] = out
            alone = torch.cat(times.pop("four_passes"))
            batch = times.pop("one_batch")
            emit(section="fastpath", batch_takes=4, heard_s=min(seconds, 34.0), way="graphs", device=device, **times,
                 snr_db_batch_vs_alone=snr_db(batch.float().cpu(), alone.float().cpu()),
                 bit_identical=bool(torch.equal(batch, alone)))
    model.graphs = None


def decode_kernels(model, device: str, config: str, budget: Budget, seconds: float = 120.0) -> None:
    """The five costliest kernels (CUDA time; CPU time on a CPU) of a chunked decode of ``seconds``."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    with budget.case(section="fastpath", decode=config) as go:
        if not go:
            return
        latents = torch.randn(1, model.cfg.io_channels, model.latent_length(seconds, 0.0),
                              generator=torch.Generator().manual_seed(0)).to(device)
        model.decode(latents, latents.shape[-1] > 512, window=512)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda(device) else [])
        sync(device)
        t0 = time.perf_counter()
        with torch_profile(activities=activities) as prof:
            model.decode(latents, latents.shape[-1] > 512, window=512)
            sync(device)
        total = time.perf_counter() - t0
        key = "device_time_total" if cuda(device) else "cpu_time_total"
        top = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)[:5]
        emit(section="fastpath", decode=config, seconds=seconds, device=device, decode_s_profiled=round(total, 3),
             top=[[e.key, round(getattr(e, key, 0) / 1e3, 2), e.count] for e in top])


def fastpath_model(models: Models, config: str, args):
    """The full-size model, or with --fastpath-tiny the golden tiny one of the same family (a copy)."""
    if not args.fastpath_tiny:
        return models.get(config)
    folder = "sa3_small_tiny" if config == SMALL else "sa3_medium_tiny"
    model = copy.deepcopy(parity._model(GOLDEN / folder, "model_config.json"))
    return on_device(model.set_precision(choose_precision(models.device, "auto")), models.device)


def fastpath(device: str, models: Models, args) -> None:
    budget = Budget(args.budget, args.case_budget)
    for config in (SMALL, MEDIUM):
        model = fastpath_model(models, config, args)
        generation(model, device, min(args.seconds))  # warm-up: one-off setup, kernel choice
        for seconds in args.seconds:
            if config == SMALL and seconds > SMALL_MAX_SECONDS:
                continue
            fast_ways(model, device, config, seconds, args, budget)
        if config == MEDIUM:
            fast_edit(model, device, args, budget)
        decode_kernels(model, device, config, budget, min(120.0, max(args.seconds)))


SECTIONS = {"env": env, "tiny": tiny, "full": full, "edit": edit, "switch": switch, "kernels": kernels,
            "profile": profile, "fastpath": fastpath}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a check of the script itself)")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    p.add_argument("--seconds", type=float, nargs="+", default=[10.0, 120.0, 380.0],
                   help="generation lengths of the full section (small-music stops at 120 s)")
    p.add_argument("--track-seconds", type=float, default=380.0, help="the edited track's length (edit section)")
    p.add_argument("--compile-seconds", type=float, nargs="*", default=[120.0],
                   help="fastpath: the lengths also run with compiled blocks (each compiles anew)")
    p.add_argument("--budget", type=float, default=330.0, help="fastpath: seconds before no new case starts")
    p.add_argument("--case-budget", type=float, default=150.0, help="fastpath: seconds one case may take")
    p.add_argument("--fastpath-tiny", action="store_true",
                   help="fastpath on the golden tiny models instead of full size (a dry run of the script)")
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
