"""Classifier-free guidance with adaptive projection (CFG / APG) for the rectified-flow DiT.

Guidance wraps the network; it is not one of its arguments. The DiT predicts a velocity
``v`` with ``x_t = (1 - sigma) x_0 + sigma * noise``, so its denoised estimate is
``x - sigma * v``. Guidance (official ``DiffusionTransformer.forward``, cfg branch, for the
``rectified_flow`` and ``rf_denoiser`` objectives) works on the two denoised estimates:

    diff     = denoised_cond - denoised_uncond
    diff'    = apg * orthogonal(diff, denoised_cond) + (1 - apg) * diff
    denoised = denoised_cond + (cfg_scale - 1) * diff'
    v        = (x - denoised) / sigma

APG (Sadat et al. 2024, "Eliminating oversaturation ... adaptive projected guidance")
keeps only the part of the guidance direction orthogonal to the conditional estimate;
``apg_scale`` 1 is full APG, 0 is vanilla CFG. With a padding mask the projection is taken
over the valid frames only and the orthogonal part is zero on padding frames.

The unconditional branch sees the same inputs except the cross-attention context: zeros
(the null embedding) or a negative prompt whose masked rows are zeros.

Use: ``ctx = prepare_guided(dit, cond, uncond, ...)`` once per generation, then
``guided(dit, x, t, ctx, cfg_scale, apg_scale, padding_mask)`` at every step.
"""

from __future__ import annotations

import torch
from torch import Tensor


def null_context(cross_attn_cond: Tensor, negative: Tensor | None = None,
                 negative_mask: Tensor | None = None) -> Tensor:
    """The unconditional branch's context (B, S, D_cond).

    Zeros without a negative prompt; with one, its rows where ``negative_mask`` (B, S) is
    False are replaced by zeros (official: ``torch.where(mask, negative, null_embed)``).
    """
    if negative is None:
        return torch.zeros_like(cross_attn_cond)
    if negative_mask is None:
        return negative
    return torch.where(negative_mask.bool().unsqueeze(-1), negative, torch.zeros_like(negative))


def apg_project(v0: Tensor, v1: Tensor, padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Split ``v0`` (B, C, T) into parts parallel and orthogonal to ``v1`` (B, C, T).

    The inner product runs over (C, T) of each item, in fp32. ``padding_mask`` (B, T),
    True = valid: only valid frames count, and the orthogonal part is zeroed on padding.
    """
    dtype = v0.dtype
    v0, v1 = v0.float(), v1.float()
    dims = (-2, -1)
    if padding_mask is None:
        unit = torch.nn.functional.normalize(v1, dim=dims)
        parallel = (v0 * unit).sum(dims, keepdim=True) * unit
        orthogonal = v0 - parallel
    else:
        mask = padding_mask.unsqueeze(1).float()  # (B, 1, T)
        v1 = v1 * mask
        unit = v1 / v1.norm(dim=dims, keepdim=True).clamp(min=1e-8)
        parallel = (v0 * mask * unit).sum(dims, keepdim=True) * unit
        # unit is 0 on padding, so this equals the masked parallel part; order as official
        orthogonal = (v0 - (v0 * unit).sum(dims, keepdim=True) * unit) * mask
    return parallel.to(dtype), orthogonal.to(dtype)


def guide(x: Tensor, sigma: Tensor, cond_out: Tensor, uncond_out: Tensor, cfg_scale: float,
          apg_scale: float = 1.0, padding_mask: Tensor | None = None) -> Tensor:
    """Guided velocity (B, C, T) from the two network outputs at noise level ``sigma`` (B,).

    Pure function; ``cfg_scale == 1`` needs no unconditional output (callers skip it).
    """
    s = sigma.float()[:, None, None]
    denoised_cond = x - cond_out * s
    denoised_uncond = x - uncond_out * s
    diff = denoised_cond - denoised_uncond
    if apg_scale != 0.0:
        _, orthogonal = apg_project(diff, denoised_cond, padding_mask)
        diff = orthogonal if apg_scale == 1.0 else apg_scale * orthogonal + (1 - apg_scale) * diff
    denoised = denoised_cond + (cfg_scale - 1) * diff
    return (x - denoised) / s


def prepare_guided(dit, cross_attn_cond: Tensor, uncond_cross_attn_cond: Tensor, global_cond: Tensor,
                   local_add_cond: Tensor | None = None, padding_mask: Tensor | None = None, **kw):
    """``dit.prepare`` on the batch [conditional; unconditional] (official: one batched call)."""
    twice = lambda t: None if t is None else torch.cat([t, t])
    return dit.prepare(torch.cat([cross_attn_cond, uncond_cross_attn_cond]), twice(global_cond),
                       twice(local_add_cond), twice(padding_mask), **kw)


def guided(dit, x: Tensor, t: Tensor, ctx, cfg_scale: float, apg_scale: float = 1.0,
           padding_mask: Tensor | None = None) -> Tensor:
    """One guided network evaluation; ``ctx`` comes from ``prepare_guided`` (batch 2B)."""
    cond_out, uncond_out = dit(torch.cat([x, x]), torch.cat([t, t]), ctx).float().chunk(2)  # guidance in fp32
    return guide(x, t, cond_out, uncond_out, cfg_scale, apg_scale, padding_mask)
