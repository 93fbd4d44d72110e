"""models.conditioners: seconds embedding and the assembled conditioning, at parity."""

import dataclasses

import pytest
import torch

from models.conditioners import Conditioner
from models.config import load_model_config
from models.loading import CONDITIONER_PREFIX, CheckpointError, read_tensors
from models.parity.conditioning import run_conditioners
from models.parity.core import Fixture, check, check_sum
from models.text import load_text_encoder
from tests.conftest import GOLDEN

MODELS = ["sa3_small_tiny", "sa3_medium_tiny"]


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder(GOLDEN / "t5gemma-b-b-ul2", dtype=torch.float32)


def conditioner_for(folder, encoder, config=None):
    config = config or load_model_config(GOLDEN / folder / "model_config.json")
    cond = Conditioner(config, encoder)
    return cond.load(read_tensors(GOLDEN / folder / "model.safetensors", CONDITIONER_PREFIX))


@pytest.mark.parametrize("folder", MODELS)
def test_parity_with_official_conditioners(folder):
    cases = list(run_conditioners(Fixture.read(GOLDEN / folder / "conditioners.json")))
    assert cases and all(c.status == "pass" for c in cases), [c.line() for c in cases if c.status != "pass"]


@pytest.mark.parametrize("folder", MODELS)
def test_assembly_matches_every_generate_run(folder, encoder):
    """The conditioning official generate() handed the DiT: cross-attention checksum per
    item and the AdaLN input, for every recorded run (prompts and durations from kwargs)."""
    fx = Fixture.read(GOLDEN / folder / "generate.json")
    cond = conditioner_for(folder, encoder)
    for run in fx.meta["runs"]:
        kw, name = run["kwargs"], run["name"]
        batch = kw.get("batch_size", 1)
        prompts = kw["prompt"] if isinstance(kw["prompt"], list) else [kw["prompt"]] * batch
        seconds = kw["duration"] if isinstance(kw["duration"], list) else [kw["duration"]] * batch
        c = cond(prompts, seconds)
        assert check(name, c.global_cond, fx.tensors[f"{name}_global_cond"]).status == "pass"
        for b, golden in enumerate(fx.tensors[f"{name}_cross_attn_cond_sum_f64"]):
            ours = c.cross_attn_cond[b].double().sum().item()
            assert check_sum(name, ours, golden.item()).status == "pass", (name, b)


def test_shapes_masks_and_order(encoder):
    cond = conditioner_for("sa3_small_tiny", encoder)
    prompts, seconds = ["rain", "lofi house loop, 90 BPM"], [3.0, 400.0]
    c = cond(prompts, seconds)
    n, d = encoder.max_length, cond.prompt.padding_embedding.shape[0]
    assert c.cross_attn_cond.shape == (2, n + 1, d) and c.global_cond.shape == (2, d)
    assert c.cross_attn_mask.dtype == torch.bool and c.cross_attn_mask.shape == (2, n + 1)
    text_rows, text_mask = cond.prompt(prompts)
    seconds_emb, _ = cond.seconds_total(seconds)
    # cross_attention_cond_ids = (prompt, seconds_total): the seconds token comes last.
    assert torch.equal(c.cross_attn_cond[:, :n], text_rows)
    assert torch.equal(c.cross_attn_cond[:, n], seconds_emb[:, 0])
    assert torch.equal(c.cross_attn_mask[:, :n], text_mask) and c.cross_attn_mask[:, n].all()
    assert torch.equal(c.global_cond, seconds_emb[:, 0])


def test_order_follows_the_config(encoder):
    config = load_model_config(GOLDEN / "sa3_small_tiny" / "model_config.json")
    swapped = dataclasses.replace(config, diffusion=dataclasses.replace(
        config.diffusion, cross_attention_cond_ids=("seconds_total", "prompt")))
    c = conditioner_for("sa3_small_tiny", encoder, swapped)(["rain"], [1.0])
    assert torch.equal(c.cross_attn_cond[:, 0], c.global_cond)


def test_seconds_are_clamped_to_the_trained_range(encoder):
    cond = conditioner_for("sa3_small_tiny", encoder)
    top = cond.seconds_total.max_val
    emb, _ = cond.seconds_total([top, top + 100.0, -5.0, 0.0])
    assert torch.equal(emb[0], emb[1]) and torch.equal(emb[2], emb[3])


def test_strict_load_names_the_problem(encoder):
    config = load_model_config(GOLDEN / "sa3_small_tiny" / "model_config.json")
    tensors = read_tensors(GOLDEN / "sa3_small_tiny" / "model.safetensors", CONDITIONER_PREFIX)
    del tensors["prompt.padding_embedding"]
    with pytest.raises(CheckpointError, match="missing prompt.padding_embedding"):
        Conditioner(config, encoder).load(tensors)


def test_mismatched_batch_is_an_error(encoder):
    with pytest.raises(ValueError, match="2 prompts but 1 durations"):
        conditioner_for("sa3_small_tiny", encoder)(["a", "b"], [1.0])


def test_layout_without_an_encoder_matches_the_checkpoint_keys(encoder):
    config = load_model_config(GOLDEN / "sa3_small_tiny" / "model_config.json")
    with torch.device("meta"):
        cond = Conditioner(config, None)  # e.g. for the inventory: no T5 needed
    tensors = read_tensors(GOLDEN / "sa3_small_tiny" / "model.safetensors", CONDITIONER_PREFIX)
    assert set(cond.state_dict()) == set(tensors)  # the T5 weights are not ours
    cond.load(tensors)
    with pytest.raises(RuntimeError, match="no text encoder"):
        cond(["rain"], [1.0])
    cond.prompt.encoder = encoder
    assert cond(["rain"], [1.0]).cross_attn_cond.shape[1] == encoder.max_length + 1


def test_encoder_of_another_length_is_refused(encoder):
    from models.text import TextConditioner
    with pytest.raises(ValueError, match="256 rows of width"):
        TextConditioner(encoder, encoder.dim, max_length=128)(["rain"])


def test_a_batch_equals_its_items_alone(encoder):
    cond = conditioner_for("sa3_small_tiny", encoder)
    prompts, seconds = ["rain", "", "lofi house loop, 90 BPM"], [0.5, 30.0, 120.0]
    batch = cond(prompts, seconds)
    for b in range(3):
        alone = cond([prompts[b]], [seconds[b]])
        n = encoder.max_length  # text rows: exactly; the seconds token: up to matmul rounding
        assert torch.equal(batch.cross_attn_cond[b, :n], alone.cross_attn_cond[0, :n])
        torch.testing.assert_close(batch.cross_attn_cond[b], alone.cross_attn_cond[0], rtol=0, atol=1e-6)
        assert torch.equal(batch.cross_attn_mask[b], alone.cross_attn_mask[0])
        torch.testing.assert_close(batch.global_cond[b], alone.global_cond[0], rtol=0, atol=1e-6)
