"""Shared transformer primitives: every fast path equals the plain computation."""

import pytest
import torch
import torch.nn.functional as F

from models.transformer import Attention, RotaryEmbedding, apply_rotary, attend, band_mask


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
    torch.testing.assert_close(attn(x, padding_mask=keep), attn.to_out(out.transpose(1, 2).flatten(2)))


def test_cross_attention_shapes():
    attn = Attention(16, 8, dim_context=24, differential=True)
    assert attn.to_q.weight.shape == (32, 16) and attn.to_kv.weight.shape == (72, 24)
    assert attn(torch.randn(2, 5, 16), torch.randn(2, 9, 24)).shape == (2, 5, 16)
