"""The Stable Audio 3 diffusion transformer (DiT small and medium).

Follows the official ``stable_audio_3/models/dit.py`` (DiffusionTransformer), the DiT parts of
``models/transformer.py`` (ContinuousTransformer, TransformerBlock) and ``models/blocks.py``
(ExpoFourierFeatures), @636f906; the code is ours. Attribute names are the keys of the full
checkpoint under ``model.model.``, so the released weights load with a strict check.

    x (B, C, T) noisy latents ──1x1 conv (+x)──► project_in ──► [64 memory tokens ; T frames]
        └─► depth x block:  AdaLN ─► self-attention (rotary, rms qk-norm, differential in medium)
                            ─► cross-attention over the context tokens
                            ─► + local inpainting embedding (mask + pre-masked reference)
                            ─► AdaLN ─► SwiGLU
    ──► drop memory tokens ──► project_out ──1x1 conv (+y)──► velocity (B, C, T)

AdaLN's condition is ``to_global_embed(global_cond) + to_timestep_embed(expo_fourier(t))``.

A generation calls the network 8 times (or more) with the same conditioning, so the
conditioning is prepared once: ``ctx = dit.prepare(...)`` computes everything that does not
depend on (x, t) (cross-attention keys/values of every layer, the global embedding, the
per-layer inpainting embeddings) and ``dit(x, t, ctx)`` runs a step. These are exact-math
savings over the official code, which recomputes them at every call; so is collapsing
identical context rows (the learned-padding rows of the text encoder) into one key with a
+log(count) logit bias, which leaves every softmax unchanged. ``collapse_context=False``
keeps every row (the plain path; the tests prove both equal the official numbers).

Self-attention over padded batches follows the official non-flash path (the one the golden
fixtures ran): padded frames' values are zeroed, their keys still take softmax weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.config import DiTConfig
from models.transformer import Attention, FeedForward, Padding, RMSNorm, RotaryEmbedding


def mlp(dim_in: int, dim: int, dim_out: int, bias: bool) -> nn.Sequential:
    """Linear -> SiLU -> Linear (keys ``.0`` and ``.2``), the official embedding MLP."""
    return nn.Sequential(nn.Linear(dim_in, dim, bias=bias), nn.SiLU(), nn.Linear(dim, dim_out, bias=bias))


class ExpoFourierFeatures(nn.Module):
    """t (B,) or (B, 1) -> [cos, sin](2 pi t f) (B, dim), f log-spaced in [0.5, 10000] (official blocks.py).

    Computed in fp32 in the official order of operations: the arguments reach ~6e4 radians,
    where a different rounding of t * f would move cos/sin by more than our tolerance.
    """

    def __init__(self, dim: int, min_freq: float = 0.5, max_freq: float = 10000.0):
        super().__init__()
        self.dim, self.min_freq, self.max_freq = dim, min_freq, max_freq

    def forward(self, t: Tensor) -> Tensor:
        ramp = torch.linspace(0, 1, self.dim // 2, device=t.device, dtype=torch.float32)
        log_min, log_max = math.log(self.min_freq), math.log(self.max_freq)
        freqs = torch.exp(ramp * (log_max - log_min) + log_min)
        t32 = t.float() if t.dim() > 1 else t.float()[:, None]  # (B, 1)
        args = t32 * freqs * 2 * math.pi  # (B, dim/2)
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(t.dtype)


@dataclass(frozen=True)
class DiTContext:
    """Everything a generation's steps share, from ``DiT.prepare``; the batch is fixed by it.

    cross_kv: per layer, the cross-attention (keys, values) as ``Attention.context_kv`` gives.
    cross_bias: (B, 1, 1, S') logit bias of the collapsed context (log of each key's row
        count; -inf on keys an item does not have), or None when every row is its own key.
    global_embed: (B, D) ``to_global_embed(global_cond)``.
    local_embeds: per layer, (B, T, D) inpainting embedding (maybe a broadcast view), or None.
    padding_mask: (B, T) bool, True = valid frame, or None.
    self_padding: the same over the memory tokens and frames (B, M+T), as self-attention
        takes it (prepared once: no host syncs per call), or None.
    """

    cross_kv: tuple
    cross_bias: Optional[Tensor]
    global_embed: Tensor
    local_embeds: Optional[tuple[Tensor, ...]]
    padding_mask: Optional[Tensor]
    self_padding: Optional[Padding]

    @property
    def batch_size(self) -> int:
        return self.global_embed.shape[0]


class DiTBlock(nn.Module):
    """AdaLN self-attention, cross-attention, local inpainting add, AdaLN SwiGLU.

    official TransformerBlock.forward with global_cond (the adaLN branch).
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim, heads = cfg.embed_dim, cfg.embed_dim // cfg.num_heads
        norm = lambda: RMSNorm(dim, force_fp32=cfg.norm_kwargs.force_fp32)
        attn = dict(qk_norm=cfg.attn_kwargs.qk_norm, differential=cfg.attn_kwargs.differential)
        self.pre_norm = norm()
        self.self_attn = Attention(dim, heads, **attn)
        self.cross_attend_norm = norm()
        self.cross_attn = Attention(dim, heads, dim_context=dim, **attn)
        self.ff_norm = norm()
        self.ff = FeedForward(dim, mult=cfg.ff_kwargs.mult)
        self.to_scale_shift_gate = nn.Parameter(torch.randn(6 * dim) / dim ** 0.5)
        self.to_local_embed = mlp(cfg.local_add_cond_dim, dim, dim, bias=True)

    def forward(self, x: Tensor, cond: Tensor, freqs: Tensor, cross_kv, cross_bias: Optional[Tensor],
                local_embed: Optional[Tensor], padding: Optional[Padding]) -> Tensor:
        """x (B, M+T, D); cond (B, 6D) AdaLN condition; freqs (M+T, r) rotary angles or their (cos, sin);
        local_embed (B, T, D) added to the T frames; padding: the real ones of the M+T tokens."""
        scale_sa, shift_sa, gate_sa, scale_ff, shift_ff, gate_ff = \
            (self.to_scale_shift_gate + cond).unsqueeze(1).chunk(6, dim=-1)  # each (B, 1, D)
        h = torch.addcmul(shift_sa, self.pre_norm(x), 1 + scale_sa)  # norm(x) * (1 + scale) + shift
        x = torch.addcmul(x, self.self_attn(h, freqs=freqs, padding=padding), torch.sigmoid(1 - gate_sa))
        x = x + self.cross_attn(self.cross_attend_norm(x), kv=cross_kv, mask=cross_bias)
        if local_embed is not None:  # the T frames only: memory tokens get nothing (official zero-padding)
            x[:, x.shape[1] - local_embed.shape[1]:] += local_embed  # x is this block's own tensor
        h = torch.addcmul(shift_ff, self.ff_norm(x), 1 + scale_ff)
        return torch.addcmul(x, self.ff(h), torch.sigmoid(1 - gate_ff))


