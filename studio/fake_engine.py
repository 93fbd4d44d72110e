"""A stand-in engine with the real one's contract: deterministic per model and seed, instant, no weights.

It fills regions with band-passed noise and a chord whose pitch depends on the model and the seed,
reports progress per step, honours Cancelled, runs one job at a time like the real engine, and uses
the same validation and splice. Failures are simulated by tags in the prompt, so tests can reach
every error path through the UI:
  [fail:missing-weights] [fail:no-network] [fail:gated]  -> EngineError with the real messages
  [fail:nan]                                             -> the "model" outputs NaN (refused)
  [slow]                                                 -> 0.15 s per step (to test cancel)
Previews (``preview=``) show the take converging: at step k of n, the final audio mixed with
seeded noise as k/n : 1 - k/n, placed as the take is; the last preview is the take.
"""
from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np

from models.config import HEADROOM_SECONDS
from studio import edit
from studio.api import (SAMPLE_RATE, EditRequest, EngineError, GenerateRequest, ModelInfo,
                        Estimate, Progress, PreviewSink, Region, Take, check_finite,
                        check_length, preview_steps, report)
from studio.catalog import CATALOG
from studio.jobs import JobQueue

FAILURES = {
    "missing-weights": "The weights of this model are not on this machine; run with network access "
                       "once so they can be downloaded, or put them in the models folder.",
    "no-network": "The model could not be downloaded because there is no network connection; "
                  "connect to the internet and try again.",
    "gated": "This model is gated on Hugging Face: accept its licence on the model page and set "
             "HF_TOKEN to a token of your account.",
}


