"""LoRA adapters: official parity, safe loading, exact removal, strength without re-reading,
stacking order, per-step intervals, and an adapter file of our own making checked against
the documented formulas."""

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import save_file

from models import lora as lora_module
from models.loading import Checkpoint
from models.lora import LoraError, LoraStack, LoraUse, expand_brackets, layer_filter_patterns, read_lora
from models.noise import generator_noise
from models.parity.__main__ import main as parity_main
from models.parity.core import Fixture
from models.parity.lora import _forward, _forward_inputs
from models.sa3 import Generation, StableAudio3
from tests.conftest import GOLDEN

SMALL = GOLDEN / "sa3_small_tiny"


@pytest.mark.parametrize("folder", ["sa3_small_tiny", "sa3_medium_tiny"])
def test_lora_parity(folder, capsys):
    """Every official LoRA output: each adapter type and strength, effective weights, seconds
    embedding, intervals (both official paths), layer filters, stacks, generate runs."""
    code = parity_main([str(GOLDEN / folder), "-k", "lora"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert " 0 failed, 0 skipped" in out
    for case in ("lora/stack3_out", "bora-xs_s1.7_out", "legacy_layerfilter_out", "seconds_embedding", "/output"):
        assert case in out


@pytest.fixture(scope="module")
def model():
    m = StableAudio3.from_checkpoint(Checkpoint(SMALL), text_encoder_folder=GOLDEN / "t5gemma-b-b-ul2",
                                     text_dtype=torch.float32)
    yield m
    m.set_loras(())


@pytest.fixture(scope="module")
def fx():
    return Fixture.read(SMALL / "lora.json")


def forward(model, fx, t=(0.83, 0.27)):
    with torch.no_grad():
        return _forward(model, torch.tensor(t), *_forward_inputs(fx))


def golden_file(name):
    return read_lora(SMALL / f"lora_{name}.safetensors")


# --------------------------------------------------------------------------- loading


def _pickle_that_writes(marker):
    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")  # unpickling this creates the marker file
    return pickle.dumps({"state_dict": Payload()})


@pytest.mark.parametrize("name", ["style.ckpt", "style.pt", "style.safetensors"])
def test_a_pickled_file_is_refused_without_unpickling(tmp_path, name):
    marker = tmp_path / "unpickled"
    path = tmp_path / name
    path.write_bytes(_pickle_that_writes(marker))
    with pytest.raises(LoraError) as e:
        read_lora(path)
    message = str(e.value)
    assert name in message and "safetensors" in message and message.count(". ") == 0
    assert not marker.exists()


def test_a_whole_model_file_is_not_a_lora():
    with pytest.raises(LoraError, match=r"model\.safetensors holds .* it is not a LoRA file\.$"):
        read_lora(SMALL / "model.safetensors")


def _write(path, tensors, config):
    """Our own writer, in the trainer's format: float16 tensors, one ``lora_config`` metadata key."""
    flat = {f"{module}.parametrizations.weight.0.{p}": t.half() for module, ps in tensors.items() for p, t in ps.items()}
    save_file(flat, str(path), metadata=None if config is None else {"lora_config": json.dumps(config)})
    return path


def test_modules_the_model_lacks_or_wrong_shapes_are_clear_errors_and_change_nothing(model, fx, tmp_path):
    model.set_loras([LoraUse(golden_file("lora"))])
    before = forward(model, fx)
    A, B = torch.randn(4, 64), torch.randn(64, 4)
    foreign = _write(tmp_path / "foreign.safetensors",
                     {"model.transformer.layers.99.self_attn.to_out": {"lora_A": A, "lora_B": B}}, {"rank": 4})
    with pytest.raises(LoraError, match="does not have: it was made for another model"):
        model.set_loras([LoraUse(read_lora(foreign))])
    out_features, in_features = model.dit.transformer.layers[0].self_attn.to_out.weight.shape
    misfit = _write(tmp_path / "misfit.safetensors", {"model.transformer.layers.0.self_attn.to_out": {
        "lora_A": torch.randn(4, in_features + 1), "lora_B": torch.randn(out_features, 4)}}, {"rank": 4})
    with pytest.raises(LoraError, match=r"lora_A has shape \(4, \d+\), this model needs"):
        model.set_loras([LoraUse(read_lora(misfit))])
    assert torch.equal(forward(model, fx), before)  # the previous stack still in place


# --------------------------------------------------------------------------- removing, strength, order


def test_removing_every_lora_restores_the_base_weights_and_outputs_exactly(model, fx):
    model.set_loras(())
    weights = model.state_dict(keep_vars=True)
    base = forward(model, fx)
    model.set_loras([LoraUse(golden_file("bora-xs")), LoraUse(golden_file("lora"), 0.5)])
    assert not torch.allclose(forward(model, fx), base)
    model.set_loras(())
    assert torch.equal(forward(model, fx), base)
    assert all(v is weights[k] for k, v in model.state_dict(keep_vars=True).items() if k in weights)


def test_changing_strength_reads_nothing(model, fx, tmp_path, monkeypatch):
    path = shutil.copy(SMALL / "lora_dora-rows.safetensors", tmp_path / "mine.safetensors")
    file = read_lora(path)
    model.set_loras([LoraUse(file, 1.0)])
    path.unlink()
    path.write_bytes(b"not a LoRA any more")
    monkeypatch.setattr(lora_module, "_read_safetensors", lambda *a: pytest.fail("a file was read"))
    for s in ("0.5", "1.7", "1"):
        model.set_loras([LoraUse(file, float(s))])
        torch.testing.assert_close(forward(model, fx), fx.tensors[f"dora-rows_s{s}_out"], rtol=0, atol=1e-4)


def test_stacking_order_matters_and_each_adapter_takes_the_previous_output(model):
    a, b = golden_file("lora"), golden_file("dora-rows")
    name = "transformer.layers.0.cross_attn.to_q"
    module = model.dit.get_submodule(name)

    def weight(uses):
        model.set_loras(uses)
        return module.weight.detach().clone()

    base = weight(())
    ab = weight([LoraUse(a, 0.7), LoraUse(b, 1.3)])
    ba = weight([LoraUse(b, 1.3), LoraUse(a, 0.7)])
    assert (ab - ba).abs().max() > 1e-3
    model.set_loras(())
    weights = {n: m.weight for n, m in lora_module.lora_targets(model.dit, model.conditioner).items()}
    p_a, p_b = (lora_module.bind(f, weights)["model." + name] for f in (a, b))  # each file's adapter here
    torch.testing.assert_close(ab, p_b(p_a(base, 0.7), 1.3), rtol=0, atol=0)
    torch.testing.assert_close(ba, p_a(p_b(base, 1.3), 0.7), rtol=0, atol=0)


# --------------------------------------------------------------------------- intervals


def test_an_interval_switches_per_step_and_effective_weights_are_computed_once(model, monkeypatch):
    calls = []
    original = LoraStack._effective
    monkeypatch.setattr(LoraStack, "_effective", lambda self, name, chain: calls.append(name) or original(self, name, chain))
    uses = (LoraUse(golden_file("lora"), 1.0, (0.0, 0.5)),)
    L = model.latent_length(0.5, 0.1)
    job = Generation(("rain",), (0.5,), L, 8, headroom_seconds=0.1, loras=uses)
    steps = []
    fast = model.sample(job, generator_noise(torch.Generator().manual_seed(3)), callback=steps.append)
    acting = [model.select_loras(s.t) for s in steps]
    assert () in acting and (0,) in acting  # it switched off and on within the run
    assert len(calls) == len(set(calls))  # each module's effective weight computed once
    plain = model.sample(job, generator_noise(torch.Generator().manual_seed(3)), plain=True)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    without = model.sample(Generation(("rain",), (0.5,), L, 8, headroom_seconds=0.1),
                           generator_noise(torch.Generator().manual_seed(3)))
    assert not torch.allclose(fast, without) and model.loras == ()


def test_bracket_expansion_and_filter_items():
    assert expand_brackets("layers.[1-3].ff") == ["layers.1.ff", "layers.2.ff", "layers.3.ff"]
    assert expand_brackets("a[2-0]b[0-1]") == ["a2b0", "a2b1", "a1b0", "a1b1", "a0b0", "a0b1"]
    assert expand_brackets("plain") == ["plain"]
    assert layer_filter_patterns(" Self_Attn , layers.[1-2].TO_X,") == ("self_attn", "layers.[1-2].to_x")
    assert layer_filter_patterns("") == ()


# --------------------------------------------------------------------------- our own adapter files


def _svd_bases(w, rank):
    """The documented -xs bases, written independently: float64 SVD, sign per U column."""
    U, _, Vh = torch.linalg.svd(w.double(), full_matrices=False)
    U, V = U[:, :rank], Vh[:rank].T
    signs = torch.stack([U[U[:, j].abs().argmax(), j].sign() for j in range(rank)])
    return (U * signs).float(), (V * signs).float()


def _rows(v, m):
    return v / (v.norm(dim=1, keepdim=True) + 1e-12) * m[:, None]


def _cols(v, m):
    return v / (v.norm(dim=0, keepdim=True) + 1e-12) * m[None, :]


def _random_adapter(kind, w, rank, g):
    fan_out, fan_in = w.shape
    n = lambda *shape: torch.randn(*shape, generator=g).half().float()
    t = {"M_xs": n(rank, rank)} if kind.endswith("-xs") else {"lora_A": n(rank, fan_in), "lora_B": n(fan_out, rank)}
    if kind.startswith("dora-rows"):
        t["magnitude"] = n(fan_out).abs()
    elif kind.startswith("dora-cols"):
        t["magnitude"] = n(fan_in).abs()
    elif kind.startswith("bora"):
        t["magnitude_r"], t["magnitude_c"] = n(fan_out).abs(), n(fan_in).abs()
    return t


def _documented(kind, w, t, c, s, rank):
    """The README's formulas for one adapter on a 2-D weight."""
    if kind.endswith("-xs"):
        U, V = _svd_bases(w, rank)
        update = U @ t["M_xs"] @ V.T
    else:
        update = t["lora_B"] @ t["lora_A"]
    v = w + c * s * update
    if kind.startswith("dora-rows"):
        return _rows(v, t["magnitude"])
    if kind.startswith("dora-cols"):
        return _cols(v, t["magnitude"])
    if kind.startswith("bora"):
        return _cols(_rows(v, t["magnitude_r"]), t["magnitude_c"])
    return v


@pytest.mark.parametrize("kind", list(lora_module.ADAPTER_TYPES))
def test_our_own_file_follows_the_documented_formula(model, tmp_path, kind):
    """Rank 3, alpha 5.5, an include with a downward bracket and an exclude: the modules that
    get an adapter, and the effective weights, from the README's rules written independently."""
    rank, alpha, strength = 3, 5.5, 0.8
    include, exclude = ["layers.[1-0].self_attn", "to_global_embed.2", "preprocess"], ["to_out"]
    chosen = ["transformer.layers.0.self_attn.to_qkv", "transformer.layers.1.self_attn.to_qkv",
              "to_global_embed.2", "preprocess_conv"]
    model.set_loras(())
    g = torch.Generator().manual_seed(7)
    tensors, expected = {}, {}
    for name in chosen + ["transformer.layers.0.self_attn.to_out"]:  # the last is excluded: ignored
        w = model.dit.get_submodule(name).weight.detach()
        w2 = w.reshape(w.shape[0], -1)
        tensors["model." + name] = t = _random_adapter(kind, w2, rank, g)
        expected[name] = _documented(kind, w2, t, alpha / rank, strength, rank).reshape(w.shape)
    config = {"rank": rank, "alpha": alpha, "adapter_type": kind, "dropout": 0.1, "include": include, "exclude": exclude}
    file = read_lora(_write(tmp_path / f"{kind}.safetensors", tensors, config))
    base = {n: m.weight for n, m in model.dit.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d))}
    model.set_loras([LoraUse(file, strength)])
    assert sorted(model.lora_stack.adapted(0)) == sorted("model." + n for n in chosen)
    for name, module in model.dit.named_modules():
        if name in expected and name in chosen:
            torch.testing.assert_close(module.weight, expected[name], rtol=1e-4, atol=1e-5)
        elif name in base:
            assert module.weight is base[name]
    model.set_loras(())


def test_config_defaults_and_the_legacy_dora_type(tmp_path):
    A, B = torch.randn(5, 8), torch.randn(6, 5)
    bare = read_lora(_write(tmp_path / "bare.safetensors", {"model.x": {"lora_A": A, "lora_B": B}}, None))
    assert (bare.config.rank, bare.config.alpha, bare.config.adapter_type.name) == (5, 5.0, "lora")
    for shape, resolved in (((1, 8), "dora-cols"), ((6, 1), "dora-rows"), ((6,), "dora-rows")):
        legacy = read_lora(_write(tmp_path / "legacy.safetensors", {"model.x": {
            "lora_A": A, "lora_B": B, "magnitude": torch.rand(shape)}}, {"adapter_type": "dora", "rank": 5}))
        assert legacy.config.adapter_type.name == resolved
        assert legacy.tensors["model.x"]["magnitude"].dim() == 1
    with pytest.raises(LoraError, match="adapter_type 'loha' is not supported"):
        read_lora(_write(tmp_path / "loha.safetensors", {"model.x": {"lora_A": A, "lora_B": B}}, {"adapter_type": "loha"}))
