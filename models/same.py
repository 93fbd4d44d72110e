"""SAME, the Stable Audio 3 autoencoder: stereo 44.1 kHz audio <-> latents at 1/4096 the rate.

Follows the official ``stable_audio_3/models/autoencoders.py`` (SAMEEncoder, SAMEDecoder,
TransformerResamplingBlock, AudioAutoencoder.encode_audio/decode_audio), ``bottleneck.py``
(SoftNormBottleneck) and ``pretransforms.py`` (PatchedPretransform); the code is ours.

    audio (B, 2, N) --patch 256--> (B, 512, N/256) --encoder--> (B, latent_dim, N/4096)
    --softnorm--> latents;  decode runs the mirror image.

A Transformer Resampling Block turns ``stride`` input tokens into one output token (encoder)
or one into ``stride`` (decoder): each group of inputs is followed by learned ``new_tokens``,
transformer layers mix the sequence, and only the new tokens are kept. Attention is local:
SAME-S attends within chunks (alternating half-chunk shifts), SAME-L within a sliding window.

Randomness: the official decoder adds noise at inference (softnorm decode, and ``mask_noise``
on the decoder's new tokens). Here it is off unless a ``noise`` source (models.noise) is
given; it is called in the official draw order, so recorded draws can be replayed.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.config import SameCoderConfig, SameConfig, SoftNormConfig
from models.noise import NoiseSource
from models.transformer import Attention, FeedForward, RotaryEmbedding, make_norm

def _pad_to_multiple(x: torch.Tensor, multiple: int, dim: int) -> torch.Tensor:
    """Zero-pad ``x`` at the end of ``dim`` to a multiple of ``multiple``."""
    pad = -x.shape[dim] % multiple
    if pad == 0:
        return x
    shape = list(x.shape)
    shape[dim] = pad
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


class WNConv1d(nn.Module):
    """Weight-normalised Conv1d (``weight = g * v / |v|``, norm per output channel), 'same' padding.

    Keys ``weight_g``, ``weight_v``, ``bias`` as torch.nn.utils.weight_norm stores them.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int):
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(c_out, 1, 1))
        self.weight_v = nn.Parameter(torch.randn(c_out, c_in, kernel_size) / c_in ** 0.5)
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, T) -> (B, c_out, T)
        v = self.weight_v
        weight = v * (self.weight_g / v.norm(dim=(1, 2), keepdim=True))
        return F.conv1d(x, weight, self.bias, padding="same")


