"""The real engine: the studio's API (studio/api.py) over our SA3 models (models/).

Every request is fully described by itself and its seed; the engine keeps only loaded
weights and a cache of encoded tracks (a track is encoded once, every later edit of it
reuses its latents).

An edit runs on a *window* of the track around its regions: ``context_seconds`` of audio on
each side (default: the whole track while it fits the model's maximum, else
``LONG_TRACK_CONTEXT`` seconds). The window is aligned to the latent grid, regenerated with
the regions masked, decoded only around the regions, and spliced into the full track with
equal-power crossfades, so outside the regions the result equals the source sample for sample.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from models import plan
from models.config import DiffusionModelConfig, load_model_config
from models.loading import CheckpointError, resolve
from models.precision import Precision, choose_precision
from models.sa3 import Generation, StableAudio3
from models.noise import generator_noise
from studio import edit
from studio.catalog import CATALOG, MUSIC, SFX, model_info, prompt_for_model
from studio.api import (LATENT_HOP, SAMPLE_RATE, EditRequest, EngineError, GenerateRequest,
                        ModelInfo, Progress, Region, Take)

HEADROOM_SECONDS = 6.0  # attended frames past the clip (official duration_padding_sec)
LONG_TRACK_CONTEXT = 15.0  # seconds heard on each side of an edit in a track longer than the model
DECODE_MARGIN = 16
# Longer spans are encoded/decoded in windows of this many latents (~48 s): peak memory stays
# that of one window, and with the official 32-latent overlap the extra work is ~7%
# (the official 128-latent windows cost ~40% more than one pass).
CODEC_WINDOW = 512  # latent frames decoded on each side of the edited span (~1.5 s)
ENCODE_CACHE = 4  # tracks whose latents are kept


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_model() -> str:
    """medium on a GPU, small-music on a CPU."""
    return "medium" if torch.cuda.is_available() else "small-music"


@dataclass
class _Loaded:
    info: ModelInfo
    model: StableAudio3


class RealEngine:
    """``Engine`` over released checkpoints (short name, repo id or local folder)."""

    def __init__(self, device: Optional[str] = None, dtype: Optional[torch.dtype] = None,
                 token: Optional[str] = None, revision: Optional[str] = None, extra_models: tuple[str, ...] = (),
                 precision: str = "auto"):
        """``extra_models``: repo ids or local checkpoint folders offered beside the catalogue.
        ``precision``: "auto" (bf16 where the device computes it natively), "fp32" or "bf16"
        (models.precision); a ``dtype`` given instead runs every part in it."""
        self.device = device or default_device()
        self.extra = tuple(_describe(name) for name in extra_models)
        self.precision = (choose_precision(self.device, precision) if dtype is None
                          else Precision(dtype, dtype, dtype, "dtype given"))
        self.dtype = self.precision.dit
        self.token, self.revision = token, revision
        self._loaded: Optional[_Loaded] = None
        self._latents: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    @classmethod
    def from_model(cls, model: StableAudio3, name: str = "small-music") -> "RealEngine":
        """An engine over an already-built model (benchmarks, tests); ``name`` picks its
        catalog entry (limits, prompt prefix), or describes a local folder."""
        engine = cls(device=str(model.device), dtype=model.dit.dtype)
        info = model_info(name) or _describe(name, model.cfg)
        engine._loaded = _Loaded(info, model)
        return engine

    # ----------------------------------------------------------------- models

    def models(self) -> list[ModelInfo]:
        return list(CATALOG) + list(self.extra)

    def load(self, name: str, progress: Optional[Progress] = None) -> ModelInfo:
        if self._loaded and self._loaded.info.name == name:
            return self._loaded.info
        _report(progress, "load", 0, 1)
        try:
            ckpt = resolve(name, revision=self.revision, token=self.token,
                           progress=lambda done, total: _report(progress, "load", done, total))
            model = StableAudio3.from_checkpoint(ckpt, self.device, precision=self.precision)
        except CheckpointError as e:
            raise EngineError(str(e)) from e
        except (ValueError, OSError) as e:
            raise EngineError(f"The model {name!r} could not be loaded: {e}") from e
        info = next((m for m in self.models() if m.name == name), None) or _describe(name, model.cfg)
        self._loaded, self._latents = _Loaded(info, model), OrderedDict()
        _report(progress, "load", 1, 1)
        return info

    def _model(self) -> _Loaded:
        if self._loaded is None:
            raise EngineError("No model is loaded yet: pick a model first.")
        return self._loaded

    # ----------------------------------------------------------------- text-to-audio, audio-to-audio

    def generate(self, req: GenerateRequest, progress: Optional[Progress] = None) -> Take:
        loaded = self._model()
        model, info = loaded.model, loaded.info
        t0 = time.perf_counter()
        if not 0 < req.seconds <= info.max_seconds:
            raise ValueError(f"seconds must be in (0, {info.max_seconds:g}] for {info.name}, got {req.seconds}")
        L = model.latent_length(req.seconds, HEADROOM_SECONDS)
        init = None
        if req.init_audio is not None and req.init_strength < 1.0:
            _check_audio(req.init_audio, "init_audio")
            _report(progress, "encode", 0, 1)
            init = self._encode(_fit(req.init_audio, L * LATENT_HOP), model)[..., :L]
            _report(progress, "encode", 1, 1)
        job = Generation((self._prompt(req.prompt, info),), (float(req.seconds),), L,
                         req.steps or info.default_steps, init=init,
                         init_noise_level=float(req.init_strength), headroom_seconds=HEADROOM_SECONDS,
                         monotonic_init=True)
        latents = self._sample(model, job, req.seed, progress)
        n = edit.to_samples(req.seconds)
        audio = self._decode(model, latents[..., : -(-n // LATENT_HOP)], progress)[0, :, :n]
        return Take(audio, req, req.seed, info.name, (Region(0.0, n / SAMPLE_RATE),), time.perf_counter() - t0)

    # ----------------------------------------------------------------- inpainting, continuation

    def edit(self, req: EditRequest, progress: Optional[Progress] = None) -> Take:
        loaded = self._model()
        model, info = loaded.model, loaded.info
        t0 = time.perf_counter()
        _check_audio(req.source, "source")
        n = req.source.shape[1]
        regions = edit.validate_regions(req.regions, n / SAMPLE_RATE)
        if req.continue_seconds < 0:
            raise ValueError(f"continue_seconds must be >= 0, got {req.continue_seconds}")
        total = n + edit.to_samples(req.continue_seconds)
        if req.continue_seconds > 0:
            regions = regions + (Region(n / SAMPLE_RATE, total / SAMPLE_RATE, None),)
        if not regions:
            raise ValueError("Paint at least one region or set “continue by” before generating.")
        window = plan_window(regions, total, info.max_seconds - HEADROOM_SECONDS, req.context_seconds)
        source_latents = self._source_latents(req.source, model, progress)
        groups = _by_prompt(regions, req.prompt)
        takes = self._edit_window(model, info, req, groups, window, source_latents, progress)
        generated = np.zeros((2, total), dtype=np.float32)
        generated[:, :n] = req.source
        for (_, group), new in zip(groups, takes):  # each region from the item that made it
            for r in group:
                a, b = edit.to_samples(r.start), min(edit.to_samples(r.end), total)
                generated[:, a:b] = new[:, a - window[0]:b - window[0]]
        audio = edit.splice(req.source, generated, regions, req.crossfade_ms)
        return Take(audio, req, req.seed, info.name, regions, time.perf_counter() - t0)

    def _edit_window(self, model: StableAudio3, info: ModelInfo, req: EditRequest, groups, window,
                     source_latents: torch.Tensor, progress) -> np.ndarray:
        """Regenerate each group's regions inside ``window`` (samples, latent-aligned), one batch
        item per group (its prompt; the other groups' audio kept). Returns (G, 2, window) audio,
        decoded only around the regions (zeros elsewhere)."""
        w0, w1 = window
        f0, f1 = w0 // LATENT_HOP, -(-w1 // LATENT_HOP)
        seconds = (w1 - w0) / SAMPLE_RATE
        L = model.latent_length(seconds, HEADROOM_SECONDS)
        reference = torch.zeros(1, source_latents.shape[1], L)
        have = source_latents[..., f0:min(f1, source_latents.shape[-1])]
        reference[..., : have.shape[-1]] = have.float()
        keep = torch.cat([self._keep(group, w0, L, seconds) for _, group in groups])  # (G, L)
        strength = float(req.strength)
        prompts = tuple(self._prompt(prompt, info) for prompt, _ in groups)
        job = Generation(prompts, (seconds,) * len(groups), L, req.steps or info.default_steps,
                         reference=reference, keep=keep, init=reference if strength < 1 else None,
                         init_noise_level=strength, headroom_seconds=HEADROOM_SECONDS, monotonic_init=True)
        latents = self._sample(model, job, req.seed, progress)
        # Decode only the edited span (plus margin): the rest of the window is the source anyway.
        regions = [r for _, group in groups for r in group]
        first = max(0, int(min(r.start for r in regions) * SAMPLE_RATE) // LATENT_HOP - f0 - DECODE_MARGIN)
        last = min(f1 - f0, -(-int(max(r.end for r in regions) * SAMPLE_RATE) // LATENT_HOP) - f0 + DECODE_MARGIN)
        audio = self._decode(model, latents[..., first:last], progress)  # (G, 2, span)
        out = np.zeros((len(groups), 2, w1 - w0), dtype=np.float32)
        span = out[..., first * LATENT_HOP: last * LATENT_HOP]
        span[:] = audio[..., : span.shape[-1]]
        return out

    @staticmethod
    def _keep(regions, w0: int, L: int, seconds: float) -> torch.Tensor:
        """(1, L) latent keep mask of a window starting at sample ``w0``."""
        local = [(r.start - w0 / SAMPLE_RATE, r.end - w0 / SAMPLE_RATE) for r in regions]
        return plan.to_latent_mask(plan.keep_mask(local, L * LATENT_HOP, seconds, SAMPLE_RATE), L)

    # ----------------------------------------------------------------- steps

    def _prompt(self, prompt: str, info: ModelInfo) -> str:
        return prompt_for_model(prompt, info)

    def _sample(self, model: StableAudio3, job: Generation, seed: int, progress) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(seed))
        _report(progress, "steps", 0, job.steps)
        steps = lambda s: _report(progress, "steps", s.i + 1, s.steps)
        return model.sample(job, generator_noise(generator), callback=steps)

    def _decode(self, model: StableAudio3, latents: torch.Tensor, progress) -> np.ndarray:
        _report(progress, "decode", 0, 1)
        chunked = latents.shape[-1] > CODEC_WINDOW
        audio = model.decode(latents, chunked, window=CODEC_WINDOW)[..., : latents.shape[-1] * LATENT_HOP]
        _report(progress, "decode", 1, 1)
        return audio.float().clamp(-1, 1).cpu().numpy()

    def _encode(self, audio: np.ndarray, model: StableAudio3) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        return model.encode(x, x.shape[-1] > CODEC_WINDOW * LATENT_HOP, window=CODEC_WINDOW).float().cpu()

    def _source_latents(self, source: np.ndarray, model: StableAudio3, progress) -> torch.Tensor:
        """The whole track's latents, encoded once per track (keyed by its samples)."""
        key = (hashlib.sha1(np.ascontiguousarray(source, dtype=np.float32).tobytes()).hexdigest(), source.shape)
        if key in self._latents:
            self._latents.move_to_end(key)
            _report(progress, "encode", 1, 1)
            return self._latents[key]
        _report(progress, "encode", 0, 1)
        latents = self._encode(source, model)[..., : -(-source.shape[1] // LATENT_HOP)]
        self._latents[key] = latents
        if len(self._latents) > ENCODE_CACHE:
            self._latents.popitem(last=False)
        _report(progress, "encode", 1, 1)
        return latents


def plan_window(regions, total: int, max_seconds: float, context_seconds: Optional[float]) -> tuple[int, int]:
    """(start, end) samples of the part of a ``total``-sample track an edit runs on.

    The regions' hull plus ``context_seconds`` each side (None: the whole track when it fits
    ``max_seconds``, else ``LONG_TRACK_CONTEXT`` as far as it fits), clipped to the track and aligned
    to the latent grid. A hull longer than ``max_seconds`` is an error naming both lengths.
    """
    limit = int(max_seconds * SAMPLE_RATE) // LATENT_HOP * LATENT_HOP
    first = int(min(r.start for r in regions) * SAMPLE_RATE) // LATENT_HOP * LATENT_HOP
    last = -(-int(round(max(r.end for r in regions) * SAMPLE_RATE)) // LATENT_HOP) * LATENT_HOP
    if last - first > limit:
        raise ValueError(f"The regions span {(last - first) / SAMPLE_RATE:.1f} s, more than this model's "
                         f"{max_seconds:.0f} s: edit them in smaller groups.")
    end_of_track = -(-total // LATENT_HOP) * LATENT_HOP
    if context_seconds is None:
        if end_of_track <= limit:
            return 0, total
        context = min(int(LONG_TRACK_CONTEXT * SAMPLE_RATE), (limit - (last - first)) // 2)
    else:
        if context_seconds < 0:
            raise ValueError(f"context_seconds must be >= 0, got {context_seconds}")
        context = min(int(context_seconds * SAMPLE_RATE), (limit - (last - first)) // 2)
    context = context // LATENT_HOP * LATENT_HOP
    start, end = max(0, first - context), min(end_of_track, last + context)
    # Give context cut at one end of the track to the other end.
    spare = 2 * context - (first - start) - (end - last)
    start, end = max(0, start - spare), min(end_of_track, end + spare)
    if end - start > limit:
        end = start + limit
    return start, min(end, total)


def _by_prompt(regions, prompt: str) -> list[tuple[str, tuple[Region, ...]]]:
    """Regions grouped by the prompt they ask for (a region's own, else the edit's)."""
    groups: dict[str, list[Region]] = {}
    for r in regions:
        groups.setdefault(r.prompt or prompt, []).append(r)
    return [(p, tuple(rs)) for p, rs in groups.items()]


def _describe(name: str, cfg: Optional[DiffusionModelConfig] = None) -> ModelInfo:
    """A checkpoint outside the catalogue (repo id or folder), described from its config when
    we have it; music unless its name or text-encoder repo says sfx."""
    path = Path(name).expanduser()
    if cfg is None and (path / "model_config.json").is_file():
        cfg = load_model_config(path / "model_config.json")
    repo = cfg.conditioning.by_id("prompt").config.repo_id if cfg is not None else None
    sfx = "sfx" in f"{name} {repo or ''}".lower()
    max_seconds = cfg.max_seconds if cfg is not None else model_info("medium").max_seconds
    where = "A local checkpoint folder." if path.is_dir() else "A checkpoint from Hugging Face."
    return ModelInfo(name, path.name if path.is_dir() else name, "sfx" if sfx else "music", where,
                     max_seconds, SFX if sfx else MUSIC, 8)


def _check_audio(audio: np.ndarray, what: str) -> None:
    if not isinstance(audio, np.ndarray) or audio.ndim != 2 or audio.shape[0] != 2:
        raise ValueError(f"{what} must be stereo audio shaped (2, N), got {getattr(audio, 'shape', type(audio))}")
    if audio.shape[1] == 0:
        raise ValueError(f"{what} is empty")
    if not np.isfinite(audio).all():
        raise ValueError(f"{what} holds NaN or infinite samples")


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((2, n), dtype=np.float32)
    k = min(n, audio.shape[1])
    out[:, :k] = audio[:, :k]
    return out


def _report(progress: Optional[Progress], stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)
