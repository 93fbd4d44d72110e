"""models.text: T5Gemma at parity, the real-tokens path, its cache, learned padding, prefixes."""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from models import precision, text
from models.loading import CheckpointError
from models.parity.conditioning import run_text_encoder
from models.parity.core import Fixture
from models.text import TextConditioner, load_text_encoder
from tests.conftest import GOLDEN

T5 = GOLDEN / "t5gemma-b-b-ul2"
PROMPTS = ["lofi house loop, 90 BPM", "", "Café del Mar – ambient pads, 音楽 ✨🎹", "rain " * 400, "rain"]


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder(T5, dtype=torch.float32)


def test_parity_with_official_encoder():
    cases = list(run_text_encoder(Fixture.read(T5 / "fixtures.json")))
    assert cases and all(c.status == "pass" for c in cases), [c.line() for c in cases if c.status != "pass"]


def test_real_tokens_path_equals_padded_path(encoder):
    hidden, mask = encoder.encode_padded(PROMPTS)
    for b, prompt in enumerate(PROMPTS):
        fast = encoder.encode(prompt)
        assert fast.shape[0] == int(mask[b].sum())
        torch.testing.assert_close(fast, hidden[b, mask[b]], rtol=1e-5, atol=1e-5)


def test_attention_is_eager_with_the_softcap(encoder):
    golden = Fixture.read(T5 / "fixtures.json").tensors["prompt0_last_hidden_state_valid"]
    prompt = Fixture.read(T5 / "fixtures.json").meta["tokenization"][0]["prompt"]
    assert encoder.encoder.config._attn_implementation == "eager"
    fresh = load_text_encoder(T5, dtype=torch.float32)
    for layer in fresh.encoder.layers:
        layer.self_attn.attn_logit_softcapping = None  # what sdpa would compute
    without = fresh.encode(prompt)
    assert (without - golden).abs().max() > 1e-4 * max(1.0, golden.abs().max().item())


def test_encodings_are_cached_per_prompt(encoder, monkeypatch):
    monkeypatch.setattr(text, "CACHE_SIZE", 2)
    encoder._cache.clear()
    calls = []
    handle = encoder.encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        first = encoder.encode("rain")
        assert encoder.encode("rain") is first and len(calls) == 1
        encoder.encode("snow")
        encoder.encode("wind")  # evicts "rain", the least recently used
        encoder.encode("rain")
        assert len(calls) == 4 and list(encoder._cache) == ["wind", "rain"]
    finally:
        handle.remove()


def test_long_prompts_are_truncated(encoder):
    ids = encoder.token_ids(PROMPTS[3], truncate=False)
    assert len(ids) > encoder.max_length
    assert torch.equal(encoder.token_ids(PROMPTS[3]), ids[: encoder.max_length])
    assert encoder.encode(PROMPTS[3]).shape == (encoder.max_length, encoder.dim)


def test_conditioner_fills_the_rest_with_the_learned_padding(encoder):
    cond = TextConditioner(encoder, encoder.dim)
    with torch.no_grad():
        cond.padding_embedding.normal_()
    rows, mask = cond(["rain", "lofi house loop, 90 BPM"])
    assert rows.shape == (2, encoder.max_length, encoder.dim) and mask.dtype == torch.bool
    for b, prompt in enumerate(["rain", "lofi house loop, 90 BPM"]):
        n = len(encoder.token_ids(prompt))
        assert mask[b, :n].all() and not mask[b, n:].any()
        assert torch.equal(rows[b, :n], encoder.encode(prompt))
        assert torch.equal(rows[b, n:], cond.padding_embedding.expand(encoder.max_length - n, -1))


def test_loads_only_encoder_tensors_strictly(tmp_path):
    folder = tmp_path / "t5"
    shutil.copytree(T5, folder)
    tensors = load_file(folder / "model.safetensors")
    tensors["model.decoder.norm.weight"] = torch.ones(8)  # a full enc-dec file: decoder ignored
    save_file(tensors, folder / "model.safetensors")
    load_text_encoder(folder, dtype=torch.float32)
    del tensors["model.encoder.norm.weight"]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing norm.weight"):
        load_text_encoder(folder, dtype=torch.float32)


def test_loads_to_the_requested_dtype():
    enc = load_text_encoder(T5, dtype=torch.bfloat16)
    assert {p.dtype for p in enc.encoder.parameters()} == {torch.bfloat16}
    assert enc.encode("rain").dtype == torch.bfloat16


def test_default_dtype_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert text.default_dtype("cpu") == torch.float32
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert text.default_dtype("cpu") == torch.bfloat16


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_text_encoder(tmp_path)