class SameLayer(nn.Module):
    """Pre-norm transformer layer of SAME: differential attention with RoPE per (chunk) sequence,
    DyT (or RMS) norms, SwiGLU or sin feed-forward (mult 3)."""

    def __init__(self, dim: int, cfg: SameCoderConfig, sinusoidal: bool):
        super().__init__()
        dim_heads = min(cfg.dim_heads, dim)
        norm = "dyt" if cfg.dyt else "rms"
        self.pre_norm = make_norm(norm, dim, eps=1e-3)
        self.self_attn = Attention(dim, dim_heads, qk_norm=norm, qk_norm_eps=1e-3, differential=cfg.differential)
        self.ff_norm = make_norm(norm, dim, eps=1e-3)
        self.ff = FeedForward(dim, mult=3, sinusoidal=sinusoidal)
        self.rope = RotaryEmbedding(dim_heads // 2)  # rotates half of each head

    def forward(self, x: torch.Tensor, window: Optional[tuple[int, int]] = None) -> torch.Tensor:
        freqs = self.rope(x.shape[1], x.device)  # (cos, sin), cached; positions restart in every chunk
        x = x + self.self_attn(self.pre_norm(x), freqs=freqs, window=window)
        return x + self.ff(self.ff_norm(x))


class ResamplingBlock(nn.Module):
    """Transformer Resampling Block: (B, c_in, T) -> (B, c_out, T/stride) (encoder)
    or (B, c_in, T) -> (B, c_out, T*stride) (decoder)."""

    def __init__(self, c_in: int, c_out: int, stride: int, depth: int, cfg: SameCoderConfig,
                 decoder: bool, sinusoidal_blocks: int = 0):
        super().__init__()
        self.decoder = decoder
        self.stride = stride
        self.seg_in, self.seg_out = (1, stride) if decoder else (stride, 1)
        self.sub = stride + 1  # tokens per output frame group: inputs + new tokens
        self.chunk_size = cfg.chunk_size
        self.midpoint_shift = cfg.chunk_midpoint_shift
        self.window = None if cfg.sliding_window is None else tuple(w * self.sub for w in cfg.sliding_window)
        self.mask_noise = cfg.mask_noise
        if self.window is None and cfg.chunk_size % stride:
            raise ValueError(f"chunk_size {cfg.chunk_size} is not a multiple of stride {stride}")
        dim = c_in if decoder else c_out  # the transformer runs on the wider side
        n_new = 1 if cfg.variable_stride else self.seg_out
        self.new_tokens = nn.Parameter(1e-5 * torch.randn(1, n_new, dim))
        kernel = 3 if cfg.conv_mapping else 1
        self.mapping = WNConv1d(c_in, c_out, kernel) if c_in != c_out else nn.Identity()
        # official rule: layer i is sinusoidal iff depth - i < sinusoidal_blocks
        self.transformers = nn.ModuleList(
            SameLayer(dim, cfg, sinusoidal=(depth - i) < sinusoidal_blocks) for i in range(depth))

    def forward(self, x: torch.Tensor, noise: Optional[NoiseSource] = None) -> torch.Tensor:
        B = x.shape[0]
        if not self.decoder:  # pad before mapping, so padding goes through the mapping too
            x = self.mapping(_pad_to_multiple(x, self.stride if self.window else self.chunk_size, -1))
        x = x.transpose(1, 2)  # (B, T, D)
        if self.decoder:
            x = _pad_to_multiple(x, 1 if self.window else self.chunk_size // self.stride, 1)
        x = x.reshape(-1, self.seg_in, x.shape[-1])  # (B*n, seg_in, D)
        new = self.new_tokens.expand(x.shape[0], self.seg_out, -1)
        if self.mask_noise > 0 and noise is not None:  # official decoder: randn_like(new tokens)
            new = new + noise(new.shape).to(new) * self.mask_noise
        x = torch.cat([x, new], dim=1).reshape(B, -1, x.shape[-1])  # (B, n*sub, D)
        x = self._transform(x)
        x = x.reshape(B, -1, self.sub, x.shape[-1])[:, :, -self.seg_out:]  # keep the new tokens
        x = x.flatten(1, 2).transpose(1, 2)  # (B, D, n*seg_out)
        return self.mapping(x) if self.decoder else x

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        """The transformer layers over (B, N, D) with the block's local attention pattern."""
        if self.window is not None:  # SAME-L: sliding window over the whole sequence
            for layer in self.transformers:
                x = layer(x, window=self.window)
            return x
        chunk = self.chunk_size + self.chunk_size // self.stride  # tokens per chunk
        if not self.midpoint_shift:
            return self._chunked(x, self.transformers, chunk)
        split = len(self.transformers) // 2
        shift = chunk // 2
        x = self._chunked(x, self.transformers[:split], chunk)
        # second half: chunks shifted by half a chunk; the ends are padded by repeating
        # their first/last half-chunk (whole sub-groups), as the official code does
        x = torch.cat([x[:, :shift], x, x[:, -shift:]], dim=1)
        x = self._chunked(x, self.transformers[split:], chunk)
        return x[:, shift:-shift]

    @staticmethod
    def _chunked(x: torch.Tensor, layers, chunk: int) -> torch.Tensor:
        B, N, D = x.shape
        x = x.reshape(B * (N // chunk), chunk, D)  # each chunk attends only to itself
        for layer in layers:
            x = layer(x)
        return x.reshape(B, N, D)


class SameEncoder(nn.Module):
    """Patched audio (B, in_channels, T) -> (B, latent_dim, T / prod(strides)).

    ``layers`` = [blocks..., Transpose, Linear, Transpose] in the checkpoint's numbering; the
    Transposes hold no weights and are kept as Identity so the Linear keeps its index.
    """

    def __init__(self, cfg: SameCoderConfig):
        super().__init__()
        dims = [cfg.in_channels] + [m * cfg.channels for m in cfg.c_mults]
        blocks = [ResamplingBlock(dims[i], dims[i + 1], cfg.strides[i], cfg.transformer_depths[i], cfg, decoder=False)
                  for i in range(len(cfg.c_mults))]
        self.layers = nn.ModuleList(blocks + [nn.Identity(), nn.Linear(dims[-1], cfg.latent_dim), nn.Identity()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers[:-3]:
            x = block(x)
        return self.layers[-2](x.transpose(1, 2)).transpose(1, 2)


class SameDecoder(nn.Module):
    """(B, latent_dim, L) -> patched audio (B, out_channels, L * prod(strides) [+ chunk padding]).

    ``layers`` = [Transpose, Linear, Transpose, blocks...] (Transposes kept as Identity).
    """

    def __init__(self, cfg: SameCoderConfig):
        super().__init__()
        dims = [cfg.out_channels] + [m * cfg.channels for m in cfg.c_mults]
        sin = cfg.sinusoidal_blocks or (0,) * len(cfg.c_mults)
        blocks = [ResamplingBlock(dims[i], dims[i - 1], cfg.strides[i - 1], cfg.transformer_depths[i - 1], cfg,
                                  decoder=True, sinusoidal_blocks=sin[i - 1])
                  for i in range(len(cfg.c_mults), 0, -1)]
        self.layers = nn.ModuleList([nn.Identity(), nn.Linear(cfg.latent_dim, dims[-1]), nn.Identity()] + blocks)

    def forward(self, x: torch.Tensor, noise: Optional[NoiseSource] = None) -> torch.Tensor:
        x = self.layers[1](x.transpose(1, 2)).transpose(1, 2)
        for block in self.layers[3:]:
            x = block(x, noise)
        return x


class SoftNormBottleneck(nn.Module):
    """Affine + fixed global scale: ``encode = (x * scaling_factor + bias) / running_std``."""

    def __init__(self, cfg: SoftNormConfig):
        super().__init__()
        if cfg.noise_augment_dim:
            raise NotImplementedError("softnorm noise_augment_dim > 0 (no released checkpoint uses it)")
        if not cfg.auto_scale:
            raise NotImplementedError("softnorm without auto_scale (no released checkpoint uses it)")
        self.scaling_factor = nn.Parameter(torch.ones(1, cfg.dim, 1))
        self.bias = nn.Parameter(torch.zeros(1, cfg.dim, 1))
        self.noise_scaling_factor = nn.Parameter(torch.ones(1, 0, 1))  # stored, width 0
        self.running_std = nn.Parameter(torch.ones(1), requires_grad=False)
        self.noise_regularize = cfg.noise_regularize

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.scaling_factor + self.bias) / self.running_std

    def decode(self, x: torch.Tensor, noise: Optional[NoiseSource] = None) -> torch.Tensor:
        x = x * self.running_std
        if self.noise_regularize and noise is not None:  # official eval-time regulariser, scale 1e-3
            x = x + noise(x.shape).to(x) * self.running_std * 1e-3
        return x


class Same(nn.Module):
    """The SAME autoencoder; ``state_dict`` keys are the standalone SAME checkpoint's."""

    def __init__(self, cfg: SameConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_size = cfg.patching.patch_size
        self.downsampling_ratio = cfg.downsampling_ratio
        self.encoder = SameEncoder(cfg.encoder)
        self.decoder = SameDecoder(cfg.decoder)
        self.bottleneck = SoftNormBottleneck(cfg.bottleneck)

    @property
    def dtype(self) -> torch.dtype:
        return self.bottleneck.scaling_factor.dtype

    # ----------------------------------------------------------------- whole signals

    @torch.no_grad()
    def encode(self, audio: torch.Tensor, pad: bool = True) -> torch.Tensor:
        """audio (B, channels, N) -> latents (B, latent_dim, L).

        pad: zero-pad N to a multiple of ``downsampling_ratio`` first, as the official pipeline
        does (``preprocess_audio_for_encoder``); then L = ceil(N / 4096) (SAME-L) or that rounded
        up to whole attention chunks (SAME-S). ``pad=False`` is the raw ``AudioAutoencoder.encode``.
        """
        x = audio.to(self.dtype)
        if pad:
            x = _pad_to_multiple(x, self.downsampling_ratio, -1)
        x = _pad_to_multiple(x, self.patch_size, -1)
        x = x.unflatten(-1, (-1, self.patch_size)).permute(0, 1, 3, 2).flatten(1, 2)  # (B, C*P, N/P)
        return self.bottleneck.encode(self.encoder(x))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, noise: Optional[NoiseSource] = None, trim: bool = True) -> torch.Tensor:
        """latents (B, latent_dim, L) -> audio (B, channels, L * 4096).

        noise: the official inference noise source (see the module doc); None = deterministic.
        trim: cut to L * 4096 samples; ``False`` keeps the official output, which for SAME-S
        runs on to the end of the last attention chunk (padding latents decoded too).
        """
        x = self.bottleneck.decode(latents.to(self.dtype), noise)
        x = self.decoder(x, noise)  # (B, C*P, T)
        audio = x.unflatten(1, (-1, self.patch_size)).permute(0, 1, 3, 2).flatten(2)  # (B, C, T*P)
        return audio[..., : latents.shape[-1] * self.downsampling_ratio] if trim else audio

    # ----------------------------------------------------------------- part of a track

    @torch.no_grad()
    def encode_span(self, audio: torch.Tensor, f0: int, f1: int, window: Optional[int] = None) -> torch.Tensor:
        """Latent frames [f0, f1) of a whole track, encoding only the audio they depend on.

        audio (B, channels, N): the whole track (any device: only the pieces needed move to the
        weights' device); returns (B, latent_dim, f1 - f0), equal to
        ``encode(audio)[..., f0:f1]`` up to fp32 round-off (see ``encode_margins``: the span
        encoded is [f0, f1) widened by the margins and aligned to the attention chunks).
        ``window``: encode at most that many frames (plus margins) at a time, bounding memory;
        unlike ``encode_chunked`` the result is still the whole-track encoding.
        """
        n_frames = -(-audio.shape[-1] // self.downsampling_ratio)
        if not 0 <= f0 < f1 <= n_frames:
            raise ValueError(f"encode_span: frames [{f0}, {f1}) are not inside the track's {n_frames}")
        step = window or (f1 - f0)
        parts = [self._encode_piece(audio, a, min(a + step, f1), n_frames) for a in range(f0, f1, step)]
        return torch.cat(parts, dim=-1)

    def _encode_piece(self, audio: torch.Tensor, f0: int, f1: int, n_frames: int) -> torch.Tensor:
        period, left, right = encode_margins(self.cfg.encoder)
        a = max(0, (f0 - left) // period * period)
        b = -(-(f1 + right) // period) * period
        r = self.downsampling_ratio
        end = audio.shape[-1] if b >= n_frames else b * r  # the track's end: padded as the whole track is
        piece = audio[..., a * r:end].to(self.bottleneck.scaling_factor.device)
        return self.encode(piece)[..., f0 - a:f1 - a]

    # ----------------------------------------------------------------- chunked (bounded memory)

    @torch.no_grad()
    def encode_chunked(self, audio: torch.Tensor, chunk_size: int = 128, overlap: int = 32,
                       pad: bool = True) -> torch.Tensor:
        """``encode`` in windows of ``chunk_size`` latents overlapping by ``overlap`` (official
        ``encode_audio(chunked=True)``): each window keeps its middle, the last one is anchored
        to the end. L = N // 4096 (after padding). Shorter audio is encoded whole."""
        r = self.downsampling_ratio
        x = _pad_to_multiple(audio, r, -1) if pad else audio
        if x.shape[-1] < chunk_size * r:
            return self.encode(x, pad=False)
        starts = _chunk_starts(x.shape[-1], chunk_size * r, overlap * r)  # in samples
        parts = [self.encode(x[..., s:s + chunk_size * r], pad=False) for s in starts]
        return _stitch(parts, [s // r for s in starts], chunk_size, overlap, x.shape[-1] // r, 1)

    @torch.no_grad()
    def decode_chunked(self, latents: torch.Tensor, chunk_size: int = 128, overlap: int = 32,
                       noise: Optional[NoiseSource] = None, trim: bool = True) -> torch.Tensor:
        """``decode`` in windows of ``chunk_size`` latents (official ``decode_audio(chunked=True)``);
        peak memory is that of one window. Fewer than ``chunk_size`` latents decode whole."""
        L = latents.shape[-1]
        if L < chunk_size:
            return self.decode(latents, noise, trim)
        starts = _chunk_starts(L, chunk_size, overlap)
        parts = [self.decode(latents[..., s:s + chunk_size], noise) for s in starts]
        return _stitch(parts, starts, chunk_size, overlap, L, self.downsampling_ratio)


def encode_margins(cfg: SameCoderConfig) -> tuple[int, int, int]:
    """(period, left, right) in latent frames: encoding audio from frame ``a`` to ``b`` gives the
    whole track's latents on [a + left, b - right) when ``a`` and ``b`` are multiples of
    ``period`` (or the track's start and end: there the whole track is cut the same way).

    Derived from the encoder's one resampling block (every released SAME has one), whose
    attention is local. A cut at a span edge changes some tokens next to it; we follow how far
    that reaches, in output frames (one per ``stride`` inputs; ``sub = stride + 1`` tokens each):
    - a 3-tap channel mapping (``conv_mapping``) sees zeros instead of the neighbour: the first
      (last) frame's input, ``conv`` = 1 frame (0 with a 1x1 mapping);
    - SAME-S, attention within chunks of ``c = chunk_size / stride`` frames: the period is c,
      so the span's chunks are the whole track's. A changed frame changes its whole chunk
      (``conv`` rounded up to chunks); with ``chunk_midpoint_shift`` the second half of the
      layers attends within chunks shifted by c/2, and the span's ends are padded by repeating
      its first/last half chunk instead of the real neighbours: c/2 more frames each side.
      Released SAME-S: c = 32 / 16 = 2, no conv: margins of 1 frame, period 2.
    - SAME-L, a sliding window of (wl, wr) frames (wl * sub tokens) in each of ``depth`` layers
      over the whole sequence: a query at most wl frames after the cut lost keys, and each
      layer carries that wl frames further in (wr at the right end): depth * wl frames left,
      depth * wr right, period 1 (rotary positions differ by a constant offset, which attention
      does not see). Released SAME-L: 12 layers, window (1, 1): margins of 12 frames.
    """
    if len(cfg.strides) != 1:
        raise NotImplementedError("encode_margins is derived for SAME encoders with one resampling block")
    stride, depth = cfg.strides[0], cfg.transformer_depths[0]
    conv = 1 if cfg.conv_mapping else 0
    if cfg.sliding_window is not None:
        wl, wr = cfg.sliding_window
        return 1, conv + depth * wl, conv + depth * wr
    c = cfg.chunk_size // stride
    changed = -(-conv // c) * c + (c // 2 if cfg.chunk_midpoint_shift else 0)
    return c, changed, changed


def _chunk_starts(total: int, chunk_size: int, overlap: int) -> list[int]:
    """Window starts (in latents) every ``chunk_size - overlap``; the last window ends at ``total``."""
    starts = list(range(0, total - chunk_size + 1, chunk_size - overlap))
    if starts[-1] != total - chunk_size:
        starts.append(total - chunk_size)
    return starts


def _stitch(parts: list[torch.Tensor], starts: list[int], chunk_size: int, overlap: int,
            total: int, scale: int) -> torch.Tensor:
    """Join windows: inner edges lose half the overlap; ``scale`` = output samples per latent."""
    out = parts[0].new_zeros(*parts[0].shape[:-1], total * scale)
    half, size = (overlap // 2) * scale, chunk_size * scale
    for i, (s, part) in enumerate(zip(starts, parts)):
        last = i == len(parts) - 1
        at = (total - chunk_size) * scale if last else s * scale
        left = 0 if i == 0 else half
        right = size if last else size - half
        out[..., at + left:at + right] = part[..., left:right]
    return out