class FakeEngine:
    def __init__(self, step_delay: float = 0.0):
        self.step_delay = step_delay
        self._jobs = JobQueue()
        self._loaded: str | None = None
        self._last_seconds: float | None = None  # wall time of the last take, the estimate of the next

    def models(self) -> list[ModelInfo]:
        return list(CATALOG)

    def loaded(self) -> list[str]:
        return [self._loaded] if self._loaded else []

    def made_on(self, model: str) -> dict:
        return {"engine": "fake"}  # numpy test tones: the same on every machine

    def prepare(self, name: str, progress: Progress | None = None) -> ModelInfo:
        with self._jobs.turn(progress):
            return self._ensure(name, progress)

    def _ensure(self, name: str, progress: Progress | None) -> ModelInfo:
        info = self._info(name)
        if self._loaded != name:
            report(progress, "load", 1, 1)
            self._loaded = name
        return info

    def generate(self, req: GenerateRequest, progress: Progress | None = None,
                 preview: PreviewSink | None = None) -> Take:
        return self._job(self._generate, req, progress, preview)

    def edit(self, req: EditRequest, progress: Progress | None = None,
             preview: PreviewSink | None = None) -> Take:
        return self._job(self._edit, req, progress, preview)

    def _job(self, work, req, progress: Progress | None, preview: PreviewSink | None) -> Take:
        """``work(info, req, progress) -> (finish, n, regions)`` in this request's turn, as a Take:
        ``finish`` makes the take from n samples of new audio (see ``_run``)."""
        with self._jobs.turn(progress):
            info = self._ready(req.model, req.prompt, progress)
            t0 = time.perf_counter()
            finish, n, regions = work(info, req, progress)
            audio = self._run(req, n, progress, finish, regions, preview).astype(np.float32)
            self._last_seconds = time.perf_counter() - t0
            return Take(audio, req, req.seed, info.name, regions, self._last_seconds)

    def _generate(self, info: ModelInfo, req: GenerateRequest, progress: Progress | None):
        check_length(req.seconds, info)
        n = edit.to_samples(req.seconds)

        def finish(audio):
            if req.init_audio is not None and req.init_strength < 1.0:
                return req.init_strength * audio + (1 - req.init_strength) * edit.fit(req.init_audio, n)
            return audio
        return finish, n, (Region(0.0, n / SAMPLE_RATE),)

    def _edit(self, info: ModelInfo, req: EditRequest, progress: Progress | None):
        plan = edit.layout(req.source, req.regions, req.continue_seconds, req.extend_start_seconds)
        report(progress, "encode", 1, 1)

        def finish(new):
            if req.strength < 1.0:
                start = edit.fit(plan.source, plan.total) if req.guide is None else edit.place_guide(plan, req.guide)
                new = req.strength * new + (1 - req.strength) * start
            return edit.assemble(plan, new, req.crossfade_ms, req.match_loudness)
        return finish, plan.total, plan.spans

    def encode_ahead(self, model: str, audio: np.ndarray, progress: Progress | None = None) -> bool:
        """The contract's encode-ahead: nothing to encode here, so it is ready at once."""
        with self._jobs.turn(progress):
            self._ready(model, "", progress)
            report(progress, "encode", 1, 1)
            return True

    def _info(self, name: str) -> ModelInfo:
        info = next((m for m in CATALOG if m.name == name), None)
        if info is None:
            raise EngineError(f"There is no model called “{name}”; pick one of "
                              f"{', '.join(m.name for m in CATALOG)}.")
        return info

    def estimate(self, model: str, track_seconds: float, spans, steps: int | None = None,
                 context_seconds: float | None = None) -> Estimate:
        info = self._info(model)
        w0, w1 = edit.window(spans, edit.to_samples(track_seconds), info.max_seconds - HEADROOM_SECONDS, context_seconds)
        return Estimate(heard_seconds=(w1 - w0) / SAMPLE_RATE, seconds=self._last_seconds)

    def _ready(self, model: str, prompt: str, progress: Progress | None) -> ModelInfo:
        for tag, message in FAILURES.items():
            if f"[fail:{tag}]" in prompt:
                raise EngineError(message)
        return self._ensure(model, progress)

    def _run(self, req, n: int, progress: Progress | None, finish, spans, preview: PreviewSink | None) -> np.ndarray:
        """The take: ``finish`` of n samples of new audio, after the steps (previewed when asked)."""
        steps = req.steps or 8
        delay = 0.15 if "[slow]" in req.prompt else self.step_delay
        seed = zlib.crc32(_recipe(req).encode()) ^ req.seed
        new = _texture(seed, n)
        if "[fail:nan]" in req.prompt:
            new[:, n // 2:] = np.nan
        previewed = preview_steps(steps)[:-1] if preview is not None else ()
        for i in range(steps):
            report(progress, "steps", i, steps)
            if delay:
                time.sleep(delay)
            if i + 1 in previewed:
                preview(edit.preview(finish(_converging(new, seed, (i + 1) / steps)), spans, i + 1, steps))
        report(progress, "steps", steps, steps)
        check_finite(new)
        report(progress, "decode", 1, 1)
        take = finish(new)
        if preview is not None:
            preview(edit.preview(take, spans, steps, steps))
        return take


def _recipe(req) -> str:
    """What, besides the seed, shapes the fake output: the model, guidance on -base models, LoRAs."""
    info = next(m for m in CATALOG if m.name == req.model)
    g = req.guidance
    recipe = f"{req.model}|{g.cfg_scale}|{g.apg_scale}|{g.negative_prompt}" if info.guided else req.model
    for spec in req.loras:
        path = Path(spec.path)
        if path.suffix != ".safetensors" or not path.is_file():  # as the real engine: never a pickle
            raise ValueError(f"The LoRA file {path.name} is not a .safetensors file here: give the adapter "
                             "as safetensors (pickled .ckpt/.pt files are never loaded).")
        recipe += f"|{path.name}*{spec.strength}"
    return recipe


def _converging(audio: np.ndarray, seed: int, done: float) -> np.ndarray:
    """``audio`` as the fake's estimate after ``done`` (0..1) of the steps: mixed with noise as
    done : 1 - done (deterministic per seed)."""
    noise = 0.25 * np.random.default_rng(seed + 1).standard_normal(audio.shape).astype(np.float32)
    return np.nan_to_num(done * audio + (1 - done) * noise)


def _texture(seed: int, n: int) -> np.ndarray:
    """(2, n) float32: a seed-dependent chord over soft band-passed noise, about -12 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    chord = sum(np.sin(2 * np.pi * root * r * t + rng.uniform(0, 2 * np.pi)) for r in (1, 1.25, 1.5, 2))
    pulse = 0.5 + 0.5 * np.cos(2 * np.pi * t * rng.choice([1.0, 2.0, 4.0]))
    noise = rng.standard_normal((2, n))
    kernel = np.hanning(32) / np.hanning(32).sum()
    noise = np.stack([np.convolve(ch, kernel, mode="same") for ch in noise])
    out = 0.06 * chord * pulse + 0.5 * noise
    return (0.25 * out / max(1e-9, np.abs(out).max())).astype(np.float32)
