"""models/dit.py and models/guidance.py: official parity, the exact-math savings, full-size layout."""


import pytest
import torch

from models.dit import collapse_rows
from models.guidance import apg_project, guide, guided, null_context, prepare_guided
from models.parity.core import Fixture
from models.parity.dit import assemble_context, load_dit, run_cases
from models import transformer
from bench._common import HostSyncs
from models.transformer import Padding, attend, attend_padded
from tests.conftest import GOLDEN

DIT_FIXTURES = sorted(p.parent.name for p in GOLDEN.glob("dit_*/forward.json"))


def forward_fixture(name: str) -> Fixture:
    return Fixture.read(GOLDEN / name / "forward.json")


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("collapse", [True, False], ids=["collapsed", "plain"])
@pytest.mark.parametrize("folder", DIT_FIXTURES)
def test_forward_parity(folder, collapse):
    """Every forward case (outputs, guidance, intermediates, hidden states) within 1e-4 rel."""
    results = list(run_cases(forward_fixture(folder), collapse_context=collapse))
    bad = [r.line() for r in results if r.status != "pass"]
    assert not bad, "\n".join(bad)
    outputs = [r for r in results if "_out_" in r.name]
    assert any("_cfg" in r.name for r in outputs) and any("_out_full" in r.name for r in outputs)


def test_fixtures_present():
    assert DIT_FIXTURES == ["dit_medium_tiny", "dit_small_tiny"]


# --------------------------------------------------------------------------- savings


@pytest.fixture(scope="module", params=DIT_FIXTURES)
def tiny(request):
    """(dit, cross_attn_cond, global_cond, local_add_cond, padding_mask) of a tiny fixture."""
    fx = forward_fixture(request.param)
    dit = load_dit(fx)
    cross, _, global_cond = assemble_context(fx)
    gen = torch.Generator().manual_seed(0)
    B, T, C = cross.shape[0], 9, dit.cfg.io_channels
    mask = (torch.rand(B, 1, T, generator=gen) > 0.5).float()
    local = torch.cat([mask, torch.randn(B, C, T, generator=gen) * mask], dim=1)
    padding = torch.arange(T)[None] < torch.tensor([T, T - 3])[:, None]
    return dit, cross, global_cond, local, padding


def _steps(dit, gen, B, T):
    for _ in range(3):
        yield torch.randn(B, dit.cfg.io_channels, T, generator=gen), torch.rand(B, generator=gen)


class CallCounter:
    def __init__(self, *modules):
        self.calls = 0
        self.hooks = [m.register_forward_hook(self._count) for m in modules]

    def _count(self, *_):
        self.calls += 1

    def remove(self):
        for h in self.hooks:
            h.remove()


@torch.no_grad()
def test_prepared_context_equals_plain_path_and_is_not_recomputed(tiny):
    """Cross-attn K/V and inpainting embeddings come from prepare() once; steps reuse them and
    equal the plain path that recomputes everything per call."""
    dit, cross, global_cond, local, padding = tiny
    ctx = dit.prepare(cross, global_cond, local, padding)
    layers = dit.transformer.layers
    counter = CallCounter(dit.to_cond_embed, dit.to_global_embed,
                          *(l.to_local_embed for l in layers), *(l.cross_attn.to_kv for l in layers))
    outs = [dit(x, t, ctx) for x, t in _steps(dit, torch.Generator().manual_seed(1), *local.shape[::2])]
    counter.remove()
    assert counter.calls == 0
    plain = [dit.forward_plain(x, t, cross, global_cond, local, padding)
             for x, t in _steps(dit, torch.Generator().manual_seed(1), *local.shape[::2])]
    for ours, ref in zip(outs, plain):
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


