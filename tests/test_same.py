"""SAME: parity with the official implementation, checkpoint layout, and equivalences."""

import json

import pytest
import torch

from models.config import load_model_config
from models.parity.core import Fixture, check, discover
from models.parity.same import load_same, run
from models.noise import generator_noise
from models.same import Same
from models.transformer import rotary_inv_freq
from tests.conftest import GOLDEN, REFERENCE

SAME_FOLDERS = ["same_s_tiny", "same_l_tiny"]
FIXTURES = [js for f in SAME_FOLDERS for js in discover(GOLDEN / f)]


@pytest.mark.parametrize("fixture_json", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_parity_with_official(fixture_json):
    results = list(run(Fixture.read(fixture_json)))
    expected = [n for n in json.loads(fixture_json.read_text())["tensors"]
                if not n.startswith(("d", "latents_")) or fixture_json.stem == "encode"]
    assert len(results) == len(expected), "every output tensor of the fixture is a case"
    failed = [r.line() for r in results if r.status != "pass"]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("name", ["SAME-S", "SAME-L"])
def test_state_dict_matches_released_manifest(name):
    cfg = load_model_config(REFERENCE / "configs" / f"{name}.json")
    with torch.device("meta"):
        model = Same(cfg.same)
    ours = {k: list(t.shape) for k, t in model.state_dict().items()}
    manifest = json.loads((REFERENCE / "manifests" / f"{name}.json").read_text())
    assert ours == {e["key"]: e["shape"] for e in manifest["state_dict"]}


@pytest.fixture(scope="module", params=SAME_FOLDERS)
def tiny(request):
    return load_same(str(GOLDEN / request.param)), request.param


def _latents(n, seed=0):
    return torch.randn(1, 16, n, generator=torch.Generator().manual_seed(seed))


def test_rope_buffer_is_the_formula(tiny):
    """The angles come from the fp32 formula; the checkpoint's inv_freq must be that formula."""
    model, _ = tiny
    bufs = [b for k, b in model.state_dict().items() if k.endswith("rope.inv_freq")]
    assert bufs and all(torch.equal(b, rotary_inv_freq(2 * b.numel())) for b in bufs)


def test_decode_is_deterministic_by_default(tiny):
    model, _ = tiny
    z = _latents(5)
    assert torch.equal(model.decode(z), model.decode(z))
    noisy = model.decode(z, noise=generator_noise(torch.Generator().manual_seed(1)))
    assert (noisy - model.decode(z)).abs().max() > 1e-4, "a noise source changes the output"


def test_decode_trims_to_whole_latents(tiny):
    model, _ = tiny
    z = _latents(3)
    full = model.decode(z, trim=False)
    trimmed = model.decode(z)
    assert trimmed.shape == (1, 2, 3 * 4096)
    assert torch.equal(trimmed, full[..., : 3 * 4096])


def test_chunked_decode_equals_plain_decode(tiny):
    """Windows overlapping by at least the receptive field (2 latents per side for these 2-layer
    blocks) reproduce the whole-signal decode. For SAME-S every window must also start on its
    2-latent attention-chunk grid (24 latents: starts 0, 4, 8, 12, 14); the official anchoring of
    the last window at L - chunk_size breaks that grid for odd L, and the last window differs."""
    model, _ = tiny
    z = _latents(24, seed=3)
    plain = model.decode(z)
    chunked = model.decode_chunked(z, chunk_size=10, overlap=6)
    assert check("chunked", chunked, plain).status == "pass"


def test_chunked_encode_equals_plain_encode_where_windows_cover_the_field():
    model = load_same(str(GOLDEN / "same_l_tiny"))  # SAME-L: no chunk padding, same length
    audio = torch.randn(1, 2, 4096 * 30, generator=torch.Generator().manual_seed(4))
    plain = model.encode(audio)
    chunked = model.encode_chunked(audio, chunk_size=12, overlap=6)
    assert check("chunked", chunked, plain).status == "pass"


def test_bf16_runs_close_to_fp32(tiny):
    model, folder = tiny
    bf16 = load_same.__wrapped__(str(GOLDEN / folder)).to(torch.bfloat16)
    audio = torch.randn(1, 2, 20000, generator=torch.Generator().manual_seed(5)) * 0.3
    z32, z16 = model.encode(audio), bf16.encode(audio)
    assert z16.dtype == torch.bfloat16
    assert (z16.float() - z32).abs().max() <= 0.1 * z32.abs().max()
    a32, a16 = model.decode(z32), bf16.decode(z32)
    assert torch.isfinite(a16).all()
    assert (a16.float() - a32).abs().max() <= 0.1 * a32.abs().max()
