"""Transformer building blocks shared by SAME (models/same.py) and the DiT (models/dit.py).

Facts follow the official ``stable_audio_3/models/transformer.py`` (Attention, FeedForward,
DynamicTanh, RMSNorm, RotaryEmbedding); the code is ours. Attribute names are the released
checkpoint keys (``to_qkv``, ``q_norm.gamma``, ``ff.ff.0.proj``...), so weights load strictly.

``attend`` is the single attention entry point: every kernel choice (sdpa, flash-attn,
local windows) lives there, and every fast path is tested against plain masked sdpa.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Literal, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- norms


class RMSNorm(nn.Module):
    """RMS norm with a learned gain ``gamma`` (no bias); ``force_fp32`` normalises in fp32."""

    def __init__(self, dim: int, eps: float = 1e-5, force_fp32: bool = False):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.eps = eps
        self.force_fp32 = force_fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.force_fp32:
            return F.rms_norm(x.float(), x.shape[-1:], self.gamma.float(), self.eps).to(x.dtype)
        return F.rms_norm(x, x.shape[-1:], self.gamma, self.eps)


class DynamicTanh(nn.Module):
    """DyT (Zhu et al. 2025): ``gamma * tanh(alpha * x) + beta``, a norm without statistics."""

    def __init__(self, dim: int, init_alpha: float = 4.0):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1,), init_alpha))
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta, self.gamma, torch.tanh(self.alpha * x))


def make_norm(kind: Literal["rms", "dyt"], dim: int, eps: float = 1e-5, force_fp32: bool = False) -> nn.Module:
    return DynamicTanh(dim) if kind == "dyt" else RMSNorm(dim, eps, force_fp32)


# --------------------------------------------------------------------------- rotary


def rotary_inv_freq(dim: int, base: float = 10000.0) -> torch.Tensor:
    """(dim // 2,) fp32 inverse frequencies of a ``dim``-wide rotary embedding."""
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


class RotaryEmbedding(nn.Module):
    """Rotary position angles for the first ``dim`` channels of each head.

    ``inv_freq`` is a checkpoint buffer (``rope.inv_freq`` / ``rotary_pos_emb.inv_freq``). The
    angles are computed from the fp32 formula, which is what the checkpoint stores: a bf16
    copy of the buffer would shift the angle by radians at positions in the thousands.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.register_buffer("inv_freq", rotary_inv_freq(dim))

    def forward(self, n: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) of the angles (n, dim) in fp32 for positions 0..n-1, on ``device``."""
        device = self.inv_freq.device if device is None else device
        return rotary_table(self.dim, n, torch.device(device))

    def angles(self, n: int, device: torch.device | None = None) -> torch.Tensor:
        """The angles (n, dim) themselves, fp32 (formulas and tests; layers take ``forward``)."""
        return rotary_angles(self.dim, n, self.inv_freq.device if device is None else device)


def rotary_angles(dim: int, n: int, device) -> torch.Tensor:
    """(n, dim) fp32 angles of positions 0..n-1 on ``device`` (the frequencies computed on the CPU,
    so every device rotates by the same angles)."""
    freqs = torch.outer(torch.arange(n, device=device, dtype=torch.float32), rotary_inv_freq(dim).to(device))
    return torch.cat((freqs, freqs), dim=-1)


@functools.lru_cache(maxsize=16)
def rotary_table(dim: int, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (n, dim) fp32 on ``device``, built once per (dim, n, device) and shared by
    every layer and step that rotates n positions: a generation's steps build none and copy
    nothing to the device (a few frames x 32 floats each; 16 tables at most)."""
    with torch.inference_mode(False):  # a plain tensor, usable inside and outside inference mode
        return rotary_cos_sin(rotary_angles(dim, n, device))


Rotary = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]  # angles (n, r), or their (cos, sin)


def rotary_cos_sin(freqs: Rotary) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of rotary angles, computed once and shared by every tensor (and layer) they rotate."""
    return freqs if isinstance(freqs, tuple) else (freqs.cos(), freqs.sin())


def apply_rotary(t: torch.Tensor, freqs: Rotary) -> torch.Tensor:
    """Rotate the first ``r`` channels of ``t`` (..., n, d) by angles (n, r) (or their (cos, sin)), in fp32.

    Halves convention (GPT-NeoX / official ``rotate_half``): channel i pairs with i + r/2,
    ``rot * cos + cat(-x2, x1) * sin``; channels past r pass through unrotated. Each half is
    computed directly (no rotate_half copy, one concatenation): the same products and sums.
    """
    cos, sin = rotary_cos_sin(freqs)
    r, h = cos.shape[-1], cos.shape[-1] // 2
    x = t.float()
    x1, x2 = x[..., :h], x[..., h:r]
    first = torch.addcmul(x1 * cos[..., :h], x2, -sin[..., :h])  # x1 cos + (-x2) sin
    second = torch.addcmul(x2 * cos[..., h:], x1, sin[..., h:])  # x2 cos + x1 sin
    return torch.cat((first, second, x[..., r:]), dim=-1).to(t.dtype)


# --------------------------------------------------------------------------- attention kernel


def band_mask(n_q: int, n_k: int, window: tuple[int, int], q_offset: int = 0, k_offset: int = 0,
              device=None) -> torch.Tensor:
    """(n_q, n_k) bool: key j is visible from query i iff ``-left <= j - i <= right`` (global indices)."""
    qi = torch.arange(n_q, device=device) + q_offset
    kj = torch.arange(n_k, device=device) + k_offset
    delta = kj[None, :] - qi[:, None]
    return (delta >= -window[0]) & (delta <= window[1])


FLASH_MIN_VERSION = (2, 3)  # flash-attn's window_size (local attention) arrived in 2.3
FLASH_MIN_CAPABILITY = (8, 0)  # flash-attn 2 runs on Ampere (sm80) and newer


def flash_kernel(q: torch.Tensor, name: str):
    """flash-attn's ``name`` kernel ("flash_attn_func" / "flash_attn_varlen_func") when it can run
    ``q``: a CUDA tensor on an sm80+ card with flash-attn >= 2.3 installed; else None (the caller
    falls back to torch's sdpa). Never raises: a missing or unsupported kernel is a fallback."""
    if not q.is_cuda:
        return None
    module = _flash_module(q.device.index if q.device.index is not None else torch.cuda.current_device())
    return getattr(module, name, None) if module is not None else None


@functools.lru_cache(maxsize=None)
def _flash_module(device_index: int):
    if torch.cuda.get_device_capability(device_index) < FLASH_MIN_CAPABILITY:
        return None
    try:  # optional CUDA kernel, imported lazily so CPU installs never need it
        import flash_attn
    except ImportError:
        return None
    version = tuple(int(p) for p in re.findall(r"\d+", flash_attn.__version__)[:2])
    return flash_attn if version >= FLASH_MIN_VERSION else None


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, mask: Optional[torch.Tensor] = None,
           window: Optional[tuple[int, int]] = None, window_block: int = 256) -> torch.Tensor:
    """Softmax attention, (B, H, Nq, D) x (B, H, Nk, D) -> (B, H, Nq, D); scale 1/sqrt(D).

    mask: bool, True = attend, or a float bias added to the logits; broadcastable to
        (B, H, Nq, Nk) (e.g. (B, 1, 1, Nk) for key padding). Every query must see at least one key.
        A bias in a wider dtype than q (fp32 with bf16 q) makes the attention run in that dtype.
    window: (left, right) local band on self-attention: query i sees keys i-left..i+right
        (flash-attn's ``window_size``; the official SAME-L path). Computed in blocks of
        ``window_block`` queries with their key halo, so no (N, N) mask is built.
    """
    if window is not None:
        if mask is not None:
            raise ValueError("attend: window and mask together are not supported")
        flash = flash_kernel(q, "flash_attn_func") if q.dtype in (torch.float16, torch.bfloat16) else None
        if flash is not None:
            out = flash(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), window_size=window)
            return out.transpose(1, 2)
        return _windowed_sdpa(q, k, v, window, window_block)
    if mask is not None and mask.is_floating_point() and mask.dtype.itemsize > q.dtype.itemsize:
        # A bias kept in fp32 on purpose (the DiT's log-count bias): run this attention in its
        # dtype, as kernels may round the bias to q's (cross-attention, a few keys: cheap).
        out = F.scaled_dot_product_attention(q.to(mask.dtype), k.to(mask.dtype), v.to(mask.dtype), attn_mask=mask)
        return out.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@dataclass(frozen=True)
