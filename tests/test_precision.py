"""Precision by hardware: the choice, the fp32 paths kept under bf16 weights, and the tiny
fixtures' fidelity in bf16."""

import math

import pytest
import torch
import torch.nn.functional as F

from models import precision
from models.loading import Checkpoint
from models.parity import generate as parity_generate
from models.parity.core import Fixture
from models.precision import Precision, choose_precision
from models.sa3 import Generation, StableAudio3
from models.noise import generator_noise
from models.sampling import build_schedule, effective_seq_len, sampling_shift
from models.transformer import attend
from tests.conftest import GOLDEN

BF16 = Precision(torch.bfloat16, torch.bfloat16, torch.float32, "test")


def test_auto_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    p = choose_precision("cpu")
    assert (p.dit, p.text, p.same, p.name) == (torch.float32,) * 3 + ("fp32",)
    assert "AVX512-BF16" in p.reason
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    p = choose_precision("cpu")
    assert (p.dit, p.text, p.same, p.name) == (torch.bfloat16, torch.bfloat16, torch.float32, "bf16")


def test_cuda_uses_bf16_only_where_the_card_has_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert choose_precision("cuda").dit == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    p = choose_precision("cuda")
    assert (p.dit, p.same) == (torch.bfloat16, torch.bfloat16)  # SAME follows on CUDA, as official


def test_explicit_choices(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert choose_precision("cpu", "fp32").dit == torch.float32
    forced = choose_precision("cpu", "bf16")
    assert forced.dit == torch.bfloat16 and "emulated" in forced.reason
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        choose_precision("cpu", "fp16")


def test_cpu_probe_matches_the_kernel_flags():
    """torch's probe and /proc/cpuinfo agree where both exist (no vendor guess)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert precision.cpu_has_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_fp32_bias_runs_the_attention_in_fp32():
    """The collapsed-context log-count bias is not rounded to bf16 by the kernel."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 9, 16, generator=g).bfloat16() for _ in range(3))
    bias = torch.tensor([1.0, 237.0, 3.0, 5.0, 1.0, 1.0, 2.0, 1.0, 9.0]).log()[None, None, None]
    out = attend(q, k, v, mask=bias)
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=bias).bfloat16()
    assert out.dtype == torch.bfloat16 and torch.equal(out, exact)


@pytest.fixture(scope="module")
def bf16_model():
    return StableAudio3.from_checkpoint(Checkpoint(GOLDEN / "sa3_small_tiny"),
                                        text_encoder_folder=GOLDEN / "t5gemma-b-b-ul2", precision=BF16)


def test_precision_loads_each_part_in_its_dtype(bf16_model):
    assert bf16_model.dit.dtype == torch.bfloat16 and bf16_model.same.dtype == torch.float32
    assert bf16_model.conditioner.seconds_total.embedder.embedding[1].weight.dtype == torch.float32
    assert bf16_model.conditioner.prompt.encoder.dtype == torch.bfloat16


def test_sampler_state_and_features_stay_fp32_with_bf16_weights(bf16_model):
    """x, sigmas, the update, the timestep reaching its Fourier features (exactly the fp32
    schedule) and the seconds features are fp32; the DiT itself runs in bf16."""
    model = bf16_model
    seen = {"t": []}
    record = lambda key: lambda module, args, out: seen.__setitem__(key, args[0].dtype)  # returns None
    hooks = [model.dit.timestep_features.register_forward_hook(lambda m, args, out: seen["t"].append(args[0])),
             model.conditioner.seconds_total.embedder.embedding[0].register_forward_hook(record("seconds")),
             model.dit.transformer.project_in.register_forward_hook(record("dit"))]
    steps = []
    L = model.latent_length(1.0, 0.3)
    job = Generation(("lofi house",), (1.0,), L, 4, headroom_seconds=0.3)
    try:
        out = model.sample(job, generator_noise(torch.Generator().manual_seed(1)), callback=steps.append)
    finally:
        for h in hooks:
            h.remove()
    assert out.dtype == torch.float32
    assert all(s.x.dtype == s.t.dtype == s.denoised.dtype == torch.float32 for s in steps)
    sigmas = build_schedule(4, 1.0, sampling_shift(model.cfg.diffusion),
                            effective_seq_len((1.0,), model.sample_rate, model.downsampling_ratio))
    assert all(t.dtype == torch.float32 for t in seen["t"])
    assert torch.equal(torch.stack([t.reshape(-1)[0] for t in seen["t"]]), sigmas.reshape(-1)[:4])
    assert seen["seconds"] == torch.float32 and seen["dit"] == torch.bfloat16


def test_collapse_bias_is_fp32_with_bf16_weights(bf16_model):
    cond = bf16_model.conditioner(("rain",), (1.0,))
    ctx = bf16_model.dit.prepare(cond.cross_attn_cond, cond.global_cond)
    assert ctx.cross_bias is not None and ctx.cross_bias.dtype == torch.float32
    assert ctx.global_embed.dtype == torch.bfloat16


# The tiny fixtures in bf16 (DiT and text encoder bf16, SAME fp32) against the official fp32
# outputs: SNR of the whole 8-step generate output. Measured 37-44 dB (latents) and 57-69 dB
# (audio) for the distilled runs, 29-36 dB for the -base runs with CFG 4-7 (guidance scales
# the difference of two predictions, so their rounding too).
BF16_MIN_SNR_DB = 34.0
BF16_MIN_SNR_CFG_DB = 27.0


def _snr_db(ours: torch.Tensor, golden: torch.Tensor) -> float:
    ours, golden = ours.double(), golden.double()
    return 10 * math.log10(golden.pow(2).sum() / (ours - golden).pow(2).sum().clamp(min=1e-30))


@pytest.mark.parametrize("folder", ["sa3_small_tiny", "sa3_medium_tiny"])
def test_tiny_generate_runs_in_bf16_within_tolerance(folder):
    fx = Fixture.read(GOLDEN / folder / "generate.json")
    audio = parity_generate.audio_input(fx)
    for spec in fx.meta["runs"]:
        config = GOLDEN / folder / parity_generate.config_name(fx, spec)
        model = StableAudio3.from_checkpoint(Checkpoint(GOLDEN / folder), text_encoder_folder=GOLDEN / "t5gemma-b-b-ul2",
                                             config_path=config, precision=BF16)
        *_, out, noise = parity_generate.run_output(fx, model, spec, audio)
        snr = _snr_db(out, fx.tensors[f"{spec['name']}_output"])
        guided = spec["kwargs"].get("cfg_scale", 1.0) != 1.0
        assert not noise.remaining
        assert snr >= (BF16_MIN_SNR_CFG_DB if guided else BF16_MIN_SNR_DB), f"{folder}/{spec['name']}: {snr:.1f} dB"
