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


# --------------------------------------------------------------------------- part of a track

SPAN_TOL = 2e-6  # max |span - whole| <= SPAN_TOL * max(1, max |whole|): fp32 round-off (measured 2.4e-7)


def _track(frames_and_samples: int, seed: int = 6) -> torch.Tensor:
    return 0.3 * torch.randn(1, 2, frames_and_samples, generator=torch.Generator().manual_seed(seed))


def _spans(n: int) -> list[tuple[int, int]]:
    """The track's start and end, odd and even edges, one frame, everything."""
    return [(0, 3), (0, 1), (5, 9), (6, 7), (7, 20), (n - 3, n), (n - 1, n), (n // 2, n), (0, n)]


def test_span_encode_equals_the_whole_track(tiny):
    model, _ = tiny
    audio = _track(40 * 4096 + 1234)  # 41 frames, the last one partial
    n = -(-audio.shape[-1] // 4096)
    whole = model.encode(audio)
    tol = SPAN_TOL * max(1.0, whole.abs().max().item())
    for f0, f1 in _spans(n):
        span = model.encode_span(audio, f0, f1)
        assert span.shape == (1, 16, f1 - f0)
        assert (span - whole[..., f0:f1]).abs().max() <= tol, (f0, f1)
    windowed = model.encode_span(audio, 3, n, window=7)  # bounded memory, still the whole track's
    assert (windowed - whole[..., 3:n]).abs().max() <= tol


def test_span_margins_are_as_small_as_they_can_be(tiny, monkeypatch):
    """One frame less margin (or no chunk alignment) and some span differs beyond round-off: the
    rule is tight (measured: 3e-5 relative for SAME-L's weakest edge, 0.03-0.07 for SAME-S)."""
    from models import same as same_module

    model, _ = tiny
    audio = _track(30 * 4096, seed=7)
    whole = model.encode(audio)
    period, left, right = same_module.encode_margins(model.cfg.encoder)
    assert left > 0 and right > 0
    for smaller in ((period, left - 1, right), (period, left, right - 1), (1, left, right) if period > 1 else None):
        if smaller is None:
            continue
        monkeypatch.setattr(same_module, "encode_margins", lambda cfg, m=smaller: m)
        worst = max((model.encode_span(audio, f0, f1) - whole[..., f0:f1]).abs().max().item()
                    for f0, f1 in [(5, 9), (6, 10), (11, 17), (12, 18)])
        assert worst > SPAN_TOL * max(1.0, whole.abs().max().item()), smaller


def test_released_margins():
    """SAME-S: chunks of 2 frames, 1 frame each side; SAME-L: 12 layers x (1, 1) frames."""
    from models.same import encode_margins

    s = load_model_config(REFERENCE / "configs" / "SAME-S.json").same.encoder
    l = load_model_config(REFERENCE / "configs" / "SAME-L.json").same.encoder
    assert encode_margins(s) == (2, 1, 1) and encode_margins(l) == (1, 12, 12)


def test_span_outside_the_track_is_refused(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="not inside the track's 3"):
        model.encode_span(_track(3 * 4096), 2, 4)
