"""Timestep schedules and samplers for rectified-flow SA3 checkpoints.

Convention (official ``inference/sampling.py``): ``t = 0`` is data, ``t = 1`` is noise,
``x_t = (1 - t) * x_0 + t * noise``, and the network predicts the velocity
``v = noise - x_0``, so ``denoised = x_t - t * v``.

The pieces compose independently, k-diffusion style:

- a *shift* warps a uniform grid of timesteps, depending on the sequence length
  (``LogSNRShift``, ``FullShift``, ``FluxShift``; official ``distribution_shift.py``);
- ``build_schedule`` turns (steps, sigma_max, shift, length) into the timesteps;
- a *sampler* integrates a model function over a schedule; all share one signature
  ``(model, x, sigmas, noise, callback) -> x`` (``Sampler``), and ``SAMPLERS`` keys them by the
  config's diffusion objective: ``sample_pingpong`` for ``rf_denoiser`` checkpoints,
  ``sample_euler`` for the ``rectified_flow`` -base ones (guidance lives in the model function);
- randomness comes from a *noise source*: a callable ``shape -> standard normal tensor``.
  ``generator_noise`` draws from one seeded ``torch.Generator``; ``recorded_noise`` replays
  draws recorded from the official code, in order.

The official code draws ``torch.randn`` for the initial noise and then one
``torch.randn_like(x)`` per ping-pong step, the last one included (it is multiplied by
``t = 0``). We make the same draws in the same order, so a CPU generator seeded like
``torch.manual_seed(seed)`` reproduces an official take draw for draw. A sampler draws all of
its steps' noise before the first step (``step_draws``; nothing else draws in between), so the
step loop never reads host memory or waits for the device: on a GPU each step can be a replayed
CUDA graph (models/graphs.py), on a CPU the numbers are the same either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Protocol, Sequence, Union

import torch
from torch import Tensor

from models.config import DiffusionConfig, DistributionShiftConfig
from models.noise import NoiseSource

SeqLen = Union[int, Tensor]  # one length for all, or (B,) effective lengths in latent frames


# --------------------------------------------------------------------------- shifts


@dataclass(frozen=True)
class LogSNRShift:
    """Timesteps uniform in log-SNR between ``logsnr_end`` and a length-dependent start.

    ``logsnr_start = anchor_logsnr - rate * log2(seq_len / anchor_length)`` ("-1 per
    doubling"); ``t = sigmoid(-logsnr)``. The released checkpoints sample with ``rate=0``:
    logSNR uniform in [-6.2, 2.0] whatever the length (official ``LogSNRShift``).
    """

    anchor_length: float = 2000
    anchor_logsnr: float = -6.2
    rate: float = 1.0
    logsnr_end: float = 2.0

    def __call__(self, t: Tensor, seq_len: SeqLen) -> Tensor:
        if isinstance(seq_len, Tensor):
            start = self.anchor_logsnr - self.rate * torch.log2(seq_len.float() / self.anchor_length)
            t_grid, start = _per_item(t, start.to(t.device))
        else:
            start = self.anchor_logsnr - self.rate * math.log2(seq_len / self.anchor_length)
            t_grid = t
        logsnr = self.logsnr_end - t_grid * (self.logsnr_end - start)
        out = torch.sigmoid(-logsnr)
        out = torch.where(t <= 0, torch.zeros_like(out), out)  # exact endpoints
        return torch.where(t >= 1, torch.ones_like(out), out)


@dataclass(frozen=True)
class FullShift:
    """The training-time shift of the configs' ``distribution_shift_options`` (type ``full``).

    ``mu = -(base + (max - base) * (L - Lmin) / (Lmax - Lmin))`` with L clamped to
    [Lmin, Lmax]; ``t' = 1 - e^mu / (e^mu + t / (1 - t))`` (official ``DistributionShift``).
    """

    base_shift: float = 0.5
    max_shift: float = 1.15
    min_length: float = 256
    max_length: float = 4096

    def __call__(self, t: Tensor, seq_len: SeqLen) -> Tensor:
        span = self.max_shift - self.base_shift
        if isinstance(seq_len, Tensor):
            length = seq_len.to(t.device).float().clamp(self.min_length, self.max_length)
            t, length = _per_item(t, length)
            mu = -(self.base_shift + span * (length - self.min_length) / (self.max_length - self.min_length))
            e_mu = torch.exp(mu)
        else:
            length = min(max(seq_len, self.min_length), self.max_length)
            mu = -(self.base_shift + span * (length - self.min_length) / (self.max_length - self.min_length))
            e_mu = math.exp(mu)
        return 1 - e_mu / (e_mu + (1 / (1 - t) - 1))

    @classmethod
    def from_config(cls, c: DistributionShiftConfig) -> "FullShift":
        return cls(c.base_shift, c.max_shift, c.min_length, c.max_length)


@dataclass(frozen=True)
class FluxShift:
    """``t' = a t / (1 + (a - 1) t)``, ``a`` log-linear in the length between
    (min_length, alpha_min) and (max_length, alpha_max) (official ``FluxDistributionShift``)."""

    min_length: float = 256
    max_length: float = 4096
    alpha_min: float = 1.0
    alpha_max: float = 1.0

    def alpha(self, seq_len: SeqLen):
        log_lo, log_hi = math.log(self.min_length), math.log(self.max_length)
        if log_hi == log_lo:
            log_hi += 1e-8  # constant alpha
        log_a_lo, log_a_hi = math.log(max(self.alpha_min, 1e-8)), math.log(max(self.alpha_max, 1e-8))
        if isinstance(seq_len, Tensor):
            frac = (torch.log(seq_len.float().clamp(self.min_length, self.max_length)) - log_lo) / (log_hi - log_lo)
            return torch.exp(log_a_lo + frac * (log_a_hi - log_a_lo))
        frac = (math.log(max(min(seq_len, self.max_length), self.min_length)) - log_lo) / (log_hi - log_lo)
        return math.exp(log_a_lo + frac * (log_a_hi - log_a_lo))

    def __call__(self, t: Tensor, seq_len: SeqLen) -> Tensor:
        a = self.alpha(seq_len)
        if isinstance(a, Tensor):
            t, a = _per_item(t, a.to(t.device))
        return a * t / (1 + (a - 1.0) * t)


Shift = Union[LogSNRShift, FullShift, FluxShift]


def _per_item(t: Tensor, per_item: Tensor) -> tuple[Tensor, Tensor]:
    """A (N,) grid and (B,) per-item values -> (1, N) and (B, 1), broadcasting to (B, N).

    Like the official code, a grid that happens to have B points broadcasts elementwise.
    """
    if t.dim() == 1 and per_item.dim() == 1 and t.shape[0] != per_item.shape[0]:
        return t.unsqueeze(0), per_item.unsqueeze(1)
    return t, per_item


def sampling_shift(diffusion: DiffusionConfig) -> Shift:
    """The shift a checkpoint samples with: ``sampling_distribution_shift_options``, or the
    official default when the config has none (all released ones): LogSNR, rate 0."""
    options = diffusion.sampling_distribution_shift_options
    if options is None:
        return LogSNRShift(anchor_length=2000, anchor_logsnr=-6.2, rate=0.0, logsnr_end=2.0)
    return FullShift.from_config(options)


def training_shift(diffusion: DiffusionConfig) -> Optional[Shift]:
    """The shift of ``distribution_shift_options`` (training), or None."""
    options = diffusion.distribution_shift_options
    return None if options is None else FullShift.from_config(options)


# --------------------------------------------------------------------------- schedules


def build_schedule(steps: int, sigma_max: float = 1.0, shift: Optional[Shift] = None,
                   seq_len: Optional[SeqLen] = None, device: Union[str, torch.device] = "cpu") -> Tensor:
    """Timesteps from ``sigma_max`` down to 0: (steps + 1,) float32, or (B, steps + 1) when
    ``seq_len`` is a (B,) tensor and ``shift`` depends on it (official ``build_schedule``
    with ``include_endpoint=True``).

    The grid is ``linspace(sigma_max, 0)``, warped by ``shift`` at ``seq_len`` (clamped to
    >= 1; required when ``shift`` is given); the first timestep is then reset to
    ``sigma_max`` so that it matches how audio-to-audio mixes its init latents.
    """
    t = torch.linspace(sigma_max, 0, steps + 1, device=device)
    if shift is None:
        return t
    if seq_len is None:
        raise ValueError("build_schedule: a shift needs seq_len (latent frames)")
    seq_len = seq_len.clamp(min=1) if isinstance(seq_len, Tensor) else max(int(seq_len), 1)
    t = shift(t, seq_len)
    t[..., 0] = sigma_max
    return t


def schedule_from(steps: int, sigma_start: float, shift: Shift, seq_len: Tensor,
                  device: Union[str, torch.device] = "cpu") -> Tensor:
    """(B, steps + 1) timesteps that start at ``sigma_start`` and follow the shifted curve to 0.

    ``build_schedule(steps, sigma_max, ...)`` (the official way) shifts ``linspace(sigma_max, 0)``
    and then resets the first value to ``sigma_max``: with a shift that raises t (all released
    ones) the second timestep lands above the first, so an audio-to-audio "0.7" re-noises to
    ~0.95 after one step. Here the grid starts at the point u with ``shift(u) = sigma_start``
    (found by bisection; shifts increase with t), so every step lowers the noise and the init
    audio keeps exactly ``1 - sigma_start`` of its weight. Used by the studio, not for parity.
    """
    rows = []
    for length in seq_len.clamp(min=1).tolist():
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if shift(torch.tensor([mid], dtype=torch.float64), length).item() < sigma_start:
                lo = mid
            else:
                hi = mid
        t = shift(torch.linspace(lo, 0, steps + 1, dtype=torch.float64), length).reshape(-1)
        t[0] = sigma_start
        rows.append(t.float())
    return torch.stack(rows).to(device)


def effective_seq_len(seconds: Sequence[float], sample_rate: int, downsampling_ratio: int,
                      device: Union[str, torch.device] = "cpu") -> Tensor:
    """(B,) float32 latent frames covering each item's ``seconds_total``:
    ``ceil(int(seconds * sample_rate) / downsampling_ratio)`` (official
    ``compute_effective_seq_len_from_conditioning``); the schedule's length."""
    frames = [math.ceil(int(s * sample_rate) / downsampling_ratio) for s in seconds]
    return torch.tensor(frames, dtype=torch.float32, device=device)


# --------------------------------------------------------------------------- samplers

ModelFn = Callable[[Tensor, Tensor], Tensor]  # (x (B, C, T), t (B,)) -> velocity (B, C, T)


class SamplerStep(NamedTuple):
    """What a sampler reports after each model call (``callback(step)``)."""

    i: int  # 0-based step index
    steps: int  # number of steps
    t: Tensor  # (B,) timestep of this call
    x: Tensor  # (B, C, T) the model's input
    denoised: Tensor  # (B, C, T) the current estimate of the clean latents x0


Callback = Callable[[SamplerStep], None]
# (x, v, denoised, t, t', eps) -> next x; t, t' (B, 1, 1); eps the step's draw, or None (deterministic)
Update = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Optional[Tensor]], Tensor]
# (x, t, t', eps) -> (next x, denoised): one whole step, the unit a CUDA graph replays (models/graphs.py)
StepFn = Callable[[Tensor, Tensor, Tensor, Optional[Tensor]], tuple[Tensor, Tensor]]


