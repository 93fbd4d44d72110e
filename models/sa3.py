"""A whole Stable Audio 3 model: DiT + SAME + conditioners, and its ``generate``.

``generate`` follows the official ``StableAudioModel.generate`` and ``sample_diffusion``
(``stable_audio_3/model.py``, ``inference/sampling.py`` @636f906) step for step, so that
with the same random draws it gives the same latents and audio. What the official code
does with a prompt string and a seed we take as explicit, typed inputs:

    Generation(prompts, seconds, latent_length, reference, keep, ...)   what to make
    Generation.loras (models.lora.LoraUse, in stacking order)            which LoRAs act
    NoiseSource                                                        every random draw
    callback(SamplerStep)                                               progress

The studio (studio/engine.py) turns a musician's request (regions in seconds, a track
longer than the model's window) into a ``Generation``; models.plan has the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from models import plan
from models.conditioners import Conditioner, Conditioning
from models.config import (HEADROOM_SECONDS, AutoencoderModelConfig, DiffusionModelConfig, ModelConfig,
                           load_model_config)
from models.dit import DiT
from models.guidance import guided, null_context, prepare_guided
from models.lora import LoraStack, LoraUse
from models.loading import (CONDITIONER_PREFIX, DIT_PREFIX, SAME_PREFIX, Checkpoint, load_weights,
                            read_tensors, tensor_names)
from models.same import Same
from models.graphs import StepGraphs, weights_key
from models.sampling import (Callback, Integrator, NoiseSource, build_schedule, effective_seq_len, integrate,
                             integrator_for, make_step, per_item_schedule, sampling_shift, schedule_from, step_draws)
from models.precision import Precision
from models.text import TextEncoder, default_dtype, load_text_encoder


# On CUDA the cross-attention keys are the collapsed context padded to a multiple of this many rows
# (masked): prompts of similar lengths share one captured step (``DiT.prepare``'s context_multiple).
CONTEXT_MULTIPLE = 32


def build_components(cfg: ModelConfig) -> dict[str, nn.Module]:
    """Our modules, keyed by their prefix in the released ``model.safetensors``."""
    if isinstance(cfg, AutoencoderModelConfig):
        return {"": Same(cfg.same)}
    return {DIT_PREFIX: DiT(cfg.diffusion.config), SAME_PREFIX: Same(cfg.same),
            CONDITIONER_PREFIX: Conditioner(cfg, encoder=None)}


def load_same(ckpt: Checkpoint, device="cpu", dtype=torch.float32) -> Same:
    """SAME from a standalone SAME repo (keys without prefix) or a full SA3 checkpoint."""
    cfg = load_model_config(ckpt.config_path)
    full = any(n.startswith(SAME_PREFIX) for n in tensor_names(ckpt.weights_path))
    with torch.device("meta"):
        same = Same(cfg.same)
    tensors = read_tensors(ckpt.weights_path, SAME_PREFIX if full else "", device, dtype)
    return load_weights(same, tensors, f"{ckpt.weights_path} (SAME)").eval()


@dataclass(frozen=True)
class Generation:
    """One batch to generate, in latent frames (official ``generate`` after its set-up).

    prompts, seconds: per item; ``seconds`` is the ``seconds_total`` conditioning.
    latent_length: frames to sample (``plan.audio_length`` / 4096).
    reference: (1 or B, C, L) encoded audio to keep, or None (text-to-audio).
    keep: (1 or B, L) float latent mask, 1 = keep the reference, 0 = generate.
    init: (1 or B, C, L) encoded init audio for audio-to-audio, with ``init_noise_level``.
    headroom_seconds: attended frames past each item's length (``duration_padding_sec``).
    loras: LoRAs in stacking order, each with its strength, interval and layer filter.
    """

    prompts: tuple[str, ...]
    seconds: tuple[float, ...]
    latent_length: int
    steps: int = 8
    reference: Optional[Tensor] = None
    keep: Optional[Tensor] = None
    init: Optional[Tensor] = None
    init_noise_level: float = 1.0
    negative_prompts: Optional[tuple[str, ...]] = None
    cfg_scale: float = 1.0
    apg_scale: float = 1.0
    headroom_seconds: float = HEADROOM_SECONDS
    monotonic_init: bool = False  # a2a: start the shifted schedule at init_noise_level (sampling.schedule_from)
    loras: tuple[LoraUse, ...] = ()

    @property
    def batch_size(self) -> int:
        return len(self.prompts)

    @property
    def sigma_max(self) -> float:
        """The noise level sampling starts from: ``init_noise_level`` with init audio, else 1."""
        return self.init_noise_level if self.init is not None else 1.0


class StableAudio3(nn.Module):
    """A released SA3 checkpoint: ``dit``, ``same``, ``conditioner`` and the text encoder."""

    def __init__(self, cfg: DiffusionModelConfig, text_encoder: Optional[TextEncoder]):
        super().__init__()
        self.cfg = cfg
        self.dit = DiT(cfg.diffusion.config)
        self.same = Same(cfg.same)
        self.conditioner = Conditioner(cfg, text_encoder)
        self._lora_stack: Optional[LoraStack] = None  # built on the first LoRA, after the weights load
        self.graphs: Optional[StepGraphs] = None  # sampler steps as replayed CUDA graphs (use_graphs)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, device="cpu", dtype: torch.dtype = torch.float32,
                        text_encoder_folder: Optional[Path] = None,
                        text_dtype: Optional[torch.dtype] = None,
                        config_path: Optional[Path] = None,
                        precision: Optional[Precision] = None) -> "StableAudio3":
        """Load a full checkpoint folder; every tensor goes straight to ``device`` and its dtype.

        ``dtype``: every part's; ``precision`` (models.precision.choose_precision) instead gives
        each part its own (the conditioner's small layers then stay fp32). ``text_dtype``
        defaults to what the device runs fast. ``text_encoder_folder`` overrides the checkpoint's
        ``t5gemma-b-b-ul2/`` (the tiny test models keep it beside the checkpoint).
        ``config_path`` overrides ``model_config.json`` (a -base variant: same weights).
        """
        cfg = load_model_config(config_path or ckpt.config_path)
        if not isinstance(cfg, DiffusionModelConfig):
            raise ValueError(f"{ckpt.folder} holds an autoencoder, not an SA3 diffusion model")
        if precision is None:
            precision = Precision(dtype, text_dtype or default_dtype(device), dtype, "dtype given")
            conditioner_dtype = dtype
        else:
            conditioner_dtype = torch.float32
        text = load_text_encoder(text_encoder_folder or ckpt.text_encoder_folder, device, precision.text,
                                 max_length=cfg.conditioning.by_id("prompt").config.max_length)
        with torch.device("meta"):
            model = cls(cfg, text)
        for prefix, module, part_dtype in ((DIT_PREFIX, model.dit, precision.dit),
                                           (SAME_PREFIX, model.same, precision.same),
                                           (CONDITIONER_PREFIX, model.conditioner, conditioner_dtype)):
            tensors = read_tensors(ckpt.weights_path, prefix, device, part_dtype)
            load_weights(module, tensors, f"{ckpt.weights_path} ({prefix}*)")
        return model.eval().requires_grad_(False)

    def set_precision(self, precision: Precision) -> "StableAudio3":
        """Cast a built model's parts to ``precision`` (benchmarks compare precisions on one
        set of weights); the conditioner's small layers stay fp32, cached prompts are dropped."""
        self.dit.to(precision.dit)
        self.same.to(precision.same)
        self.conditioner.to(torch.float32)
        if self.conditioner.prompt.encoder is not None:
            self.conditioner.prompt.encoder.to(precision.text)
        return self

    @property
    def _context_multiple(self) -> int:
        """``DiT.prepare``'s context_multiple: on CUDA the collapsed context is padded (masked) to
        ``CONTEXT_MULTIPLE`` rows with or without graphs, so a take is the same bit for bit either
        way and prompts of similar lengths share a graph; on a CPU it is not padded (unchanged)."""
        return CONTEXT_MULTIPLE if self.device.type == "cuda" else 1

    def use_graphs(self, on: bool = True, **limits) -> "StableAudio3":
        """Replay each sampler step as a CUDA graph (models/graphs.py; ``limits``: ``StepGraphs``'s
        max_graphs, max_bytes), or stop (``on=False`` drops the graphs). Needs the model on a CUDA
        device; the takes are the eager path's (the same kernels on the same inputs)."""
        if on and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need the model on a CUDA device, not {self.device}")
        self.graphs = StepGraphs(**limits) if on else None
        return self

    @property
    def device(self) -> torch.device:
        return self.dit.transformer.memory_tokens.device

    @property
    def loras(self) -> tuple[LoraUse, ...]:
        """The LoRAs in place, in stacking order."""
        return self._lora_stack.uses if self._lora_stack is not None else ()

    @property
    def lora_stack(self) -> Optional[LoraStack]:
        """What applies the LoRAs (None before the first one): which modules each adapts, what
        its layer filter switches off."""
        return self._lora_stack

    def set_loras(self, uses: Sequence[LoraUse] = ()) -> None:
        """Put ``uses`` in place (``W_eff = p1(p0(W0))``), replacing the previous stack; ``()``
        restores the base weights exactly. Cheap for files already in place (a new strength,
        interval or filter recomputes effective weights, it reads nothing). ``sample`` calls this
        with ``Generation.loras``; a LoRA that does not fit the model raises ``LoraError`` and
        leaves the model as it was."""
        if self._lora_stack is None:
            if not uses:
                return
            self._lora_stack = LoraStack(self.dit, self.conditioner)
        self._lora_stack.set(uses)

    def select_loras(self, t: Tensor) -> tuple[int, ...]:
        """Put in place the DiT weights for noise level ``t[0]`` (each LoRA acts inside its
        interval): the indices of the LoRAs acting, a key for anything computed from the DiT's
        weights. Conditioner LoRAs always act."""
        return self._lora_stack.select(t) if self._lora_stack is not None else ()

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def downsampling_ratio(self) -> int:
        return self.cfg.same.downsampling_ratio

    def latent_length(self, seconds_total: float, headroom_seconds: float) -> int:
        """Frames the official ``generate`` samples for a clip (its ``_adapt_sample_size``)."""
        n = plan.audio_length(self.cfg.same, self.cfg.sample_size, seconds_total, headroom_seconds,
                              self.sample_rate)
        return n // self.downsampling_ratio

    @torch.no_grad()
    def encode(self, audio: Tensor, chunked: bool = False, window: int = 128) -> Tensor:
        """(B, 2, N) audio at 44.1 kHz -> (B, C, ceil(N / 4096)) latents; ``chunked``: in windows
        of ``window`` latents overlapping by 32 (official default window: 128), bounding memory."""
        audio = audio.to(self.device)
        return self.same.encode_chunked(audio, chunk_size=window) if chunked else self.same.encode(audio)

    @torch.no_grad()
    def decode(self, latents: Tensor, chunked: bool = False, noise: Optional[NoiseSource] = None,
               window: int = 128) -> Tensor:
        """Latents -> audio; ``chunked`` as ``encode``; ``noise`` replays the official decoder's
        inference noise (parity)."""
        if chunked:
            return self.same.decode_chunked(latents, chunk_size=window, noise=noise)
        return self.same.decode(latents, noise=noise, trim=False)

    def padding_mask(self, job: Generation) -> Tensor:
        """(B, L) bool on the model's device, True = attended: each item's length plus its headroom."""
        return plan.padding_mask(job.seconds, job.headroom_seconds, self.sample_rate, self.downsampling_ratio,
                                 job.latent_length).to(self.device)

    def schedule(self, job: Generation) -> Tensor:
        """(B, steps + 1) float32 timesteps from ``job.sigma_max`` down to 0, shifted at each item's
        effective length (official ``sample_diffusion``'s ``build_schedule``); with
        ``monotonic_init`` an audio-to-audio schedule that only goes down (``schedule_from``)."""
        lengths = effective_seq_len(job.seconds, self.sample_rate, self.downsampling_ratio)
        shift = sampling_shift(self.cfg.diffusion)
        if job.init is not None and job.monotonic_init:
            return schedule_from(job.steps, job.sigma_max, shift, lengths)
        return build_schedule(job.steps, job.sigma_max, shift, lengths)

    @torch.no_grad()
    def sample(self, job: Generation, noise: NoiseSource, callback: Optional[Callback] = None,
               plain: bool = False) -> Tensor:
        """Latents (B, C, L) for ``job`` (official ``generate`` up to ``sample_diffusion``'s decode),
        with the sampler of the checkpoint's diffusion objective (``sampling.SAMPLERS``); each step
        a replayed CUDA graph when ``use_graphs`` is on and the job allows (no LoRAs).

        ``plain`` turns off the exact-math savings (benchmarks and equivalence tests)."""
        return self._sample(job, noise, self.padding_mask(job), callback, plain)

    def _sample(self, job: Generation, noise: NoiseSource, pad: Tensor, callback: Optional[Callback],
                plain: bool) -> Tensor:
        """``sample`` with the padding mask ``pad`` (B, L) already built."""
        B, L, C = job.batch_size, job.latent_length, self.cfg.io_channels
        self.set_loras(job.loras)
        # The first draw, as official; the sampler's state (x, sigmas, the update) stays fp32
        # whatever the DiT's dtype: the official code casts it to the model's dtype, which in
        # bf16 rounds the timestep before its Fourier features and accumulates the update in bf16.
        x = noise((B, C, L)).to(self.device, torch.float32)
        integrator = integrator_for(self.cfg.diffusion)
        draws = step_draws(integrator, noise, job.steps, x)  # the official order: the first draw, then each step's
        cond = self.conditioner(job.prompts, job.seconds)
        local = self._local_add_cond(job, B, C, L)
        if job.init is not None:
            x = job.init.to(x).expand(B, -1, -1) * (1 - job.sigma_max) + x * job.sigma_max
        t = per_item_schedule(self.schedule(job), x)
        step = None
        if self.graphs is not None and not plain and not job.loras:
            step = self._graph_step(job, cond, local, pad, integrator, x, draws)
        if step is None:
            step = make_step(self._model_fn(job, cond, local, pad, plain), integrator.update)
        return integrate(step, x, t, draws, callback)

    def _graph_step(self, job: Generation, cond: Conditioning, local: Tensor, pad: Tensor,
                    integrator: Integrator, x: Tensor, draws: Optional[Tensor]):
        """The step as a replayed CUDA graph (``self.graphs``), or None where it cannot be one."""
        prepare, velocity = self._velocity(job, cond, local, pad, plain=False, context_multiple=self._context_multiple)
        key = (integrator, job.cfg_scale, job.apg_scale, weights_key(self.dit))
        return self.graphs.step(key, velocity, integrator.update, (prepare(), pad), x, draws)

    def _local_add_cond(self, job: Generation, B: int, C: int, L: int) -> Tensor:
        """(B, 1 + C, L): the keep mask, then the reference latents multiplied by it."""
        if job.keep is None:
            mask = torch.zeros(B, 1, L, device=self.device)
        else:
            mask = job.keep.to(self.device, torch.float32).unsqueeze(1).expand(B, -1, -1)
        if job.reference is None:
            masked = torch.zeros(B, C, L, device=self.device)
        else:
            masked = job.reference.to(self.device, torch.float32).expand(B, -1, -1) * mask
        return torch.cat([mask, masked], dim=1)

    def _velocity(self, job: Generation, cond: Conditioning, local: Tensor, pad: Tensor, plain: bool,
                  context_multiple: int = 1):
        """(prepare, velocity): ``prepare()`` computes the conditioning a step reads (through the
        DiT's weights: once per generation and set of LoRAs acting), ``velocity(x, t, ctx, pad)``
        runs one step on it, CFG/APG included, in fp32. ``plain``: every context row its own key."""
        collapse = dict(collapse_context=not plain, context_multiple=context_multiple)
        if job.cfg_scale == 1.0:
            prepare = lambda: self.dit.prepare(cond.cross_attn_cond, cond.global_cond, local, pad, **collapse)
            velocity = lambda x, t, ctx, pad: self.dit(x, t, ctx).float()  # back to the state's fp32
        else:
            uncond = null_context(cond.cross_attn_cond)
            if job.negative_prompts is not None:
                neg = self.conditioner(job.negative_prompts, job.seconds)
                uncond = null_context(cond.cross_attn_cond, neg.cross_attn_cond, neg.cross_attn_mask)
            prepare = lambda: prepare_guided(self.dit, cond.cross_attn_cond, uncond, cond.global_cond, local, pad,
                                             **collapse)
            velocity = lambda x, t, ctx, pad: guided(self.dit, x, t, ctx, job.cfg_scale, job.apg_scale, pad)
        return prepare, velocity

    def _model_fn(self, job: Generation, cond: Conditioning, local: Tensor, pad: Tensor, plain: bool = False):
        """(x, t) -> velocity. The conditioning is prepared once per generation (context keys and
        values, inpainting embeddings, collapsed padding rows), and once more per set of LoRAs
        acting (it goes through DiT weights); ``plain`` recomputes all of it at every step with
        every context row its own key, as the official code does."""
        prepare, velocity = self._velocity(job, cond, local, pad, plain, 1 if plain else self._context_multiple)
        contexts = {}  # LoRAs acting -> prepared conditioning
        if not plain and not job.loras:  # nothing changes between steps: prepare before the first,
            contexts[()] = prepare()     # so the steps themselves never wait for the device

        def model(x: Tensor, t: Tensor) -> Tensor:
            acting = self.select_loras(t)
            if plain or acting not in contexts:
                contexts[acting] = prepare()
            return velocity(x, t, contexts[acting], pad)

        return model

    @torch.no_grad()
    def generate(self, job: Generation, noise: NoiseSource, *, decode: bool = True, chunked_decode: bool = False,
                 decoder_noise: bool = False, callback: Optional[Callback] = None) -> Tensor:
        """Latents, or audio (B, 2, L * 4096) clamped to [-1, 1] and silent past each item's
        attended frames, as the official ``generate`` returns before truncation.

        ``decoder_noise``: let the decoder draw its inference-time noise from ``noise`` too
        (the official behaviour; off by default, the decoder is then deterministic).
        """
        pad = self.padding_mask(job)
        latents = self._sample(job, noise, pad, callback, plain=False)
        if not decode:
            return latents
        audio = self.decode(latents, chunked=chunked_decode, noise=noise if decoder_noise else None)
        audible = pad.repeat_interleave(self.downsampling_ratio, dim=-1)[:, None, :]
        n = audio.shape[-1]
        audible = torch.nn.functional.pad(audible[..., :n], (0, max(0, n - audible.shape[-1])), value=False)
        return (audio.float() * audible).clamp(-1, 1)