class Transformer(nn.Module):
    """The block stack with its memory tokens, rotary angles and AdaLN embedder
    (official ContinuousTransformer; keys ``transformer.*``)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.project_in = nn.Linear(cfg.io_channels * cfg.patch_size, dim, bias=False)
        self.project_out = nn.Linear(dim, cfg.io_channels * cfg.patch_size, bias=False)
        self.rotary_pos_emb = RotaryEmbedding(max(dim // cfg.num_heads // 2, 32))
        self.memory_tokens = nn.Parameter(torch.randn(cfg.num_memory_tokens, dim))
        self.global_cond_embedder = mlp(dim, dim, 6 * dim, bias=True)
        self.layers = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))

    def forward(self, x: Tensor, global_embed: Tensor, ctx: DiTContext) -> Tensor:
        """x (B, T, C_in), global_embed (B, D) -> (B, T, C_out)."""
        B, M = x.shape[0], self.memory_tokens.shape[0]
        x = torch.cat([self.memory_tokens.expand(B, -1, -1), self.project_in(x)], dim=1)  # (B, M+T, D)
        freqs = self.rotary_pos_emb(x.shape[1], device=x.device)  # (cos, sin), cached per length
        cond = self.global_cond_embedder(global_embed)  # (B, 6D)
        locals_ = ctx.local_embeds or (None,) * len(self.layers)
        for layer, kv, local in zip(self.layers, ctx.cross_kv, locals_):
            x = layer(x, cond, freqs, kv, ctx.cross_bias, local, ctx.self_padding)
        return self.project_out(x[:, M:])


class DiT(nn.Module):
    """SA3 DiT: ``prepare`` the conditioning once, then ``forward(x, t, ctx)`` per step.

    Output: the network's velocity prediction for both released objectives (``rf_denoiser``
    and ``rectified_flow`` differ only in how samplers and guidance use it).
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        if cfg.timestep_features_logsnr:
            raise ValueError("DiTConfig.timestep_features_logsnr=True is not used by any released model")
        dim = cfg.embed_dim
        self.cfg = cfg
        self.timestep_features = ExpoFourierFeatures(cfg.timestep_features_dim)
        self.to_timestep_embed = mlp(cfg.timestep_features_dim, dim, dim, bias=True)
        self.to_cond_embed = mlp(cfg.cond_token_dim, dim, dim, bias=False)
        self.to_global_embed = mlp(cfg.global_cond_dim, dim, dim, bias=False)
        self.transformer = Transformer(cfg)
        self.preprocess_conv = nn.Conv1d(cfg.io_channels, cfg.io_channels, 1, bias=False)
        self.postprocess_conv = nn.Conv1d(cfg.io_channels, cfg.io_channels, 1, bias=False)

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype; inputs are cast to it (t stays fp32 until the features)."""
        return self.transformer.memory_tokens.dtype

    def prepare(self, cross_attn_cond: Tensor, global_cond: Tensor, local_add_cond: Optional[Tensor] = None,
                padding_mask: Optional[Tensor] = None, *, collapse_context: bool = True,
                context_multiple: int = 1) -> DiTContext:
        """The per-generation cache.

        cross_attn_cond (B, S, cond_token_dim): context tokens (text rows, padding rows, seconds).
        global_cond (B, global_cond_dim). local_add_cond (B, 1 + C, T): inpainting mask channel
        and pre-masked reference latents, or None (text only). padding_mask (B, T) bool, True =
        valid, or None. ``collapse_context``: identical rows -> one key with a log-count bias.
        ``context_multiple``: pad the collapsed keys to a multiple of this many (count 0, a -inf
        bias: no weight) and always give the bias, so prompts of similar lengths prepare the
        same shapes (a replayed CUDA graph serves them all; models/graphs.py).
        """
        dtype = self.dtype
        cross_attn_cond, global_cond = cross_attn_cond.to(dtype), global_cond.to(dtype)
        bias = None
        if collapse_context:
            cross_attn_cond, counts = collapse_rows(cross_attn_cond, context_multiple)
            # fp32 whatever the weights' dtype: log(count) in bf16 is off by up to 1/64, i.e.
            # +-1.6% on the weight of the padding key (attend runs a biased softmax in fp32).
            uniform = context_multiple == 1 and bool((counts == 1).all())
            bias = None if uniform else counts.float().log()[:, None, None, :]
        context = self.to_cond_embed(cross_attn_cond)  # (B, S', D)
        cross_kv = tuple(layer.cross_attn.context_kv(context) for layer in self.transformer.layers)
        local_embeds = None
        if local_add_cond is not None:
            local_embeds = self._local_embeds(local_add_cond.to(dtype).transpose(1, 2))
        pad = self_padding = None
        if padding_mask is not None:
            pad = padding_mask.bool()
            memory = self.transformer.memory_tokens.shape[0]
            self_padding = Padding.of(F.pad(pad, (memory, 0), value=True))  # memory tokens are real
        return DiTContext(cross_kv, bias, self.to_global_embed(global_cond), local_embeds, pad, self_padding)

    def compile_blocks(self) -> "DiT":
        """Regional ``torch.compile``: each block compiled in place (the blocks share their code, so
        one compilation serves all of them; a new shape recompiles once). Inductor fuses the small
        element-wise kernels (rotary, casts, norms, gates) a block launches; no cudagraph mode: the
        sampler's graphs are models/graphs.py's, around the compiled kernels. Meant for CUDA: on a
        CPU the first call compiles for minutes. Compiled numbers differ from eager by fusion's
        rounding (bench.gpu_check fastpath measures it)."""
        for layer in self.transformer.layers:
            layer.compile(dynamic=False)
        return self

    def _local_embeds(self, local: Tensor) -> tuple[Tensor, ...]:
        """Per-layer inpainting embeddings of local (B, T, 1 + C). A cond constant over time
        (text-to-audio: all zeros) is embedded once per item and broadcast: same numbers."""
        if bool((local == local[:, :1]).all()):
            return tuple(l.to_local_embed(local[:, :1]).expand(-1, local.shape[1], -1)
                         for l in self.transformer.layers)
        return tuple(l.to_local_embed(local) for l in self.transformer.layers)

    def forward(self, x: Tensor, t: Tensor, ctx: DiTContext) -> Tensor:
        """x (B, C, T) noisy latents, t (B,) noise level in [0, 1] -> velocity (B, C, T)."""
        _check_step(x, t, ctx)
        dtype = self.dtype
        x = x.to(dtype)
        # Features from fp32 t, as in training (autocast keeps fp32 weights). The official
        # inference casts t to the model dtype first: in bf16 that moves t by ~0.002, i.e. the
        # high-frequency features by radians (20% output change on the tiny medium model).
        t_features = self.timestep_features(t.float()).to(dtype)  # (B, 256)
        global_embed = ctx.global_embed + self.to_timestep_embed(t_features)  # (B, D)
        x = self.preprocess_conv(x) + x
        y = self.transformer(x.transpose(1, 2), global_embed, ctx).transpose(1, 2)  # (B, C, T)
        return self.postprocess_conv(y) + y

    def forward_plain(self, x: Tensor, t: Tensor, cross_attn_cond: Tensor, global_cond: Tensor,
                      local_add_cond: Optional[Tensor] = None, padding_mask: Optional[Tensor] = None) -> Tensor:
        """One call computing everything from scratch, every context row its own key: the
        official cost per step (for benchmarks and equivalence tests)."""
        ctx = self.prepare(cross_attn_cond, global_cond, local_add_cond, padding_mask, collapse_context=False)
        return self(x, t, ctx)


def _check_step(x: Tensor, t: Tensor, ctx: DiTContext) -> None:
    """A step's inputs must fit the prepared context (same batch, same number of frames)."""
    B, _, T = x.shape
    if t.shape != (B,) or ctx.batch_size != B:
        raise ValueError(f"DiT step: x has batch {B}, t has shape {tuple(t.shape)}, "
                         f"the prepared context batch {ctx.batch_size}")
    lengths = [m.shape[1] for m in (ctx.padding_mask, *(ctx.local_embeds or ())[:1]) if m is not None]
    if any(n != T for n in lengths):
        raise ValueError(f"DiT step: x has {T} frames, the prepared context {lengths[0]}")


def collapse_rows(rows: Tensor, multiple: int = 1) -> tuple[Tensor, Tensor]:
    """Identical rows of each item -> one row and its count.

    rows (B, S, D) -> unique rows (B, S', D) zero-padded to the longest item (its row count
    rounded up to ``multiple``), counts (B, S') (0 on padding). Attention over the original rows equals attention over the unique rows
    with +log(count) added to their logits: sum_j exp(l_j) v_j groups by identical (k_j, v_j);
    a count of 0 gives -inf, no weight. Row order is irrelevant: cross-attention has no
    positions. Rows must be bitwise equal to merge (the learned padding rows are copies).
    """
    uniques = [torch.unique(r, dim=0, return_counts=True) for r in rows]
    width = max(u.shape[0] for u, _ in uniques)
    width = -(-width // multiple) * multiple
    out = rows.new_zeros(rows.shape[0], width, rows.shape[2])
    counts = torch.zeros(rows.shape[0], width, dtype=torch.long, device=rows.device)
    for b, (u, c) in enumerate(uniques):
        out[b, : u.shape[0]], counts[b, : c.shape[0]] = u, c
    return out, counts