class Sampler(Protocol):
    """Every sampler's signature (k-diffusion's): integrate ``model`` over ``sigmas`` from the
    initial state ``x`` (B, C, T) and return the final state (B, C, T).

    sigmas: (N + 1,) or (B, N + 1) timesteps from the start down to 0, in x's dtype (fp32).
    noise: where a stochastic sampler draws its per-step noise (a deterministic one draws none).
    callback: called once per model call with a ``SamplerStep``.
    Guidance (CFG/APG) and LoRA switching belong to ``model``, not to the sampler.
    """

    def __call__(self, model: ModelFn, x: Tensor, sigmas: Tensor, noise: NoiseSource,
                 callback: Optional[Callback] = None) -> Tensor: ...


class Integrator(NamedTuple):
    """How a sampler moves from one timestep to the next: its ``update`` and whether it takes one
    standard-normal draw of x's shape per step (``draws``)."""

    update: Update
    draws: bool


def _renoise(x: Tensor, v: Tensor, denoised: Tensor, t_now: Tensor, t_next: Tensor, eps: Optional[Tensor]) -> Tensor:
    return (1 - t_next) * denoised + t_next * eps


def _euler(x: Tensor, v: Tensor, denoised: Tensor, t_now: Tensor, t_next: Tensor, eps: Optional[Tensor]) -> Tensor:
    return x + (t_next - t_now) * v