@torch.no_grad()
def test_collapsed_context_keys(tiny):
    """Identical padding rows become one key with a log-count bias; the output is unchanged."""
    dit, cross, global_cond, local, padding = tiny
    collapsed = dit.prepare(cross, global_cond, local, padding)
    plain = dit.prepare(cross, global_cond, local, padding, collapse_context=False)
    k_collapsed, k_plain = collapsed.cross_kv[0][0][0], plain.cross_kv[0][0][0]
    assert k_plain.shape[2] == cross.shape[1]
    assert k_collapsed.shape[2] < cross.shape[1] // 2  # the padding rows really merged
    assert collapsed.cross_bias is not None and plain.cross_bias is None
    x, t = next(_steps(dit, torch.Generator().manual_seed(2), *local.shape[::2]))
    torch.testing.assert_close(dit(x, t, collapsed), dit(x, t, plain), rtol=0, atol=1e-5)


def test_collapse_rows_counts_and_log_bias_attention():
    gen = torch.Generator().manual_seed(3)
    rows = torch.randn(2, 6, 4, generator=gen)
    rows[0, 2:] = rows[0, 1]  # item 0: rows 1..5 identical
    rows[1, 3] = rows[1, 0]
    unique, counts = collapse_rows(rows)
    assert unique.shape == (2, 5, 4)  # item 1 has 5 distinct rows; item 0 is padded to 5
    assert sorted(counts[0].tolist()) == [0, 0, 0, 1, 5] and sorted(counts[1].tolist()) == [1, 1, 1, 1, 2]
    q = torch.randn(2, 1, 3, 4, generator=gen)
    full = attend(q, rows[:, None], rows[:, None])
    bias = counts.float().log()[:, None, None, :]
    torch.testing.assert_close(attend(q, unique[:, None], unique[:, None], mask=bias), full)


@torch.no_grad()
def test_constant_local_cond_is_embedded_once_and_matches(tiny):
    """Text-to-audio's all-zero inpainting input: one embedding per item, broadcast over time."""
    dit, cross, global_cond, local, padding = tiny
    zeros = torch.zeros_like(local)
    ctx = dit.prepare(cross, global_cond, zeros, padding)
    layer = dit.transformer.layers[0]
    assert ctx.local_embeds[0].stride(1) == 0  # a broadcast view, not T copies
    torch.testing.assert_close(ctx.local_embeds[0], layer.to_local_embed(zeros.transpose(1, 2)))


@torch.no_grad()
def test_guided_step_equals_separate_conditional_and_unconditional_calls(tiny):
    dit, cross, global_cond, local, padding = tiny
    x, t = next(_steps(dit, torch.Generator().manual_seed(4), *local.shape[::2]))
    uncond = null_context(cross)
    ctx = prepare_guided(dit, cross, uncond, global_cond, local, padding)
    ours = guided(dit, x, t, ctx, 6.0, 1.0, padding)
    cond_out = dit.forward_plain(x, t, cross, global_cond, local, padding)
    uncond_out = dit.forward_plain(x, t, uncond, global_cond, local, padding)
    torch.testing.assert_close(ours, guide(x, t, cond_out, uncond_out, 6.0, 1.0, padding), rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- padded self-attention


def _padded_qkv():
    gen = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(2, 3, 10, 8, generator=gen) for _ in range(3))
    return q, k, v, torch.arange(10)[None] < torch.tensor([10, 6])[:, None]


def test_attend_padded_fallback_zeroes_padded_values():
    """CPU / no flash-attn: the official fallback (what the golden fixtures ran)."""
    q, k, v, pad = _padded_qkv()
    torch.testing.assert_close(attend_padded(q, k, v, Padding.of(pad)), attend(q, k, v * pad[:, None, :, None]))


def _fake_varlen(q, k, v, cu_q, cu_k, max_q, max_k):
    """flash_attn_varlen_func's contract, computed with sdpa one sequence at a time."""
    assert q.dtype == torch.float16 and cu_q.dtype == torch.int32 and max_q == max_k
    outs = []
    for a, b in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
        seq = [t[a:b].float().transpose(0, 1) for t in (q, k, v)]  # (H, n, D)
        outs.append(torch.nn.functional.scaled_dot_product_attention(*seq).transpose(0, 1))
    return torch.cat(outs).half()


