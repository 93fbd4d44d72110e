"""Shared transformer primitives: every fast path equals the plain computation."""

import pytest
import torch
import torch.nn.functional as F

from models.transformer import (Attention, FeedForward, Padding, RotaryEmbedding, apply_rotary, attend, band_mask,
                                rotary_cos_sin)


def _qkv(n, seed=0, b=2, h=3, d=8):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g) for _ in range(3)]


@pytest.mark.parametrize("n, window, block", [(100, (17, 17), 32), (35, (1, 2), 256), (5, (17, 17), 256),
                                               (64, (0, 3), 16), (300, (34, 34), 64)])
def test_windowed_attention_equals_band_masked_sdpa(n, window, block):
    q, k, v = _qkv(n)
    plain = F.scaled_dot_product_attention(q, k, v, attn_mask=band_mask(n, n, window))
    fast = attend(q, k, v, window=window, window_block=block)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-6)


def test_windowed_attention_hands_sdpa_4d_tensors_and_keeps_bf16(monkeypatch):
    """Fused sdpa kernels take 4-D tensors only; 5-D ones fall back to the math path with an fp32
    upcast (the SAME-L path on a GPU). The band runs as one 4-D call, in bf16, near fp32's result."""
    shapes = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        shapes.append((q.dim(), k.dim(), v.dim(), q.dtype))
        return sdpa(q, k, v, **kw)

    q, k, v = _qkv(300)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=band_mask(300, 300, (34, 34)))
    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    fast = attend(*(t.bfloat16() for t in (q, k, v)), window=(34, 34), window_block=64)
    assert shapes == [(4, 4, 4, torch.bfloat16)]
    torch.testing.assert_close(fast.float(), reference, rtol=0, atol=3e-2)


def test_band_mask_semantics():
    m = band_mask(4, 4, (1, 0))  # each query sees itself and one key to its left
    assert m.tolist() == [[True, False, False, False], [True, True, False, False],
                          [False, True, True, False], [False, False, True, True]]


def test_rotary_is_relative():
    """<R(m) q, R(n) k> depends on m - n only; unrotated channels pass through."""
    rope = RotaryEmbedding(8)
    freqs = rope(20)
    q, k = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
    qs, ks = apply_rotary(q.expand(20, 16), freqs), apply_rotary(k.expand(20, 16), freqs)
    assert torch.equal(qs[:, 8:], q[8:].expand(20, 8))
    dots = qs @ ks.T
    torch.testing.assert_close(torch.diagonal(dots, 3), torch.full((17,), dots[0, 3].item()), rtol=0, atol=1e-5)


def test_differential_self_attention_is_a_difference_of_two_attentions():
    torch.manual_seed(0)
    attn = Attention(16, 8, differential=True, qk_norm="rms")
    x = torch.randn(2, 7, 16)
    q, k, v, q2, k2 = attn.to_qkv(x).chunk(5, dim=-1)
    heads = lambda t: attn.q_norm(t.unflatten(-1, (2, 8)).transpose(1, 2))  # noqa: E731 (q/k norms are equal at init)
    v = v.unflatten(-1, (2, 8)).transpose(1, 2)
    out = F.scaled_dot_product_attention(heads(q), heads(k), v) - F.scaled_dot_product_attention(heads(q2), heads(k2), v)
    torch.testing.assert_close(attn(x), attn.to_out(out.transpose(1, 2).flatten(2)))


def test_padding_mask_zeroes_values_as_the_official_cpu_path():
    torch.manual_seed(0)
    attn = Attention(16, 8)
    x = torch.randn(1, 6, 16)
    keep = torch.tensor([[True, True, True, True, False, False]])
    q, k, v = [t.unflatten(-1, (2, 8)).transpose(1, 2) for t in attn.to_qkv(x).chunk(3, dim=-1)]
    out = F.scaled_dot_product_attention(q, k, v * keep[:, None, :, None])
    torch.testing.assert_close(attn(x, padding=Padding.of(keep)), attn.to_out(out.transpose(1, 2).flatten(2)))


