"""The first GPU run of SA3 Studio in one prepared script (no network, under 10 minutes on one GPU).

    python bench/gpu_check.py                      # everything, on cuda
    python bench/gpu_check.py --only tiny          # one section
    python bench/gpu_check.py --device cpu --only tiny   # the script's own check, on a CPU

Prints one JSON line per figure (a failing section prints its error and the others still run):
  tiny     the golden tiny models' generate runs on the device in fp32 and bf16 against the same
           runs on the CPU in fp32: snr_db and max_abs_err of the output, per run
  full     full-size small-music and medium (seeded random weights) in bf16 at 10/120/380 s:
           step_s (mean of the sampler steps), decode_s, total_s, peak_allocated_gib,
           peak_reserved_gib
  edit     a 4 s edit of a 380 s track through RealEngine.edit on medium with 1 and 4 prompt
           groups: edit_s, heard_s, peak_allocated_gib
  kernels  one DiT step at 120 s on medium with torch's SDPA and with flash-attn (when it can
           run: sm80+, flash-attn >= 2.3): step_s, decode_s and total_s for each kernel
  profile  one DiT step under torch.profiler: host_syncs (cudaStreamSynchronize and
           cudaDeviceSynchronize calls), device_to_host copies, cpu_to_device copies
Without CUDA and without --device cpu it prints one sentence and exits 0.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from bench.generate import PROMPT, build_model  # noqa: E402
from models.config import HEADROOM_SECONDS  # noqa: E402
from models.noise import generator_noise  # noqa: E402
from models.parity import generate as parity  # noqa: E402
from models.parity.core import Fixture  # noqa: E402
from models.precision import choose_precision  # noqa: E402
from models.sa3 import Generation  # noqa: E402

GOLDEN = ROOT / "tests" / "fixtures" / "golden"
CONFIGS = ROOT / "tests" / "fixtures" / "reference" / "configs"
GIB = 2**30


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def snr_db(ours: torch.Tensor, ref: torch.Tensor) -> float:
    noise = (ours.double() - ref.double()).pow(2).sum()
    return round(float(10 * torch.log10(ref.double().pow(2).sum() / noise.clamp_min(1e-30))), 2)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def tiny(device: str) -> None:
    dtypes = ("fp32",) if device == "cpu" else ("fp32", "bf16")
    for folder in ("sa3_small_tiny", "sa3_medium_tiny"):
        fx = Fixture.read(GOLDEN / folder / "generate.json")
        audio = parity.audio_input(fx)
        for spec in fx.meta["runs"]:
            config = parity.config_name(fx, spec)
            reference = parity.run_output(fx, parity._model(fx.folder, config), spec, audio)[2]
            for name in dtypes:
                model = parity._model(fx.folder, config).set_precision(choose_precision(device, name)).to(device)
                out = parity.run_output(fx, model, spec, audio.to(device))[2].float().cpu()
                emit(section="tiny", model=folder, run=spec["name"], device=device, precision=name,
                     snr_db=snr_db(out, reference), max_abs_err=float((out - reference).abs().max()))


def _on(device: str, config: str):
    model = build_model(CONFIGS / config, choose_precision(device, "auto")).to(device)
    encoder = model.conditioner.prompt.encoder
    if encoder is not None and hasattr(encoder, "encoder"):
        encoder.encoder.to(device)
    return model


def _generation(model, device: str, seconds: float) -> dict:
    L = model.latent_length(seconds, HEADROOM_SECONDS)
    job = Generation((PROMPT,), (float(seconds),), L, 8, headroom_seconds=HEADROOM_SECONDS)
    stamps = []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t0 = time.perf_counter()
    latents = model.sample(job, generator_noise(torch.Generator().manual_seed(0)),
                           callback=lambda s: (sync(device), stamps.append(time.perf_counter())))
    t1 = time.perf_counter()
    model.decode(latents, latents.shape[-1] > 512, window=512)
    sync(device)
    t2 = time.perf_counter()
    steps = [b - a for a, b in zip([t0] + stamps, stamps)]
    row = {"step_s": round(sum(steps[1:]) / max(1, len(steps) - 1), 4), "first_step_s": round(steps[0], 4),
           "decode_s": round(t2 - t1, 3), "total_s": round(t2 - t0, 3)}
    if device.startswith("cuda"):
        row.update(peak_allocated_gib=round(torch.cuda.max_memory_allocated() / GIB, 2),
                   peak_reserved_gib=round(torch.cuda.max_memory_reserved() / GIB, 2))
    return row


def full(device: str) -> None:
    for config, lengths in (("stable-audio-3-small-music.json", (10, 120)),
                            ("stable-audio-3-medium.json", (10, 120, 380))):
        model = _on(device, config)
        _generation(model, device, 5.0)  # warm-up
        for seconds in lengths:
            emit(section="full", config=config, seconds=seconds, device=device, **_generation(model, device, seconds))
        del model
        torch.cuda.empty_cache() if device.startswith("cuda") else None


def edit(device: str) -> None:
    import numpy as np
    from studio.api import EditRequest, Region
    from studio.engine import RealEngine
    model = _on(device, "stable-audio-3-medium.json")
    engine = RealEngine.from_model(model, "medium")
    track = (0.1 * np.random.default_rng(0).standard_normal((2, 380 * 44100))).astype(np.float32)
    for groups in (1, 4):
        regions = tuple(Region(100.0 + 6 * k, 104.0 + 6 * k, f"part {k}" if groups > 1 else None)
                        for k in range(groups))
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        engine.edit(EditRequest(model="medium", source=track, regions=regions, prompt=PROMPT, seed=0))
        row = {"edit_s": round(time.perf_counter() - t0, 3),
               "heard_s": engine.estimate("medium", 380.0, regions).heard_seconds}
        if device.startswith("cuda"):
            row["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        emit(section="edit", track_s=380, prompt_groups=groups, device=device, **row)


def kernels(device: str) -> None:
    from models import transformer
    model = _on(device, "stable-audio-3-medium.json")
    original = transformer.flash_kernel
    probe = torch.zeros(1, device=device, dtype=torch.bfloat16)
    flash_usable = original(probe, "flash_attn_varlen_func") is not None
    for name, kernel in (("sdpa", lambda q, n: None), ("flash", original)):
        if name == "flash" and not flash_usable:
            emit(section="kernels", kernel=name, skipped="flash-attn is not installed or cannot run on this card")
            continue
        transformer.flash_kernel = kernel
        try:
            _generation(model, device, 5.0)
            emit(section="kernels", kernel=name, seconds=120, **_generation(model, device, 120.0))
        finally:
            transformer.flash_kernel = original


def profile(device: str) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile
    model = _on(device, "stable-audio-3-small-music.json")
    _generation(model, device, 5.0)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with torch_profile(activities=activities) as prof:
        _generation(model, device, 10.0)
    names = [e.name for e in prof.events()]
    emit(section="profile", device=device, generation_s=10, steps=8,
         host_syncs=sum("Synchronize" in n for n in names),
         device_to_host=sum("DtoH" in n or "Memcpy DtoH" in n for n in names),
         host_to_device=sum("HtoD" in n for n in names))


SECTIONS = {"tiny": tiny, "full": full, "edit": edit, "kernels": kernels, "profile": profile}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (the tiny section as a self-check)")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("No CUDA device here: run this on a machine with an NVIDIA GPU, or pass --device cpu "
              "--only tiny to check the script itself.")
        return 0
    failed = 0
    for name in args.only:
        try:
            SECTIONS[name](args.device)
        except Exception as e:  # one section's failure is a figure too; the others still run
            traceback.print_exc(file=sys.stderr)
            emit(section=name, error=f"{type(e).__name__}: {e}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
