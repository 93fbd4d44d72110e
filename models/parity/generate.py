"""Parity runner for ``generate`` fixtures: whole official ``StableAudioModel.generate`` runs.

Each entry of ``runs`` holds the exact keyword arguments of one official call. We rebuild
the same job (lengths, masks, encoded reference, conditioning), replay the recorded random
draws in order, and compare every recorded intermediate and the output.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import torch

from models import plan
from models.config import HEADROOM_SECONDS, load_model_config
from models.loading import Checkpoint
from models.parity.core import GENERATE_REL_TOL, CaseResult, Fixture, check, check_sum
from models.sa3 import Generation, StableAudio3
from models.noise import recorded_noise
from models.sampling import effective_seq_len

# The official generate()'s defaults (its sample_size default, not the config's, caps lengths).
DEFAULTS = dict(batch_size=1, steps=8, cfg_scale=1.0, apg_scale=1.0, duration_padding_sec=HEADROOM_SECONDS,
                init_noise_level=1.0, return_latents=False, sample_size=5292032,
                truncate_output_to_duration=True, chunked_decode=False)
UNDERSTOOD = set(DEFAULTS) | {"prompt", "negative_prompt", "duration", "seed", "inpaint_audio",
                              "inpaint_mask_start_seconds", "inpaint_mask_end_seconds", "init_audio"}


@lru_cache(maxsize=4)
def _model(folder: Path, config_name: str) -> StableAudio3:
    ckpt = Checkpoint(folder)
    cfg_path = folder / config_name
    return StableAudio3.from_checkpoint(ckpt, text_encoder_folder=_text_folder(folder, cfg_path),
                                        text_dtype=torch.float32, config_path=cfg_path)


def _text_folder(folder: Path, cfg_path: Path) -> Path:
    """The config names the encoder as repo_id + subfolder; fixtures keep it as a sibling folder."""
    subfolder = load_model_config(cfg_path).conditioning.by_id("prompt").config.subfolder
    return folder.parent / subfolder


def _as_list(value, n):
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def audio_input(fx: Fixture) -> torch.Tensor:
    inputs = Fixture.read(fx.golden_root / "common" / "audio_inputs.json")
    return inputs.tensors["inpaint_audio"]


def _prepare_audio(audio: torch.Tensor, n_samples: int) -> torch.Tensor:
    """(2, N) -> (1, 2, n_samples): zero-padded or cropped (official PadCrop, no random offset)."""
    out = audio.new_zeros(audio.shape[0], n_samples)
    n = min(n_samples, audio.shape[-1])
    out[:, :n] = audio[:, :n]
    return out[None]


def build_job(model: StableAudio3, kwargs: dict, audio: torch.Tensor, loras=()):
    """The official ``generate`` set-up of one call -> (Generation, encoded reference or init).
    ``loras``: the ``LoraUse``s loaded on the official model (the lora runner's runs)."""
    unknown = sorted(set(kwargs) - UNDERSTOOD)
    if unknown:
        raise ValueError(f"generate kwargs this runner does not reproduce: {unknown}")
    k = {**DEFAULTS, **kwargs}
    B = k["batch_size"]
    prompts, seconds = _as_list(k["prompt"], B), [float(s) for s in _as_list(k["duration"], B)]
    n_samples = plan.audio_length(model.cfg.same, k["sample_size"], max(seconds), k["duration_padding_sec"],
                                  model.sample_rate)
    L = n_samples // model.downsampling_ratio
    encoded = reference = keep = init = None
    if "inpaint_audio" in k or "init_audio" in k:
        encoded = model.encode(_prepare_audio(audio, n_samples))
    if "inpaint_mask_start_seconds" in k:
        starts = _as_list(k["inpaint_mask_start_seconds"], 1)
        ends = _as_list(k["inpaint_mask_end_seconds"], 1)
        keep = plan.keep_mask(list(zip(starts, ends)), n_samples, max(seconds), model.sample_rate)
        keep = plan.to_latent_mask(keep, encoded.shape[-1] if encoded is not None else L)
    if "inpaint_audio" in k:
        reference = encoded
    if "init_audio" in k:
        init = encoded
    negative = _as_list(k["negative_prompt"], B) if "negative_prompt" in k else None
    job = Generation(tuple(prompts), tuple(seconds), L, k["steps"], reference, keep, init,
                     k["init_noise_level"], negative and tuple(negative), k["cfg_scale"], k["apg_scale"],
                     k["duration_padding_sec"], loras=tuple(loras))
    return job, encoded


def run(fx: Fixture) -> Iterator[CaseResult]:
    audio = None
    for spec in fx.meta["runs"]:
        model = _model(fx.folder, config_name(fx, spec))
        if audio is None:
            audio = audio_input(fx)
        yield from _run_one(fx, model, spec, audio)


def config_name(fx: Fixture, spec: dict) -> str:
    """The config a run used, read from what it did rather than its name: the rf_denoiser
    model samples ping-pong (one draw per step), the ``-base`` variant (rectified_flow) Euler
    (no draw after the initial noise)."""
    base = "model_config_base.json"
    sites = [d["site"] for d in fx.meta[f"{spec['name']}_noise_sequence"]]
    if any("pingpong" in site for site in sites) or not (fx.folder / base).exists():
        return "model_config.json"
    return base


def _clip_for(spec: dict, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Continuation runs hand generate a short clip ("a 0.4 s clip, zero-padded by generate"):
    the first seconds of the shared input, as long as the part to keep."""
    said = re.search(r"\b(?:a|the first) ([0-9]*\.?[0-9]+) ?s(?:ec(?:ond)?s?)? clip", spec.get("doc", ""))
    if said:
        return audio[:, : int(float(said.group(1)) * sample_rate)]
    if "continu" in spec["name"]:
        start = _as_list(spec["kwargs"]["inpaint_mask_start_seconds"], 1)[0]
        return audio[:, : int(start * sample_rate)]
    return audio


def _run_one(fx: Fixture, model: StableAudio3, spec: dict, audio, loras=()) -> Iterator[CaseResult]:
    T = fx.tensors
    name = spec["name"]
    steps = []
    job, encoded, out, noise = run_output(fx, model, spec, audio, steps.append, loras)
    if encoded is not None and f"{name}_encoded_reference0" in T:
        yield check(f"{name}/encoded_reference0", encoded, T[f"{name}_encoded_reference0"])
    result = check(f"{name}/output", out, T[f"{name}_output"], rel=GENERATE_REL_TOL)
    if noise.remaining:  # the official run drew more: we skipped a random step it took
        result = CaseResult(result.name, "fail", result.error, result.tolerance,
                            f"{len(noise.remaining)} of {len(fx.meta[f'{name}_noise_sequence'])} "
                            "recorded draws unused")
    yield result
    yield from _intermediates(fx, model, name, job, steps)


def run_output(fx: Fixture, model: StableAudio3, spec: dict, audio, callback=None, loras=()):
    """One official run replayed: (job, encoded audio or None, output as the fixture stores it,
    the noise source, to check that every draw was used)."""
    kwargs = spec["kwargs"]
    job, encoded = build_job(model, kwargs, _clip_for(spec, audio, model.sample_rate), loras)
    noise = recorded_noise([fx.tensors[d["name"]] for d in fx.meta[f"{spec['name']}_noise_sequence"]])
    k = {**DEFAULTS, **kwargs}
    out = model.generate(job, noise, decode=not k["return_latents"],
                         chunked_decode=k["chunked_decode"], decoder_noise=True, callback=callback)
    if not k["return_latents"] and k["truncate_output_to_duration"]:
        out = _truncate(out, kwargs, model.sample_rate)
    return job, encoded, out, noise


def _truncate(audio, kwargs, sample_rate):
    """Official: cut to the duration when every item has the same one."""
    durations = _as_list(kwargs["duration"], 1)
    if all(d == durations[0] for d in durations):
        return audio[..., : int(durations[0] * sample_rate)]
    return audio


def _intermediates(fx: Fixture, model: StableAudio3, name: str, job: Generation, steps) -> Iterator[CaseResult]:
    T = fx.tensors
    cond = model.conditioner(job.prompts, job.seconds)
    local = model._local_add_cond(job, job.batch_size, model.cfg.io_channels, job.latent_length)
    ours = {
        "effective_seq_len": effective_seq_len(job.seconds, model.sample_rate, model.downsampling_ratio),
        "padding_mask": model.padding_mask(job),
        "local_add_cond": local,
        "global_cond": cond.global_cond,
        "sigmas": model.schedule(job),
    }
    for key, value in ours.items():
        if f"{name}_{key}" in T:
            yield check(f"{name}/{key}", value, T[f"{name}_{key}"])
    if f"{name}_cross_attn_cond_sum_f64" in T:
        sums = cond.cross_attn_cond.double().sum(dim=(1, 2))
        for b, golden in enumerate(T[f"{name}_cross_attn_cond_sum_f64"].tolist()):
            yield check_sum(f"{name}/cross_attn_cond_sum_f64[{b}]", sums[b].item(), golden)
    for i, step in enumerate(steps):
        if f"{name}_step{i}_x" in T:
            yield check(f"{name}/step{i}_x", step.x, T[f"{name}_step{i}_x"])
            yield check(f"{name}/step{i}_t", step.t, T[f"{name}_step{i}_t"])
            velocity = (step.x - step.denoised) / step.t.view(-1, 1, 1)
            yield check(f"{name}/step{i}_out", velocity, T[f"{name}_step{i}_out"])