def test_cross_attention_shapes():
    attn = Attention(16, 8, dim_context=24, differential=True)
    assert attn.to_q.weight.shape == (32, 16) and attn.to_kv.weight.shape == (72, 24)
    assert attn(torch.randn(2, 5, 16), torch.randn(2, 9, 24)).shape == (2, 5, 16)


def _rotate_half_reference(t, freqs):
    """The official formula, written plainly: rot * cos + cat(-x2, x1) * sin, rest unrotated."""
    r = freqs.shape[-1]
    rot, rest = t[..., :r], t[..., r:]
    x1, x2 = rot.chunk(2, dim=-1)
    return torch.cat((rot * freqs.cos() + torch.cat((-x2, x1), dim=-1) * freqs.sin(), rest), dim=-1)


def test_rotary_halves_equal_rotate_half_in_both_layouts():
    g = torch.Generator().manual_seed(3)
    freqs = RotaryEmbedding(16).angles(40) * 37.0  # large angles, as at late positions
    t = torch.randn(2, 4, 40, 24, generator=g)  # (B, H, N, D), 16 of 24 channels rotated
    plain = _rotate_half_reference(t, freqs)
    torch.testing.assert_close(apply_rotary(t, freqs), plain, rtol=0, atol=1e-6)
    by_frame = apply_rotary(t.transpose(1, 2), freqs[:, None])  # (B, N, H, D) with (N, 1, r)
    torch.testing.assert_close(by_frame.transpose(1, 2), plain, rtol=0, atol=1e-6)
    assert torch.equal(apply_rotary(t, rotary_cos_sin(freqs)), apply_rotary(t, freqs))  # cos/sin shared


@pytest.mark.parametrize("valid", [6, 4], ids=["all-valid", "padded"])
def test_self_attention_with_norms_rotary_and_padding_equals_the_head_major_formula(valid):
    """Norms and rotary on (B, N, H, D) views, the kernel on transposed views, the padding
    pass skipped when every frame is valid: same numbers as the plain head-major path."""
    torch.manual_seed(0)
    attn = Attention(32, 8, qk_norm="rms")
    with torch.no_grad():
        attn.q_norm.gamma.uniform_(0.5, 1.5), attn.k_norm.gamma.uniform_(0.5, 1.5)
    x, freqs = torch.randn(2, 6, 32), RotaryEmbedding(8).angles(6)
    keep = torch.arange(6)[None].expand(2, -1) < valid
    q, k, v = [t.unflatten(-1, (4, 8)).transpose(1, 2) for t in attn.to_qkv(x).chunk(3, dim=-1)]
    q, k = _rotate_half_reference(attn.q_norm(q), freqs), _rotate_half_reference(attn.k_norm(k), freqs)
    out = F.scaled_dot_product_attention(q, k, v * keep[:, None, :, None])
    plain = attn.to_out(out.transpose(1, 2).flatten(2))
    torch.testing.assert_close(attn(x, freqs=freqs, padding=Padding.of(keep)), plain, rtol=1e-5, atol=1e-6)


def test_cached_context_kv_with_grouped_heads_equals_projecting_every_call():
    torch.manual_seed(0)
    attn = Attention(16, 4, dim_context=8, qk_norm="rms", differential=True)  # 4 query heads, 2 context heads
    x, context = torch.randn(2, 5, 16), torch.randn(2, 7, 8)
    ks, v = attn.context_kv(context)
    assert v.shape == (2, 4, 7, 4) and v.is_contiguous() and all(k.shape == (2, 4, 7, 4) for k in ks)
    torch.testing.assert_close(attn(x, kv=(ks, v)), attn(x, context), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="rotary"):
        attn(x, kv=(ks, v), freqs=RotaryEmbedding(4)(5))


@pytest.mark.parametrize("sinusoidal", [False, True])
def test_glu_in_place_gate_equals_value_times_activation(sinusoidal):
    ff = FeedForward(8, mult=2, sinusoidal=sinusoidal)
    x = torch.randn(3, 5, 8)
    value, gate = ff.ff[0].proj(x).chunk(2, dim=-1)
    act = torch.sin(torch.pi * gate) if sinusoidal else F.silu(gate)
    assert torch.equal(ff.ff[0](x), value * act)