PINGPONG = Integrator(_renoise, draws=True)
EULER = Integrator(_euler, draws=False)


def per_item_schedule(sigmas: Tensor, x: Tensor) -> Tensor:
    """(N,) or (B, N) -> (B, N) in x's dtype and device (a shared schedule is the same
    value per item, so this changes no number)."""
    sigmas = sigmas.to(device=x.device, dtype=x.dtype)
    return sigmas.expand(x.shape[0], -1) if sigmas.dim() == 1 else sigmas


def step_draws(integrator: Integrator, noise: NoiseSource, steps: int, x: Tensor) -> Optional[Tensor]:
    """(steps, B, C, T) every draw the sampler will take, in x's dtype and device, or None.

    Drawn before the first step, in the order a step-by-step sampler draws them (nothing else
    draws in between), so a seed gives the same numbers; on a GPU the loop then reads no host
    memory and a step can be a replayed CUDA graph. One copy to the device, not one per step."""
    if not integrator.draws or steps == 0:
        return None
    return torch.stack([noise(x.shape) for _ in range(steps)]).to(device=x.device, dtype=x.dtype)


def make_step(model: ModelFn, update: Update) -> StepFn:
    """One step as a function of tensors only: ``v = model(x, t)``, ``denoised = x - t v``,
    then ``update``. No Python number depends on the data: it can be captured as a graph."""
    def step(x: Tensor, t_now: Tensor, t_next: Tensor, eps: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        v = model(x, t_now)
        denoised = x - t_now.view(-1, 1, 1) * v
        return update(x, v, denoised, t_now.view(-1, 1, 1), t_next.view(-1, 1, 1), eps), denoised
    return step


def integrate(step: StepFn, x: Tensor, t: Tensor, draws: Optional[Tensor],
              callback: Optional[Callback] = None) -> Tensor:
    """The loop every sampler shares: ``x, denoised <- step(x, t_i, t_{i+1}, draws[i])`` for each
    of the ``t.shape[1] - 1`` steps, each reported to ``callback`` (its input x and denoised).

    t: (B, N + 1) schedule in x's dtype and device (``per_item_schedule``); draws: from
    ``step_draws``. Indexing device tensors by a Python int reads nothing back: no host sync."""
    steps = t.shape[1] - 1
    for i in range(steps):
        t_now = t[:, i]
        x_next, denoised = step(x, t_now, t[:, i + 1], None if draws is None else draws[i])
        if callback is not None:
            callback(SamplerStep(i, steps, t_now, x, denoised))
        x = x_next
    return x


def run(integrator: Integrator, model: ModelFn, x: Tensor, sigmas: Tensor, noise: NoiseSource,
        callback: Optional[Callback] = None) -> Tensor:
    """A whole sampler run: the schedule per item, every draw up front, then ``integrate``."""
    t = per_item_schedule(sigmas, x)
    draws = step_draws(integrator, noise, t.shape[1] - 1, x)
    return integrate(make_step(model, integrator.update), x, t, draws, callback)


def sample_pingpong(model: ModelFn, x: Tensor, sigmas: Tensor, noise: NoiseSource,
                    callback: Optional[Callback] = None) -> Tensor:
    """Ping-pong sampling for distilled (``rf_denoiser``) checkpoints.

    Each step denoises fully, then re-noises to the next timestep with a fresh draw:
    ``x <- (1 - t') * (x - t v) + t' * eps`` (official ``sample_flow_pingpong``).
    One draw of x's shape per step, the last (t' = 0) included, as the official code does
    (all drawn before the first step, in the same order: ``step_draws``).
    """
    return run(PINGPONG, model, x, sigmas, noise, callback)


def sample_euler(model: ModelFn, x: Tensor, sigmas: Tensor, noise: NoiseSource,
                 callback: Optional[Callback] = None) -> Tensor:
    """Euler integration of the flow ODE, for ``rectified_flow`` (-base) checkpoints:
    ``x <- x + (t' - t) v`` (official ``sample_discrete_euler``). Deterministic: it draws
    nothing from ``noise``; guidance (CFG/APG) belongs to ``model``."""
    return run(EULER, model, x, sigmas, noise, callback)


# The sampler of each diffusion objective a config may declare (``diffusion.diffusion_objective``).
SAMPLERS: dict[str, Sampler] = {"rf_denoiser": sample_pingpong, "rectified_flow": sample_euler}
INTEGRATORS: dict[str, Integrator] = {"rf_denoiser": PINGPONG, "rectified_flow": EULER}


def sampler_for(diffusion: DiffusionConfig) -> Sampler:
    """The sampler a checkpoint was trained for: ping-pong for the distilled ``rf_denoiser``
    models, Euler (with CFG/APG in the model function) for the ``rectified_flow`` -base ones."""
    return SAMPLERS[diffusion.diffusion_objective]


def integrator_for(diffusion: DiffusionConfig) -> Integrator:
    """The update rule (and draws) of ``sampler_for(diffusion)``, for callers that run the loop
    themselves (``integrate``: StableAudio3.sample, with or without CUDA graphs)."""
    return INTEGRATORS[diffusion.diffusion_objective]