def test_attend_padded_varlen_packing(monkeypatch):
    """CUDA + flash-attn: valid frames attend to valid frames only; padded frames give 0."""
    monkeypatch.setattr(transformer, "flash_kernel",
                        lambda q, name: _fake_varlen if name == "flash_attn_varlen_func" else None)
    q, k, v, pad = _padded_qkv()
    out = attend_padded(q, k, v, Padding.of(pad, varlen=True))
    masked = attend(q, k, v, mask=pad[:, None, None, :])
    valid = pad[:, None, :, None].expand_as(out)
    torch.testing.assert_close(out[valid], masked[valid], rtol=0, atol=5e-3)
    assert out[~valid].abs().max() == 0


@pytest.mark.parametrize("version, capability, usable", [
    ("2.6.3", (9, 0), True), ("2.3.0", (8, 0), True),
    ("2.2.5", (9, 0), False),  # no window_size before 2.3
    ("2.6.3", (7, 5), False),  # flash-attn 2 needs Ampere or newer
    (None, (9, 0), False),     # not installed
])
def test_flash_attn_is_used_only_where_it_runs(monkeypatch, version, capability, usable):
    import sys
    import types
    fake = types.SimpleNamespace(__version__=version, flash_attn_func=object(), flash_attn_varlen_func=object())
    monkeypatch.setitem(sys.modules, "flash_attn", fake if version else None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: capability)
    transformer._flash_module.cache_clear()
    try:
        assert (transformer._flash_module(0) is fake) == usable
    finally:
        transformer._flash_module.cache_clear()
    assert transformer.flash_kernel(torch.zeros(1), "flash_attn_func") is None  # CPU tensors: sdpa


# --------------------------------------------------------------------------- guidance


def test_apg_project_splits_v0():
    gen = torch.Generator().manual_seed(5)
    v0, v1 = torch.randn(2, 3, 8, generator=gen), torch.randn(2, 3, 8, generator=gen)
    par, orth = apg_project(v0, v1)
    torch.testing.assert_close(par + orth, v0)
    assert (orth * v1).sum((1, 2)).abs().max() < 1e-5
    mask = torch.arange(8)[None] < torch.tensor([8, 5])[:, None]
    par, orth = apg_project(v0, v1, mask)
    assert orth[1, :, 5:].abs().max() == 0
    assert ((orth * v1)[1, :, :5]).sum().abs() < 1e-5


def test_guide_limits():
    gen = torch.Generator().manual_seed(6)
    x, c, u = (torch.randn(2, 3, 8, generator=gen) for _ in range(3))
    sigma = torch.tensor([0.3, 0.9])
    torch.testing.assert_close(guide(x, sigma, c, u, 1.0, 1.0), c)  # scale 1: the conditional output
    cfg = guide(x, sigma, c, u, 4.0, 0.0)  # apg 0: vanilla CFG on velocities
    torch.testing.assert_close(cfg, u + 4.0 * (c - u), rtol=1e-5, atol=1e-5)


def test_null_context_negative_rows():
    cross = torch.ones(2, 4, 3)
    assert null_context(cross).abs().sum() == 0
    mask = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0]], dtype=torch.bool)
    neg = null_context(cross, 2 * cross, mask)
    assert neg[0, 2].abs().sum() == 0 and neg[0, 3].sum() == 6 and neg[1, 1:].abs().sum() == 0


# The full-size layout (names and shapes vs the manifests) is tests/test_inventory.py's.


def test_tiny_checkpoint_loads_strictly():
    for folder in DIT_FIXTURES:
        load_dit(forward_fixture(folder))  # raises CheckpointError on any key/shape mismatch


