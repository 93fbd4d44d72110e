"""The real engine: the studio's API (studio/api.py) over our SA3 models (models/).

Every request is fully described by itself and its seed, its model included. The engine keeps
loaded weights (one model at a time by default: a request for another model waits for the
running job, frees the old model, then loads the new one), a cache of encoded tracks keyed by
model and samples, and a queue that runs one job at a time (studio/jobs.py).

An edit runs on a *window* of the track around its regions: ``context_seconds`` of audio on
each side (default: the whole track while it fits the model's maximum, else
``edit.LONG_TRACK_CONTEXT`` seconds). The window is aligned to the latent grid, regenerated with
the regions masked, decoded only around the regions, and spliced into the full track with
equal-power crossfades, so outside the regions the result equals the source sample for sample.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from models import plan
from models.config import HEADROOM_SECONDS
from models.config import DiffusionModelConfig, load_model_config
from models.loading import CheckpointError, first_line, resolve, resolve_file
from models.lora import LoraFile, LoraUse, read_lora
from models.precision import Precision, choose_precision
from models.sa3 import Generation, StableAudio3
from models.noise import generator_noise
from studio import edit
from studio.catalog import BASE_CFG, BASE_STEPS, CATALOG, MUSIC, SFX, model_info, prompt_for_model
from studio.api import (LATENT_HOP, SAMPLE_RATE, Cancelled, EditRequest, EngineError, GenerateRequest,
                        Estimate, ModelInfo, Progress, PreviewSink, Region, Take, check_finite, check_length,
                        preview_steps, report)
from studio.jobs import JobQueue

log = logging.getLogger(__name__)

DECODE_MARGIN = 16  # latent frames decoded on each side of the edited span (~1.5 s)
# Longer spans are decoded in windows of this many latents (~48 s): peak memory stays that of one
# window, and with the official 32-latent overlap the extra work is ~7% (the official 128-latent
# windows cost ~40% more than one pass).
CODEC_WINDOW = 512
ENCODE_CACHE = 4  # tracks whose latents are kept
ENCODE_PIECE = 128  # latent frames (~12 s) encoded at a time: encode-ahead gives way between pieces
MAX_BATCH = 4  # prompt groups sampled together; more groups run as further batches (bounded memory)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> str:
    """``device`` if this machine has it, else an EngineError saying what to use instead."""
    try:
        kind = torch.device(device)
    except (RuntimeError, TypeError):
        raise EngineError(f"Unknown device {device!r}: use cpu or cuda (cuda:1 for a second GPU).") from None
    if kind.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineError(f"Device {device!r} needs an NVIDIA GPU, but PyTorch finds none (no GPU, no driver, "
                              "or a CPU-only torch build): use the cpu device, or install torch with CUDA.")
        if (kind.index or 0) >= torch.cuda.device_count():
            raise EngineError(f"Device {device!r} does not exist: this machine has {torch.cuda.device_count()} "
                              "GPU(s), numbered from cuda:0.")
    elif kind.type != "cpu":
        raise EngineError(f"Device {device!r} is not supported: use cpu or cuda.")
    return device


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
                 precision: str = "auto", graphs: Optional[bool] = None):
        """``extra_models``: repo ids or local checkpoint folders offered beside the catalogue.
        ``precision``: "auto" (bf16 where the device computes it natively), "fp32" or "bf16"
        (models.precision); a ``dtype`` given instead runs every part in it. ``graphs``: replay
        sampler steps as CUDA graphs (models/graphs.py; the same takes); default on with CUDA."""
        self.device = check_device(device or default_device())
        on_cuda = torch.device(self.device).type == "cuda"
        if graphs and not on_cuda:
            raise EngineError(f"CUDA graphs need a CUDA device, not {self.device}: leave graphs off on a CPU.")
        self.graphs = on_cuda if graphs is None else graphs
        self.extra = tuple(_describe(name) for name in extra_models)
        self.precision = (choose_precision(self.device, precision) if dtype is None
                          else Precision(dtype, dtype, dtype, "dtype given"))
        self.dtype = self.precision.dit
        self.token, self.revision = token, revision
        self._loaded: dict[str, _Loaded] = {}  # at most one model (see _ensure)
        self._revisions: dict[str, str] = {}     # model -> the Hugging Face commit its files came from
        self._latents: OrderedDict[tuple, TrackLatents] = OrderedDict()  # (model, hash, shape) -> latents
        self._jobs = JobQueue()
        self._costs = Costs()
        self._lora_files = LoraFiles(token)

    @classmethod
    def from_model(cls, model: StableAudio3, name: str = "small-music") -> "RealEngine":
        """An engine over an already-built model (benchmarks, tests); ``name`` picks its
        catalog entry (limits, prompt prefix), or describes a local folder."""
        engine = cls(device=str(model.device), dtype=model.dit.dtype)
        info = model_info(name) or _describe(name, model.cfg)
        engine._loaded[name] = _Loaded(info, engine._fast(model))
        return engine

    # ----------------------------------------------------------------- models

    def models(self) -> list[ModelInfo]:
        return list(CATALOG) + list(self.extra)

    def describe(self, name: str) -> ModelInfo:
        """The ModelInfo of ``name``: a catalogue entry, an offered extra, or a folder/repo described."""
        if name in self._loaded:
            return self._loaded[name].info
        return next((m for m in self.models() if m.name == name), None) or _describe(name)

    def estimate(self, model: str, track_seconds: float, spans, steps: int | None = None,
                 context_seconds: Optional[float] = None) -> Estimate:
        """What an edit of ``spans`` (Regions, on the take's axis) in a ``track_seconds`` take will
        cost: the audio the model hears and, once this machine has run a take, about how long its
        steps and decode take (encoding, usually done ahead, is not counted). ValueError as the
        edit itself would raise."""
        info = self.describe(model)
        total = edit.to_samples(track_seconds)
        w0, w1 = edit.window(spans, total, info.max_seconds - HEADROOM_SECONDS, context_seconds)
        frames = -(-(w1 - w0) // LATENT_HOP) + int(HEADROOM_SECONDS * SAMPLE_RATE) // LATENT_HOP
        edited = sum(-(-edit.to_samples(r.end - r.start) // LATENT_HOP) + 2 * DECODE_MARGIN for r in spans)
        work = {"step": frames * (steps or info.default_steps), "decode": min(edited, frames)}
        return Estimate(heard_seconds=(w1 - w0) / SAMPLE_RATE, seconds=self._costs.seconds(work))

    def loaded(self) -> list[str]:
        """Names of the models in memory now."""
        return list(self._loaded)

    def made_on(self, model: str) -> dict:
        """What a replay must match to remake a take of ``model`` bit for bit (every recipe records
        it): the precision, the device and, for a model from Hugging Face, the commit of its files."""
        return {"precision": self.precision.name, "device": self.device, "revision": self._revisions.get(model)}

    def prepare(self, name: str, progress: Optional[Progress] = None) -> ModelInfo:
        with self._jobs.turn(progress):
            return self._ensure(name, progress).info

    def _ensure(self, name: str, progress: Optional[Progress]) -> _Loaded:
        """The model ``name``, loaded if needed. Called inside a job's turn, so no other job runs:
        the model in memory is freed BEFORE the new one is read (a switch holds one model)."""
        if name in self._loaded:
            return self._loaded[name]
        self._unload()
        log.info("loading model %s on %s", name, self.device)
        t0 = time.perf_counter()
        report(progress, "load", 0, 1)
        try:
            ckpt = resolve(name, revision=self.revision, token=self.token,
                           progress=lambda done, total: report(progress, "load", done, total))
            model = StableAudio3.from_checkpoint(ckpt, self.device, precision=self.precision)
            if ckpt.folder.parent.name == "snapshots":  # huggingface_hub's cache: snapshots/<commit>/
                self._revisions[name] = ckpt.folder.name
        except Cancelled:
            raise
        except CheckpointError as e:
            raise EngineError(str(e)) from e
        except Exception as e:  # a user's checkpoint can be broken in many ways: say which, never a traceback
            raise EngineError(f"The model {name!r} could not be loaded ({type(e).__name__}: {first_line(e)}); "
                              "check that it is a complete SA3 checkpoint, or download it again.") from e
        if (model.cfg.sample_rate, model.cfg.same.downsampling_ratio) != (SAMPLE_RATE, LATENT_HOP):
            raise EngineError(f"The model {name!r} works at {model.cfg.sample_rate} Hz with a latent hop of "
                              f"{model.cfg.same.downsampling_ratio}; the studio needs {SAMPLE_RATE} Hz and "
                              f"{LATENT_HOP} (the released SA3 models).")
        info = next((m for m in self.models() if m.name == name), None) or _describe(name, model.cfg)
        self._loaded[name] = _Loaded(info, self._fast(model))
        log.info("loaded model %s in %.1f s", name, time.perf_counter() - t0)
        report(progress, "load", 1, 1)
        return self._loaded[name]

    def _fast(self, model: StableAudio3) -> StableAudio3:
        """``model`` with its sampler steps replayed as CUDA graphs when ``self.graphs`` says so."""
        if self.graphs and model.graphs is None:
            model.use_graphs()
        return model

    def _unload(self) -> None:
        self._loaded.clear()
        self._latents.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ----------------------------------------------------------------- text-to-audio, audio-to-audio

    def generate(self, req: GenerateRequest, progress: Optional[Progress] = None,
                 preview: Optional[PreviewSink] = None) -> Take:
        return self._job(self._generate, req, progress, preview)

    def _job(self, work, req, progress, preview) -> Take:
        """``work(model, info, req, progress, preview)`` in this request's turn, on the model it names."""
        with self._jobs.turn(progress):
            loaded = self._ensure(req.model, progress)
            return work(loaded.model, loaded.info, req, progress, preview)

    def _generate(self, model: StableAudio3, info: ModelInfo, req: GenerateRequest, progress, preview) -> Take:
        t0 = time.perf_counter()
        check_length(req.seconds, info)
        L = model.latent_length(req.seconds, HEADROOM_SECONDS)
        init = None
        if req.init_audio is not None and req.init_strength < 1.0:
            _check_audio(req.init_audio, "init_audio")
            report(progress, "encode", 0, 1)
            init = self._encode(edit.fit(req.init_audio, L * LATENT_HOP), model)[..., :L]
            report(progress, "encode", 1, 1)
        prompt = self._prompt(req.prompt, info)
        job = Generation((prompt,), (float(req.seconds),), L,
                         req.steps or info.default_steps, init=init,
                         init_noise_level=float(req.init_strength), headroom_seconds=HEADROOM_SECONDS,
                         monotonic_init=True, loras=self._lora_files.uses(req.loras), **_guidance(req.guidance, info, 1))
        n = edit.to_samples(req.seconds)
        spans = (Region(0.0, n / SAMPLE_RATE),)
        show = None if preview is None else (lambda x0, step: preview(edit.preview(
            self._preview_audio(model, x0[..., : -(-n // LATENT_HOP)])[0], spans, step, job.steps)))
        latents = self._sample(model, job, torch.Generator().manual_seed(int(req.seed)), progress, show)
        audio = self._decode(model, latents[..., : -(-n // LATENT_HOP)], progress)[0, :, :n]
        if preview is not None:
            preview(edit.preview(audio, spans, job.steps, job.steps))
        return Take(audio, req, req.seed, info.name, spans, time.perf_counter() - t0,
                    _prompt_notes(model, (prompt,)))

    # ----------------------------------------------------------------- inpainting, continuation

    def edit(self, req: EditRequest, progress: Optional[Progress] = None,
             preview: Optional[PreviewSink] = None) -> Take:
        _check_audio(req.source, "source")
        return self._job(self._edit, req, progress, preview)

    def _edit(self, model: StableAudio3, info: ModelInfo, req: EditRequest, progress, preview) -> Take:
        t0 = time.perf_counter()
        plan = edit.layout(req.source, req.regions, req.continue_seconds, req.extend_start_seconds)
        window = edit.window(plan.spans, plan.total, info.max_seconds - HEADROOM_SECONDS, req.context_seconds)
        frames = (window[0] // LATENT_HOP, -(-window[1] // LATENT_HOP))
        source_latents = self._track_latents(plan.source, model, info.name, frames, progress)
        init_latents = source_latents
        if req.guide is not None:
            _check_audio(req.guide, "guide")
            init_latents = self._track_latents(edit.place_guide(plan, req.guide), model, info.name, frames, progress)
        groups = edit.prompt_groups(plan.spans, req.prompt)
        prompts = tuple(self._prompt(prompt, info) for prompt, _ in groups)
        generator = torch.Generator().manual_seed(int(req.seed))
        generated = np.zeros((2, plan.total), dtype=np.float32)
        firsts = range(0, len(groups), MAX_BATCH)  # bounded batches, one generator for all
        steps = req.steps or info.default_steps
        total = len(firsts) * steps  # a preview's steps count every batch's

        def take_now(batch, made):  # the take if this batch's items stopped at ``made``
            return edit.assemble(plan, _place(generated.copy(), batch, made, window[0]), req.crossfade_ms,
                                 req.match_loudness)
        for k, first in enumerate(firsts):
            batch = groups[first:first + MAX_BATCH]
            show = None if preview is None else (lambda made, step, batch=batch, done=k * steps: preview(
                edit.preview(take_now(batch, made), plan.spans, done + step, total)))
            made = self._edit_window(model, info, req, batch, prompts[first:first + MAX_BATCH], window,
                                     (source_latents, init_latents), generator, progress, show)
            if preview is not None:  # the batch's last step, decoded already: the take so far
                preview(edit.preview(take_now(batch, made), plan.spans, (k + 1) * steps, total))
            _place(generated, batch, made, window[0])
        audio = edit.assemble(plan, generated, req.crossfade_ms, req.match_loudness)
        return Take(audio, req, req.seed, info.name, plan.spans, time.perf_counter() - t0,
                    _prompt_notes(model, prompts))

    def _edit_window(self, model: StableAudio3, info: ModelInfo, req: EditRequest, groups, prompts, window,
                     latents: tuple["TrackLatents", "TrackLatents"], generator: torch.Generator, progress,
                     show=None) -> np.ndarray:
        """Regenerate each group's regions inside ``window`` (samples, latent-aligned), one batch
        item per group (its prompt; the other groups' audio kept). ``latents``: the whole track's
        (kept outside the regions) and what strength < 1 starts from (the track or a guide).
        Returns (G, 2, window) audio, decoded only around the regions (zeros elsewhere).
        ``show(audio, step)``: hears the same for the denoised estimate at each previewed step
        but the last (decoded the same way, at the cost of one more decode of the span each)."""
        w0, w1 = window
        f0, f1 = w0 // LATENT_HOP, -(-w1 // LATENT_HOP)
        seconds = (w1 - w0) / SAMPLE_RATE
        L = model.latent_length(seconds, HEADROOM_SECONDS)
        reference, start = (track.window(f0, f1, L) for track in latents)
        keep = torch.cat([self._keep(group, w0, L, seconds) for _, group in groups])  # (G, L)
        strength = float(req.strength)
        job = Generation(prompts, (seconds,) * len(groups), L, req.steps or info.default_steps,
                         reference=reference, keep=keep, init=start if strength < 1 else None,
                         init_noise_level=strength, headroom_seconds=HEADROOM_SECONDS, monotonic_init=True,
                         loras=self._lora_files.uses(req.loras), **_guidance(req.guidance, info, len(groups)))
        # Decode only the edited span (plus margin): the rest of the window is the source anyway.
        regions = [r for _, group in groups for r in group]
        first = max(0, edit.to_samples(min(r.start for r in regions)) // LATENT_HOP - f0 - DECODE_MARGIN)
        last = min(f1 - f0, -(-edit.to_samples(max(r.end for r in regions)) // LATENT_HOP) - f0 + DECODE_MARGIN)

        def placed(audio: np.ndarray) -> np.ndarray:  # (G, 2, span) -> (G, 2, window)
            out = np.zeros((len(groups), 2, w1 - w0), dtype=np.float32)
            span = out[..., first * LATENT_HOP: last * LATENT_HOP]
            span[:] = audio[..., : span.shape[-1]]
            return out
        estimate = None if show is None else (
            lambda x0, step: show(placed(self._preview_audio(model, x0[..., first:last])), step))
        latents = self._sample(model, job, generator, progress, estimate)
        return placed(self._decode(model, latents[..., first:last], progress))

    @staticmethod
    def _keep(regions, w0: int, L: int, seconds: float) -> torch.Tensor:
        """(1, L) latent keep mask of a window starting at sample ``w0``."""
        local = [(r.start - w0 / SAMPLE_RATE, r.end - w0 / SAMPLE_RATE) for r in regions]
        return plan.to_latent_mask(plan.keep_mask(local, L * LATENT_HOP, seconds, SAMPLE_RATE), L)

    # ----------------------------------------------------------------- steps

    def _prompt(self, prompt: str, info: ModelInfo) -> str:
        return prompt_for_model(prompt, info)

    def _sample(self, model: StableAudio3, job: Generation, generator: torch.Generator, progress,
                show=None) -> torch.Tensor:
        """The job's latents; ``show(x0, step)`` hears the denoised estimate (B, C, L) after each of
        ``preview_steps`` but the last (the take itself shows that one); its time is not a step's."""
        report(progress, "steps", 0, job.steps)
        previewed = set(preview_steps(job.steps)[:-1]) if show is not None else set()
        spent = []

        def step(s) -> None:
            report(progress, "steps", s.i + 1, s.steps)
            if s.i + 1 in previewed:
                t0 = time.perf_counter()
                show(s.denoised, s.i + 1)
                spent.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        latents = model.sample(job, generator_noise(generator), callback=step)
        self._costs.add("step", time.perf_counter() - t0 - sum(spent), job.batch_size * job.latent_length * job.steps)
        return latents

    def _decode(self, model: StableAudio3, latents: torch.Tensor, progress) -> np.ndarray:
        report(progress, "decode", 0, 1)
        audio = self._decoded(model, latents)
        check_finite(audio)
        report(progress, "decode", 1, 1)
        return np.clip(audio, -1, 1)

    def _preview_audio(self, model: StableAudio3, x0: torch.Tensor) -> np.ndarray:
        """(B, 2, L * hop) audio of a denoised estimate (B, C, L), decoded as the take will be; an
        early estimate may be far from audio, so it is made finite and clipped, never refused."""
        return np.clip(np.nan_to_num(self._decoded(model, x0)), -1, 1)

    def _decoded(self, model: StableAudio3, latents: torch.Tensor) -> np.ndarray:
        chunked = latents.shape[-1] > CODEC_WINDOW
        with self._costs.timing("decode", latents.shape[0] * latents.shape[-1]):
            audio = model.decode(latents, chunked, window=CODEC_WINDOW)[..., : latents.shape[-1] * LATENT_HOP]
        return audio.float().cpu().numpy()

    def _encode(self, audio: np.ndarray, model: StableAudio3) -> torch.Tensor:
        """(1, C, ceil(N / hop)) latents of (2, N) audio: the whole-track encoding, computed in
        bounded windows (``Same.encode_span``)."""
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        frames = -(-x.shape[-1] // LATENT_HOP)
        return model.same.encode_span(x, 0, frames, window=CODEC_WINDOW).float().cpu()

    def _track_latents(self, audio: np.ndarray, model: StableAudio3, name: str, frames: tuple[int, int],
                       progress, yield_to_waiting: bool = False) -> "TrackLatents":
        """The latents of ``audio`` (a whole track) with at least ``frames`` [f0, f1) encoded, kept
        per model and track (its samples' hash): each frame is encoded once, from only the audio it
        depends on (``Same.encode_span``: equal to encoding the whole track). ``yield_to_waiting``:
        stop between pieces when another job is waiting (encode-ahead gives way to a Generate)."""
        key = (name, hashlib.sha1(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest(), audio.shape)
        track = self._latents.get(key)
        if track is None:
            track = self._latents[key] = TrackLatents(-(-audio.shape[1] // LATENT_HOP))
            if len(self._latents) > ENCODE_CACHE:
                self._latents.popitem(last=False)
        self._latents.move_to_end(key)
        missing = track.missing(*frames)
        todo = sum(b - a for a, b in missing)
        if not todo:
            report(progress, "encode", 1, 1)
            return track
        done, x = 0, torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        report(progress, "encode", 0, todo)
        for a, b in missing:
            for start in range(a, b, ENCODE_PIECE):
                if yield_to_waiting and self._jobs.waiting():
                    return track
                end = min(start + ENCODE_PIECE, b)
                with self._costs.timing("encode", end - start):
                    track.put(start, model.same.encode_span(x, start, end).float().cpu()[0])
                done += end - start
                report(progress, "encode", done, todo)
        return track

    def encode_ahead(self, model: str, audio: np.ndarray, progress: Optional[Progress] = None) -> bool:
        """Encode a whole track now (e.g. while the musician paints), so later edits of it skip the
        encode. Gives way to any request that arrives (what it encoded so far is kept); True when the
        whole track is encoded."""
        _check_audio(audio, "audio")
        with self._jobs.turn(progress):
            loaded = self._ensure(model, progress)
            frames = (0, -(-audio.shape[1] // LATENT_HOP))
            track = self._track_latents(audio, loaded.model, loaded.info.name, frames, progress, yield_to_waiting=True)
            return not track.missing(*frames)


class TrackLatents:
    """A track's latents (C, F) fp32 as far as they are encoded, and which frames are."""

    def __init__(self, frames: int):
        self.frames = frames
        self.latents: Optional[torch.Tensor] = None
        self.known = torch.zeros(frames, dtype=torch.bool)

    def missing(self, f0: int, f1: int) -> list[tuple[int, int]]:
        """Runs [a, b) of frames in [f0, f1) (clipped to the track) not encoded yet."""
        f0, f1 = max(0, f0), min(f1, self.frames)
        runs, start = [], None
        for f in range(f0, f1):
            if not self.known[f] and start is None:
                start = f
            elif self.known[f] and start is not None:
                runs.append((start, f))
                start = None
        return runs + ([(start, f1)] if start is not None else [])

    def put(self, f0: int, latents: torch.Tensor) -> None:
        if self.latents is None:
            self.latents = torch.zeros(latents.shape[0], self.frames)
        self.latents[:, f0:f0 + latents.shape[-1]] = latents
        self.known[f0:f0 + latents.shape[-1]] = True

    def window(self, f0: int, f1: int, L: int) -> torch.Tensor:
        """(1, C, L): frames [f0, f1) (encoded ones; zero past the track's end)."""
        out = torch.zeros(1, self.latents.shape[0], L)
        have = self.latents[:, f0:min(f1, self.frames)]
        out[0, :, : have.shape[-1]] = have
        return out


class LoraFiles:
    """LoRA files read once each (keyed by path, size and modification time, so an edited file is
    read again): changing a strength, interval or filter never re-reads a file."""

    def __init__(self, token: Optional[str] = None, keep: int = 8):
        self._files: OrderedDict[tuple, LoraFile] = OrderedDict()
        self._token, self._keep = token, keep

    def uses(self, specs) -> tuple[LoraUse, ...]:
        return tuple(LoraUse(self._read(spec.path), float(spec.strength), tuple(spec.interval), spec.layer_filter)
                     for spec in specs)

    def _read(self, name: str) -> LoraFile:
        try:
            path = resolve_file(name, token=self._token)
        except CheckpointError as e:
            raise ValueError(f"LoRA: {e}") from e
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._files:
            self._files[key] = read_lora(path)
            if len(self._files) > self._keep:
                self._files.popitem(last=False)
        self._files.move_to_end(key)
        return self._files[key]


class Costs:
    """Seconds per unit of work (a latent frame through one sampler step; a decoded frame) on
    this machine, learnt from the runs so far (the latest run weighs half)."""

    def __init__(self):
        self._per_unit: dict[str, float] = {}

    @contextmanager
    def timing(self, kind: str, units: int):
        t0 = time.perf_counter()
        yield
        self.add(kind, time.perf_counter() - t0, units)

    def add(self, kind: str, seconds: float, units: int) -> None:
        """Learn from ``units`` of ``kind`` that took ``seconds``."""
        if units > 0:
            rate = seconds / units
            old = self._per_unit.get(kind)
            self._per_unit[kind] = rate if old is None else 0.5 * (old + rate)

    def seconds(self, work: dict[str, int]) -> Optional[float]:
        if not all(kind in self._per_unit for kind in work):
            return None
        return sum(self._per_unit[kind] * units for kind, units in work.items())


def _place(generated: np.ndarray, groups, made: np.ndarray, w0: int) -> np.ndarray:
    """``generated`` (2, total) with each group's regions taken from the batch item that made
    them (``made``: (G, 2, window) starting at sample ``w0``); returns ``generated``."""
    for (_, group), new in zip(groups, made):
        for r in group:
            a, b = edit.to_samples(r.start), min(edit.to_samples(r.end), generated.shape[1])
            generated[:, a:b] = new[:, a - w0:b - w0]
    return generated


def _guidance(guidance, info: ModelInfo, batch: int) -> dict:
    """Generation's guidance fields for a request: none for post-trained models, else the
    request's (or the model's default) CFG, APG and negative prompt for each of ``batch`` items."""
    if not info.guided:
        return {}
    negative = (guidance.negative_prompt,) * batch if guidance.negative_prompt.strip() else None
    cfg = info.default_cfg if guidance.cfg_scale is None else guidance.cfg_scale
    return dict(cfg_scale=float(cfg), apg_scale=float(guidance.apg_scale), negative_prompts=negative)


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
    base = cfg.is_base if cfg is not None else name.lower().endswith("-base")
    steps, guidance = (BASE_STEPS, BASE_CFG) if base else (8, 1.0)
    return ModelInfo(name, path.name if path.is_dir() else name, where, max_seconds, SFX if sfx else MUSIC,
                     steps, guidance)


def _prompt_notes(model: StableAudio3, prompts) -> tuple[str, ...]:
    """A sentence for each prompt longer than the text encoder reads, saying where it was cut."""
    encoder = model.conditioner.prompt.encoder
    if encoder is None:
        return ()
    notes = []
    for prompt in dict.fromkeys(prompts):
        ids = encoder.token_ids(prompt, truncate=False)
        if len(ids) > encoder.max_length:
            heard = encoder.tokenizer.decode(ids[: encoder.max_length], skip_special_tokens=True).split()
            notes.append(f"The prompt is {len(ids)} tokens long and the model reads only the first "
                         f"{encoder.max_length}: it stops after “…{' '.join(heard[-4:])}”. Shorten it to "
                         "be heard whole.")
    return tuple(notes)


def _check_audio(audio: np.ndarray, what: str) -> None:
    if not isinstance(audio, np.ndarray) or audio.ndim != 2 or audio.shape[0] != 2:
        raise ValueError(f"{what} must be stereo audio shaped (2, N), got {getattr(audio, 'shape', type(audio))}")
    if audio.shape[1] == 0:
        raise ValueError(f"{what} is empty")
    if not np.isfinite(audio).all():
        raise ValueError(f"{what} holds NaN or infinite samples")
