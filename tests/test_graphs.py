"""The graph-ready sampler and models/graphs.py: a whole sampler loop that never waits for the device
and draws nothing, the static-buffer bookkeeping of replayed steps (on a CPU, with a backend that
replays by running the step), batched takes with their own seeds; on CUDA, real graphs against
the eager path."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import models.sa3
from bench._common import HostSyncs, snr_db
from models.graphs import StepGraphs, clone_tree, eager_capture, load, signature, tree_bytes
from models.noise import batched_noise, generator_noise
from models.parity import generate as parity
from models.parity.core import Fixture
from models.sa3 import Generation
from tests.conftest import GOLDEN

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="CUDA graphs need an NVIDIA GPU; this machine has none")


def tiny(folder: str = "sa3_small_tiny", config: str = "model_config.json"):
    fx = Fixture.read(GOLDEN / folder / "generate.json")
    return parity._model(fx.folder, config)


def jobs(model, kinds=("t2a", "edit", "a2a")):
    """Jobs of each kind on ``model``: text to audio, an edit (reference + keep mask), audio to audio."""
    L = model.latent_length(3.0, 1.0)
    C = model.cfg.io_channels
    g = torch.Generator().manual_seed(5)
    reference = torch.randn(1, C, L, generator=g)
    keep = torch.ones(1, L)
    keep[:, L // 3: L // 2] = 0
    made = {"t2a": Generation(("drums",), (3.0,), L, 8),
            "edit": Generation(("a fill", "a riser"), (3.0, 3.0), L, 8, reference=reference, keep=keep.expand(2, -1)),
            "a2a": Generation(("drums",), (3.0,), L, 8, init=reference, init_noise_level=0.7, monotonic_init=True)}
    return {k: made[k] for k in kinds}


def sample(model, job, seed=0, callback=None):
    return model.sample(job, generator_noise(torch.Generator().manual_seed(seed)), callback=callback)


def graphed(model, **limits):
    clone = copy.deepcopy(model)
    clone.graphs = StepGraphs(capture=eager_capture, **limits)
    return clone


# --------------------------------------------------------------------------- the loop itself


def counted(source, state):
    """``source``, counting in ``state`` the draws made while ``state["in_loop"]``."""
    def noise(shape):
        state["draws_in_loop"] += state["in_loop"]
        return source(shape)
    return noise


@pytest.mark.parametrize("folder, config", [("sa3_small_tiny", "model_config.json"),
                                            ("sa3_medium_tiny", "model_config.json"),
                                            ("sa3_small_tiny", "model_config_base.json")],
                         ids=["small-pingpong", "medium-pingpong", "base-euler-cfg"])
def test_the_whole_step_loop_never_waits_for_the_device_nor_draws(folder, config, monkeypatch):
    """Every step of every kind (text to audio, edit, audio to audio; CFG/APG on -base): no value read
    back to the host (what a CUDA graph cannot hold), and no noise drawn once the loop started (all
    draws are made up front from the request's generator)."""
    model = tiny(folder, config)
    state = {"in_loop": False, "syncs": [], "draws_in_loop": 0, "steps": 0}
    inner = models.sa3.integrate

    def watched(step, x, t, draws, callback=None):
        state["in_loop"] = True
        with HostSyncs() as syncs:
            out = inner(step, x, t, draws, lambda s: state.__setitem__("steps", state["steps"] + 1))
        state["in_loop"] = False
        state["syncs"] += syncs.calls
        return out
    monkeypatch.setattr(models.sa3, "integrate", watched)
    for name, job in jobs(model).items():
        if config == "model_config_base.json":
            job = dataclasses.replace(job, steps=12, cfg_scale=6.0)
        state["steps"] = 0
        model.sample(job, counted(generator_noise(torch.Generator().manual_seed(1)), state))
        assert state["steps"] == job.steps, name
    assert state["syncs"] == [] and state["draws_in_loop"] == 0


def test_the_loop_draws_in_the_official_order():
    """Drawn up front, the draws are still the first noise then one per step from one generator: the
    take equals a step-by-step replay of those draws (the parity fixtures check it against the
    official code; this checks the order directly)."""
    model = tiny()
    job = jobs(model, ("t2a",))["t2a"]
    seen = []
    source = generator_noise(torch.Generator().manual_seed(2))
    model.sample(job, lambda shape: seen.append(source(shape)) or seen[-1])
    again = generator_noise(torch.Generator().manual_seed(2))
    assert len(seen) == 1 + job.steps and all(torch.equal(d, again(d.shape)) for d in seen)


# --------------------------------------------------------------------------- static buffers


def test_static_copies_keep_structure_and_broadcast_views():
    base = torch.randn(2, 1, 4)
    tree = (base.expand(2, 5, 4), torch.randn(3, 2).t(), None, True, (7, torch.zeros(2, dtype=torch.bool)))
    static = clone_tree(tree)
    assert signature(static) == signature(tree)
    assert static[0].stride()[1] == 0 and static[0].data_ptr() != base.data_ptr()
    fresh = (torch.randn(2, 1, 4).expand(2, 5, 4), torch.randn(3, 2).t(), None, True,
             (7, torch.ones(2, dtype=torch.bool)))
    load(static, fresh)
    pairs = ((static[0], fresh[0]), (static[1], fresh[1]), (static[4][1], fresh[4][1]))
    assert all(torch.equal(a, b) for a, b in pairs)
    assert tree_bytes(static) == (2 * 4 + 6) * 4 + 2
    assert signature(tree) != signature((base.expand(2, 5, 4).contiguous(), *tree[1:]))  # a copy is not a view
    assert signature(tree) != signature((*tree[:3], False, tree[4]))  # a Python branch decides kernels


def test_context_padded_to_a_multiple_gives_the_same_step():
    """Keys padded with count 0 (a -inf bias: no weight) leave every softmax as it was."""
    model = tiny("sa3_medium_tiny")
    cond = model.conditioner(("a short prompt", "a much longer prompt with many more words in it"), (3.0, 3.0))
    dit, g = model.dit, torch.Generator().manual_seed(3)
    x, t = torch.randn(2, dit.cfg.io_channels, 20, generator=g), torch.tensor([0.9, 0.4])
    plain = dit.prepare(cond.cross_attn_cond, cond.global_cond)
    padded = dit.prepare(cond.cross_attn_cond, cond.global_cond, context_multiple=32)
    assert padded.cross_kv[0][1].shape[2] % 32 == 0 and padded.cross_bias.shape[-1] % 32 == 0
    assert padded.cross_kv[0][1].shape[2] > plain.cross_kv[0][1].shape[2]
    torch.testing.assert_close(dit(x, t, padded), dit(x, t, plain), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("folder, config", [("sa3_small_tiny", "model_config.json"),
                                            ("sa3_small_tiny", "model_config_base.json")], ids=["pingpong", "cfg"])
def test_replayed_steps_load_each_generation_into_their_buffers(folder, config):
    """Generations of one shape replay one captured step, each on its own seed, seconds, mask,
    reference and init (copied into the static buffers): each take equals the take of a runner that
    never saw another generation, and the eager take. Another batch captures another step; past
    max_graphs the least recently used is dropped."""
    model = tiny(folder, config)
    guidance = {"cfg_scale": 5.0} if "base" in config else {}
    runner, fresh = graphed(model), graphed(model)
    made = {k: dataclasses.replace(j, **guidance) for k, j in jobs(model).items()}
    made["shorter"] = dataclasses.replace(made["t2a"], seconds=(2.5,))  # other seconds, same shapes
    made["other"] = Generation(("drums", "bass"), (3.0, 3.0), made["edit"].latent_length, 8, **guidance)
    for seed, (name, job) in enumerate(made.items()):
        ours = sample(runner, job, seed)
        fresh.graphs.clear()
        assert torch.equal(ours, sample(fresh, job, seed)), name
        graphs, runner.graphs = runner.graphs, None  # the same weights in memory (a copy's may round
        eager = sample(runner, job, seed)           # differently: their alignment picks the CPU kernels)
        runner.graphs = graphs
        assert torch.equal(ours, eager), name  # a CPU pads no context: the eager numbers
    assert runner.graphs.captures == 3  # t2a (a2a and shorter replay it: same shapes), the edit, the other
    longer = Generation(("drums",), (5.0,), model.latent_length(5.0, 1.0), 8, **guidance)
    small = graphed(model, max_graphs=1)
    for job in (made["t2a"], longer, made["t2a"]):
        sample(small, job)
    assert small.graphs.captures == 3 and len(small.graphs) == 1


def test_steps_report_their_own_inputs_and_estimates():
    """The callback of a replayed step gets that step's x and denoised estimate (copies: the static
    buffers are overwritten by the next replay), as the eager loop gives them."""
    model = tiny()
    job = jobs(model, ("edit",))["edit"]
    runner = graphed(model)
    got, want = [], []
    sample(runner, job, 4, callback=got.append)
    runner.graphs.clear()
    sample(runner, job, 4, callback=want.append)  # captured afresh: the same numbers
    assert [s.i for s in got] == list(range(job.steps))
    assert all(torch.equal(a.x, b.x) and torch.equal(a.denoised, b.denoised) for a, b in zip(got, want, strict=True))
    assert not torch.equal(got[0].denoised, got[1].denoised) and not torch.equal(got[0].x, got[1].x)


def test_loras_and_plain_runs_stay_eager():
    model = tiny()
    runner = graphed(model)
    runner.sample(jobs(model, ("t2a",))["t2a"], generator_noise(torch.Generator().manual_seed(0)), plain=True)
    assert runner.graphs.captures == 0


def test_use_graphs_needs_cuda():
    if CUDA:
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA graphs need the model on a CUDA device"):
        copy.deepcopy(tiny()).use_graphs()


def test_the_engine_replays_graphs_on_cuda_only():
    from studio.api import EngineError
    from studio.engine import RealEngine
    assert RealEngine(device="cpu").graphs is False
    assert RealEngine.from_model(copy.deepcopy(tiny())).loaded() and tiny().graphs is None
    with pytest.raises(EngineError, match="CUDA graphs need a CUDA device, not cpu"):
        RealEngine(device="cpu", graphs=True)
    if CUDA:
        engine = RealEngine.from_model(on_cuda(tiny()))
        assert engine.graphs and engine._loaded["small-music"].model.graphs is not None


# --------------------------------------------------------------------------- batched takes


@pytest.mark.parametrize("folder, config", [("sa3_small_tiny", "model_config.json"),
                                            ("sa3_small_tiny", "model_config_base.json")], ids=["pingpong", "cfg"])
def test_takes_in_one_batch_each_keep_their_seed(folder, config):
    """N takes in one pass, each from its own seed: each starts from the noise it would start from
    alone, and ends within fp32 rounding of the take made alone. Not bit for bit on a CPU: a batch
    of one runs its (1, D) embeddings as matrix-vector products and a batch as matrix products,
    which round differently (~4e-6 on these latents); a replay must make the same batch."""
    model = tiny(folder, config)
    guidance = {"cfg_scale": 5.0} if "base" in config else {}
    L, seeds = model.latent_length(3.0, 1.0), (3, 11, 29)
    job = Generation(("a prompt",) * 3, (3.0,) * 3, L, 8, **guidance)
    first = []
    batch = model.sample(job, batched_noise([generator_noise(torch.Generator().manual_seed(s)) for s in seeds]),
                         callback=lambda s: first.append(s.x) if s.i == 0 else None)
    for k, seed in enumerate(seeds):
        steps = []
        alone = model.sample(Generation(("a prompt",), (3.0,), L, 8, **guidance),
                             generator_noise(torch.Generator().manual_seed(seed)), callback=steps.append)
        assert torch.equal(first[0][k:k + 1], steps[0].x)
        torch.testing.assert_close(batch[k:k + 1], alone, rtol=1e-4, atol=1e-4)
        assert snr_db(batch[k:k + 1], alone) > 80
    assert not torch.equal(batch[0], batch[1])
    with pytest.raises(ValueError, match="first dimension must be the number of takes"):
        batched_noise([generator_noise(torch.Generator())] * 2)((3, 4))


# --------------------------------------------------------------------------- CUDA


def on_cuda(model, dtype=torch.float32):
    from models.precision import Precision
    clone = copy.deepcopy(model).set_precision(Precision(dtype, torch.float32, dtype, "test")).to("cuda")
    clone.conditioner.prompt.encoder.encoder.to("cuda")
    return clone


@needs_cuda
@pytest.mark.parametrize("config", ["model_config.json", "model_config_base.json"], ids=["pingpong", "cfg"])
def test_cuda_graph_equals_the_eager_step_bit_for_bit_in_fp32(config):
    """A replayed graph runs the kernels of the eager step on the same inputs: equal bit for bit to
    the eager loop (graphs off) and to the same bookkeeping replayed eagerly, on one model."""
    model = on_cuda(tiny("sa3_medium_tiny" if config == "model_config.json" else "sa3_small_tiny", config))
    guidance = {"cfg_scale": 5.0} if "base" in config else {}
    graphs = StepGraphs()
    for seed, job in enumerate(jobs(model).values()):
        job = dataclasses.replace(job, **guidance)
        model.graphs = graphs
        ours = sample(model, job, seed)
        model.graphs = StepGraphs(capture=eager_capture)
        assert torch.equal(ours, sample(model, job, seed))
        model.graphs = None
        assert torch.equal(ours, sample(model, job, seed))
    assert graphs.captures == 2  # text to audio (audio to audio replays it), the edit


@needs_cuda
def test_cuda_graph_in_bf16_holds_the_bf16_floor():
    model32 = on_cuda(tiny("sa3_medium_tiny"))
    model16 = on_cuda(tiny("sa3_medium_tiny"), torch.bfloat16).use_graphs()
    for seed, job in enumerate(jobs(model32).values()):
        assert snr_db(sample(model16, job, seed), sample(model32, job, seed)) > 30


@needs_cuda
def test_a_replayed_generation_never_synchronises():
    """After capture, a whole generation's step loop runs without one host sync (CUDA's own check)."""
    model = on_cuda(tiny()).use_graphs()
    job = jobs(model, ("edit",))["edit"]
    sample(model, job)  # captures
    inner = models.sa3.integrate

    def strict(*args, **kw):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return inner(*args, **kw)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    models.sa3.integrate, original = strict, models.sa3.integrate
    try:
        sample(model, job, 1)
    finally:
        models.sa3.integrate = original
    assert model.graphs.captures == 1


@needs_cuda
def test_cuda_batched_takes_keep_their_seeds():
    model = on_cuda(tiny()).use_graphs()
    L, seeds = model.latent_length(3.0, 1.0), (3, 11)
    batch = model.sample(Generation(("a",) * 2, (3.0,) * 2, L, 8),
                         batched_noise([generator_noise(torch.Generator().manual_seed(s)) for s in seeds]))
    for k, seed in enumerate(seeds):
        alone = sample(model, Generation(("a",), (3.0,), L, 8), seed)
        assert snr_db(batch[k:k + 1], alone) > 60


@needs_cuda
def test_compiled_blocks_under_graphs_agree_with_eager():
    """Regional torch.compile (fused kernels) inside the replayed steps: fp32 rounding apart."""
    eager = on_cuda(tiny("sa3_medium_tiny"))
    fast = copy.deepcopy(eager).use_graphs()
    fast.dit.compile_blocks()
    for seed, job in enumerate(jobs(eager).values()):
        assert snr_db(sample(fast, job, seed), sample(eager, job, seed)) > 60
