"""The whole model: generate parity runs, and the exact-math savings equal the plain path."""

import pytest
import torch

from models import plan
from models.loading import Checkpoint
from models.parity.__main__ import main as parity_main
from models.sa3 import Generation, StableAudio3
from models.noise import generator_noise
from tests.conftest import GOLDEN


@pytest.mark.parametrize("folder", ["sa3_small_tiny", "sa3_medium_tiny"])
def test_generate_parity(folder, capsys):
    """Every official generate run (t2a, truncation, regions, continuation, a2a, base CFG/APG)."""
    code = parity_main([str(GOLDEN / folder), "-k", "generate"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert " 0 failed, 0 skipped" in out and "continuation/output" in out and "base_euler" in out


@pytest.fixture(scope="module", params=["sa3_small_tiny", "sa3_medium_tiny"])
def model(request):
    return StableAudio3.from_checkpoint(Checkpoint(GOLDEN / request.param),
                                        text_encoder_folder=GOLDEN / "t5gemma-b-b-ul2", text_dtype=torch.float32)


def _job(model, **kw):
    L = model.latent_length(1.0, 0.3)
    reference = torch.randn(1, model.cfg.io_channels, L, generator=torch.Generator().manual_seed(0))
    keep = plan.to_latent_mask(plan.keep_mask([(0.2, 0.6)], L * 4096, 1.0, 44100), L)
    return Generation(("lofi house", "rain"), (1.0, 0.7), L, 4, reference=reference, keep=keep,
                      headroom_seconds=0.3, **kw)


@pytest.mark.parametrize("guidance", [{}, dict(cfg_scale=4.0, apg_scale=0.5, negative_prompts=("noise", "hum"))])
def test_savings_equal_the_plain_path(model, guidance):
    job = _job(model, **guidance)
    fast = model.sample(job, generator_noise(torch.Generator().manual_seed(1)))
    plain = model.sample(job, generator_noise(torch.Generator().manual_seed(1)), plain=True)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


def test_seed_reproduces_and_regions_are_kept(model):
    job = _job(model)
    a = model.sample(job, generator_noise(torch.Generator().manual_seed(5)))
    b = model.sample(job, generator_noise(torch.Generator().manual_seed(5)))
    c = model.sample(job, generator_noise(torch.Generator().manual_seed(6)))
    assert torch.equal(a, b) and not torch.allclose(a, c)