@torch.no_grad()
def test_bf16_weights_stay_close_to_fp32():
    """bf16 runs end to end; timestep features come from fp32 t (a bf16 t alone moves the
    tiny medium model's output by ~20%; the rest of bf16 costs ~1%)."""
    fx = forward_fixture("dit_medium_tiny")
    dit = load_dit(fx)
    cross, _, global_cond = assemble_context(fx)
    gen = torch.Generator().manual_seed(8)
    x, t = torch.randn(2, dit.cfg.io_channels, 12, generator=gen), fx.tensors["t"]
    ref = dit(x, t, dit.prepare(cross, global_cond))
    half = dit.to(torch.bfloat16)
    out = half(x, t, half.prepare(cross, global_cond))
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() <= 0.03 * ref.abs().max()


@torch.no_grad()
def test_step_must_fit_the_prepared_context(tiny):
    dit, cross, global_cond, local, padding = tiny
    ctx = dit.prepare(cross, global_cond, local, padding)
    B, C, T = local.shape[0], dit.cfg.io_channels, local.shape[2]
    with pytest.raises(ValueError, match="x has 7 frames, the prepared context 9"):
        dit(torch.zeros(B, C, 7), torch.zeros(B), ctx)
    with pytest.raises(ValueError, match="batch"):
        dit(torch.zeros(2 * B, C, T), torch.zeros(2 * B), ctx)


@torch.no_grad()
def test_block_with_fused_modulation_equals_the_official_formulas(tiny):
    """AdaLN as addcmul and the inpainting add on the frames' slice: the official block
    (norm * (1 + scale) + shift, x + out * gate, x + zero-padded local) within fp32 rounding;
    the caller's x is left untouched."""
    import torch.nn.functional as F

    dit, cross, global_cond, local, padding = tiny
    ctx = dit.prepare(cross, global_cond, local, padding)
    block, tr = dit.transformer.layers[0], dit.transformer
    B, T, M = local.shape[0], local.shape[2], tr.memory_tokens.shape[0]
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(B, M + T, dit.cfg.embed_dim, generator=gen)
    cond = tr.global_cond_embedder(ctx.global_embed + torch.randn(B, dit.cfg.embed_dim, generator=gen))
    freqs, mask = tr.rotary_pos_emb(M + T), ctx.self_padding
    x_before = x.clone()
    ours = block(x, cond, freqs, ctx.cross_kv[0], ctx.cross_bias, ctx.local_embeds[0], mask)
    assert torch.equal(x, x_before)

    s_sa, b_sa, g_sa, s_ff, b_ff, g_ff = (block.to_scale_shift_gate + cond).unsqueeze(1).chunk(6, dim=-1)
    h = block.pre_norm(x) * (1 + s_sa) + b_sa
    ref = x + block.self_attn(h, freqs=freqs, padding=mask) * torch.sigmoid(1 - g_sa)
    ref = ref + block.cross_attn(block.cross_attend_norm(ref), kv=ctx.cross_kv[0], mask=ctx.cross_bias)
    ref = ref + F.pad(ctx.local_embeds[0], (0, 0, M, 0))
    ref = ref + block.ff(block.ff_norm(ref) * (1 + s_ff) + b_ff) * torch.sigmoid(1 - g_ff)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_a_step_makes_no_host_syncs(tiny):
    """Everything data-dependent (validity, packing, the context's row counts) is worked out once in
    ``prepare``: a step (2 x depth self-attention calls) never waits for the device."""
    dit, cross, global_cond, local, padding = tiny
    padding = padding.clone()
    padding[0, -2:] = False  # some padded frames: the masked path runs
    x = torch.randn(cross.shape[0], dit.cfg.io_channels, local.shape[2], generator=torch.Generator().manual_seed(1))
    with HostSyncs() as prepared:
        ctx = dit.prepare(cross, global_cond, local, padding)
    with HostSyncs() as step:
        dit(x, torch.full((x.shape[0],), 0.5), ctx)
    assert prepared.calls and step.calls == []