class Padding:
    """Which frames of a padded batch are real, worked out once (``Padding.of``) and shared by
    every self-attention call of every step: computed per call it would cost host syncs on a
    GPU, 2 x depth x steps of them.

    valid: (B, N) bool, True = real frame. all_valid: no frame is padding (nothing to mask).
    packed: flash-attn varlen's (index of the real frames in the flattened batch, cu_seqlens
        (B + 1,) int32, longest sequence); made where that kernel can run (``varlen``: by
        default for CUDA tensors), else None.
    """

    valid: torch.Tensor
    all_valid: bool
    packed: Optional[tuple[torch.Tensor, torch.Tensor, int]] = None

    @classmethod
    def of(cls, valid: torch.Tensor, varlen: Optional[bool] = None) -> "Padding":
        valid = valid.bool()
        packed = None
        if valid.is_cuda if varlen is None else varlen:
            lengths = valid.sum(1, dtype=torch.int32)
            cu_seqlens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
            packed = (valid.flatten().nonzero().squeeze(1), cu_seqlens, int(lengths.max()))
        return cls(valid, bool(valid.all()), packed)


def attend_padded(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, padding: Padding, *,
                  mask: Optional[torch.Tensor] = None, window: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """Self-attention over a padded batch (B, H, N, D) whose real frames ``padding`` says.

    Does what the official ``Attention.apply_attn`` does on each device (the DiT's variable
    length; the two differ on the valid frames too):
    - CUDA with flash-attn installed (the path the models were trained on): its varlen kernel
      over the valid frames only, in fp16 when given fp32 as the official code does; padded
      frames neither attend nor are attended and come out as 0.
    - otherwise (CPU; the golden fixtures): the official fallback ZEROES THE VALUES of padded
      frames; their keys still take softmax weight, so the valid frames see them.
    """
    kernel = flash_kernel(q, "flash_attn_varlen_func") if mask is None and window is None else None
    if kernel is None or padding.packed is None:
        if not padding.all_valid:  # nothing to zero: skip a pass over v (exact)
            v = v * padding.valid[:, None, :, None]
        return attend(q, k, v, mask=mask, window=window)
    B, H, N, D = q.shape
    index, cu_seqlens, longest = padding.packed  # packed position -> b * N + n
    half = q.dtype if q.dtype in (torch.float16, torch.bfloat16) else torch.float16
    pack = lambda t: t.transpose(1, 2).reshape(B * N, H, D)[index].to(half)  # (N_valid, H, D)
    packed = kernel(pack(q), pack(k), pack(v), cu_seqlens, cu_seqlens, longest, longest)
    out = packed.new_zeros(B * N, H, D).index_copy_(0, index, packed)
    return out.view(B, N, H, D).transpose(1, 2).to(q.dtype)


def _windowed_sdpa(q, k, v, window: tuple[int, int], block: int) -> torch.Tensor:
    """Band attention as one batched sdpa over query blocks and their key halos.

    Query block b covers [b*block, (b+1)*block); its keys are [b*block - left, (b+1)*block + right),
    zero-padded at the ends and masked out there; the band inside is the same mask for every block.
    """
    B, H, N, D = q.shape
    left, right = window
    block = min(block, N)
    nb = math.ceil(N / block)
    pad_q = nb * block - N
    span = block + left + right
    q = F.pad(q, (0, 0, 0, pad_q)).view(B, H, nb, block, D)
    k = F.pad(k, (0, 0, left, pad_q + right)).unfold(2, span, block).transpose(-1, -2)  # (B, H, nb, span, D)
    v = F.pad(v, (0, 0, left, pad_q + right)).unfold(2, span, block).transpose(-1, -2)
    key_pos = torch.arange(nb, device=q.device)[:, None] * block - left + torch.arange(span, device=q.device)
    valid = (key_pos >= 0) & (key_pos < N)  # (nb, span): keys that exist
    band = band_mask(block, span, window, q_offset=left, device=q.device)  # (block, span), same in every block
    mask = band[None] & valid[:, None, :]  # (nb, block, span)
    # 4-D for sdpa's fused kernels (5-D falls back to the math path with an fp32 upcast): the
    # batch and heads fold into one dimension, the blocks stand as heads, the mask broadcasts.
    fold = lambda t: t.reshape(B * H, nb, t.shape[-2], D)  # noqa: E731 (q: a view; k, v: a copy)
    out = F.scaled_dot_product_attention(fold(q), fold(k), fold(v), attn_mask=mask)
    return out.reshape(B, H, nb * block, D)[:, :, :N]


# --------------------------------------------------------------------------- modules


class Attention(nn.Module):
    """Multi-head self- or cross-attention with optional qk-norm, rotary and differential heads.

    Self-attention keys: ``to_qkv`` (dim -> 3 dim, or 5 dim = q, k, v, q_diff, k_diff when
    ``differential``). Cross-attention (``dim_context`` given): ``to_q`` (dim -> dim or 2 dim)
    and ``to_kv`` (dim_context -> 2 or 3 dim_context = k, [k_diff,] v). ``to_out`` merges heads.
    Differential attention (Ye et al. 2024, as the official code does it: no lambda):
    ``attn(q, k, v) - attn(q_diff, k_diff, v)``.
    """

    def __init__(self, dim: int, dim_heads: int, *, dim_context: Optional[int] = None,
                 qk_norm: Optional[Literal["rms", "dyt"]] = None, qk_norm_eps: float = 1e-6,
                 differential: bool = False):
        super().__init__()
        self.dim_heads = dim_heads
        self.differential = differential
        n = 2 if differential else 1  # query/key sets
        if dim_context is None:
            self.to_qkv = nn.Linear(dim, dim * (2 * n + 1), bias=False)
        else:
            self.to_q = nn.Linear(dim, dim * n, bias=False)
            self.to_kv = nn.Linear(dim_context, dim_context * (n + 1), bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        if qk_norm is not None:
            self.q_norm = make_norm(qk_norm, dim_heads, qk_norm_eps)
            self.k_norm = make_norm(qk_norm, dim_heads, qk_norm_eps)
        self.qk_norm = qk_norm

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (B, N, H*D) -> (B, N, H, D), a view
        return t.unflatten(-1, (-1, self.dim_heads))

    def _grouped(self, ks, v, n_heads: int):
        """Fewer context heads than query heads: each serves a group of queries ((B, N, H, D))."""
        group = n_heads // v.shape[2]
        if group == 1:
            return ks, v
        return [k.repeat_interleave(group, dim=2) for k in ks], v.repeat_interleave(group, dim=2)

    def _project(self, x, context):
        """-> qs, ks (one or two sets, each (B, N, H, D)) and v (B, Nk, H, D)."""
        if context is None:
            parts = self.to_qkv(x).chunk(5 if self.differential else 3, dim=-1)
            q, k, v = parts[:3]
            qs, ks = ((q, parts[3]), (k, parts[4])) if self.differential else ((q,), (k,))
        else:
            qs = self.to_q(x).chunk(2 if self.differential else 1, dim=-1)
            kv = self.to_kv(context).chunk(3 if self.differential else 2, dim=-1)
            ks, v = kv[:-1], kv[-1]
        qs, ks, v = [self._heads(t) for t in qs], [self._heads(t) for t in ks], self._heads(v)
        ks, v = self._grouped(ks, v, qs[0].shape[2])
        return qs, ks, v

    def context_kv(self, context: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Cross-attention keys (qk-normed; one set, two when differential) and values of a
        context (B, Nk, dim_context), each (B, H, Nk, D) contiguous. They depend on the context
        alone, so a caller may compute them once and pass them as ``kv`` to every call (the DiT
        does, once per generation)."""
        kv = self.to_kv(context).chunk(3 if self.differential else 2, dim=-1)
        ks, v = [self._heads(k) for k in kv[:-1]], self._heads(kv[-1])
        if self.qk_norm is not None:
            ks = [self.k_norm(k) for k in ks]
        ks, v = self._grouped(ks, v, self.to_q.out_features // len(ks) // self.dim_heads)
        return tuple(k.transpose(1, 2).contiguous() for k in ks), v.transpose(1, 2).contiguous()

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None, *,
                freqs: Optional[Rotary] = None, padding: Optional[Padding] = None,
                mask: Optional[torch.Tensor] = None, window: Optional[tuple[int, int]] = None,
                kv: Optional[tuple[tuple[torch.Tensor, ...], torch.Tensor]] = None) -> torch.Tensor:
        """x (B, N, dim), context (B, Nk, dim_context) -> (B, N, dim).

        freqs: rotary angles (N, r), or ``rotary_cos_sin`` of them, applied to queries and keys
            (self-attention).
        padding: the real frames of a padded batch, for self-attention over it: see
            ``attend_padded`` (official semantics per device). For true masking on every device
            pass ``mask`` instead.
        mask / window: passed to ``attend``.
        kv: cross-attention only, ``context_kv(context)`` computed earlier, instead of ``context``.

        The qk-norms run on the (B, N, H, D) views of the projections (no head-major copy
        first); rotary then writes contiguous (B, H, N, D) queries and keys for the kernel.
        """
        if kv is not None:
            if freqs is not None:
                raise ValueError("Attention: rotary angles are for self-attention, kv for cross-attention")
            qs = [self._heads(q) for q in self.to_q(x).chunk(2 if self.differential else 1, dim=-1)]
            ks, v = kv  # (B, H, Nk, D)
        else:
            qs, ks, v = self._project(x, context)
            if self.qk_norm is not None:
                ks = [self.k_norm(k) for k in ks]
            ks, v = [k.transpose(1, 2) for k in ks], v.transpose(1, 2)
        if self.qk_norm is not None:
            qs = [self.q_norm(q) for q in qs]
        qs = [q.transpose(1, 2) for q in qs]  # (B, H, N, D) views
        if freqs is not None:  # rotary writes head-major copies: the layout sdpa runs fastest on
            freqs = rotary_cos_sin(freqs)
            qs = [apply_rotary(q, freqs).to(v.dtype) for q in qs]
            ks = [apply_rotary(k, freqs).to(v.dtype) for k in ks]
        if padding is not None:
            run = lambda q, k: attend_padded(q, k, v, padding, mask=mask, window=window)
        else:
            run = lambda q, k: attend(q, k, v, mask=mask, window=window)
        out = run(qs[0], ks[0])
        if self.differential:
            out = out - run(qs[1], ks[1])
        return self.to_out(out.transpose(1, 2).flatten(2))  # (B, N, H*D) -> (B, N, dim)


class Sin(nn.Module):
    """``sin(pi x)``: the gate activation of SAME's sinusoidal feed-forward blocks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(math.pi * x)


class GLU(nn.Module):
    """``proj`` to 2 x dim_out, then ``value * act(gate)``."""

    def __init__(self, dim_in: int, dim_out: int, activation: nn.Module):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)
        self.act = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return self.act(gate).mul_(value)  # = value * act(gate), in the activation's buffer


class FeedForward(nn.Module):
    """SwiGLU feed-forward (``sinusoidal``: sin(pi x) gate instead of SiLU); inner width dim*mult.

    ``ff`` is a Sequential so the keys are the checkpoint's ``ff.ff.0.proj`` / ``ff.ff.2``; the
    Identity at index 1 stands where the official code keeps a no-op rearrange.
    """

    def __init__(self, dim: int, mult: float = 4, sinusoidal: bool = False):
        super().__init__()
        inner = int(dim * mult)
        act = Sin() if sinusoidal else nn.SiLU()
        self.ff = nn.Sequential(GLU(dim, inner, act), nn.Identity(), nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)
