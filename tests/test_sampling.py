"""models.sampling: schedules at parity; samplers replaying the official runs step by step."""

import dataclasses
import typing

import pytest
import torch

from models.config import DiffusionConfig, DistributionShiftConfig, load_model_config
from models.parity.conditioning import run_schedules
from models.parity.core import Fixture, check
from models.noise import generator_noise, recorded_noise
from models.sampling import (SAMPLERS, FluxShift, FullShift, LogSNRShift, build_schedule, effective_seq_len,
                             sample_euler, sample_pingpong, sampler_for, sampling_shift, schedule_from)
from tests.conftest import GOLDEN

MODELS = ["sa3_small_tiny", "sa3_medium_tiny"]
SAMPLE_RATE, DOWNSAMPLING = 44100, 4096


def _generate_runs():
    runs = []
    for folder in MODELS:
        fx = Fixture.read(GOLDEN / folder / "generate.json")
        for run in fx.meta["runs"]:
            runs.append(pytest.param(fx, run, id=f"{folder}-{run['name']}"))
    return runs


GENERATE_RUNS = _generate_runs()


def _draws(fx, run, site=None):
    seq = fx.meta[f"{run['name']}_noise_sequence"]
    return [fx.tensors[d["name"]] for d in seq if site is None or site in d["site"]]


@pytest.mark.parametrize("folder", MODELS)
def test_schedules_parity(folder):
    cases = list(run_schedules(Fixture.read(GOLDEN / folder / "schedules.json")))
    assert cases and all(c.status == "pass" for c in cases), [c.line() for c in cases if c.status != "pass"]


@pytest.mark.parametrize("fx, run", GENERATE_RUNS)
def test_schedule_of_every_generate_run(fx, run):
    """The engine's schedule (config shift, lengths from seconds) == the one official ran."""
    name, kw = run["name"], run["kwargs"]
    config = load_model_config(fx.folder / "model_config.json")
    batch = kw.get("batch_size", 1)
    seconds = kw["duration"] if isinstance(kw["duration"], list) else [kw["duration"]] * batch
    lengths = effective_seq_len(seconds, SAMPLE_RATE, DOWNSAMPLING)
    assert torch.equal(lengths, fx.tensors[f"{name}_effective_seq_len"])
    sigma_max = kw.get("init_noise_level", 1.0) if "init_audio" in kw else 1.0
    sigmas = build_schedule(kw["steps"], sigma_max, sampling_shift(config.diffusion), lengths)
    assert check(name, sigmas, fx.tensors[f"{name}_sigmas"]).status == "pass"


@pytest.mark.parametrize("fx, run", GENERATE_RUNS)
def test_sampler_replays_every_generate_run(fx, run):
    """Feed the official model outputs and noise draws back: every model input (x, t) and
    the sampled latents must be the official ones."""
    name, kw = run["name"], run["kwargs"]
    golden = fx.tensors
    calls = []

    def model(x, t):
        k = len(calls)
        calls.append(k)
        assert check(f"step{k}_x", x, golden[f"{name}_step{k}_x"]).status == "pass"
        assert check(f"step{k}_t", t, golden[f"{name}_step{k}_t"]).status == "pass"
        return golden[f"{name}_step{k}_out"]

    x0, sigmas = golden[f"{name}_step0_x"], golden[f"{name}_sigmas"]
    pingpong = _draws(fx, run, "sample_flow_pingpong")
    noise = recorded_noise(pingpong)
    out = (sample_pingpong if pingpong else sample_euler)(model, x0, sigmas, noise)
    assert len(calls) == run["n_model_calls"] and not noise.remaining
    if kw.get("return_latents"):
        assert check(name, out, golden[f"{name}_output"]).status == "pass"


@pytest.mark.parametrize("fx, run", GENERATE_RUNS)
def test_a_seed_reproduces_the_official_draws(fx, run):
    """One CPU generator seeded like torch.manual_seed(seed), drawn in the official order,
    gives the official noise bit for bit."""
    noise = generator_noise(torch.Generator().manual_seed(run["kwargs"]["seed"]))
    for golden in _draws(fx, run):
        assert torch.equal(noise(golden.shape), golden)


def test_pingpong_draws_once_per_step_in_order():
    x = torch.zeros(2, 3, 5)
    sigmas = build_schedule(4, shift=LogSNRShift(rate=0.0), seq_len=5)
    draws = [torch.full((2, 3, 5), float(i)) for i in range(4)]
    seen = []
    def model(x, t):  # velocity x / t: the denoised estimate is 0
        seen.append(x.clone())
        return x / t.view(-1, 1, 1)

    sample_pingpong(model, x, sigmas, recorded_noise(draws))
    for i in range(1, 4):  # so each input is t_i * draw_{i-1}
        torch.testing.assert_close(seen[i], sigmas[i] * draws[i - 1])
    with pytest.raises(RuntimeError, match="exhausted"):
        sample_pingpong(lambda x, t: x, x, sigmas, recorded_noise(draws[:3]))
    with pytest.raises(RuntimeError, match=r"shape \(2, 3, 4\)"):
        sample_pingpong(lambda x, t: x, x, sigmas, recorded_noise([torch.zeros(2, 3, 4)] * 4))


def test_callback_reports_every_step():
    steps = []
    x = torch.randn(1, 2, 3, generator=torch.Generator().manual_seed(0))
    sigmas = torch.linspace(1, 0, 6)
    sample_euler(lambda x, t: x, x, sigmas, recorded_noise([]), callback=steps.append)
    assert [s.i for s in steps] == list(range(5)) and {s.steps for s in steps} == {5}
    assert torch.equal(steps[0].x, x) and torch.equal(steps[0].denoised, x - 1.0 * x)


def test_shared_and_per_item_schedules_agree():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 6, generator=gen)
    sigmas = build_schedule(8, shift=LogSNRShift(rate=0.0), seq_len=6)
    model = lambda x, t: 0.5 * x + t.view(-1, 1, 1)  # noqa: E731
    for sampler in (sample_euler, sample_pingpong):
        noise = lambda: generator_noise(torch.Generator().manual_seed(2))  # noqa: E731
        assert torch.equal(sampler(model, x, sigmas, noise()), sampler(model, x, sigmas.expand(3, -1), noise()))


def test_euler_is_exact_for_a_straight_flow():
    """With the true velocity of a straight path (noise - data), Euler lands on the data."""
    gen = torch.Generator().manual_seed(3)
    data, eps = torch.randn(2, 4, 5, generator=gen), torch.randn(2, 4, 5, generator=gen)
    no_draws = recorded_noise([])  # Euler is deterministic: a draw would raise "exhausted"
    sigmas = build_schedule(7, shift=LogSNRShift(rate=0.0), seq_len=5)
    out = sample_euler(lambda x, t: eps - data, eps, sigmas, no_draws)
    torch.testing.assert_close(out, data)


def test_every_objective_a_config_may_declare_has_its_sampler():
    """The table keyed by ``diffusion_objective``: every value the config accepts, each to the
    sampler of the official ``sample_diffusion`` for it."""
    objectives = typing.get_args(typing.get_type_hints(DiffusionConfig)["diffusion_objective"])
    assert set(SAMPLERS) == set(objectives)
    for name, sampler in (("model_config.json", sample_pingpong), ("model_config_base.json", sample_euler)):
        assert sampler_for(load_model_config(GOLDEN / "sa3_small_tiny" / name).diffusion) is sampler


def test_sampling_shift_of_the_configs():
    config = load_model_config(GOLDEN / "sa3_small_tiny" / "model_config.json").diffusion
    assert sampling_shift(config) == LogSNRShift(anchor_length=2000, anchor_logsnr=-6.2, rate=0.0, logsnr_end=2.0)
    options = DistributionShiftConfig(base_shift=0.3, max_shift=1.0, min_length=16, max_length=512)
    assert sampling_shift(dataclasses.replace(config, sampling_distribution_shift_options=options)) == \
        FullShift(0.3, 1.0, 16, 512)


def test_shifted_schedules_keep_their_endpoints():
    lengths = torch.tensor([0.0, 300.0, 5000.0])
    for shift in (LogSNRShift(rate=0.0), LogSNRShift(rate=1.0, anchor_length=64), FullShift()):
        t = build_schedule(8, 0.7, shift, lengths)
        assert t.shape == (3, 9) and (t[:, 0] == 0.7).all() and (t[:, -1] == 0).all()
        # Only sigmas[0] is reset to sigma_max; the rest is the warped grid, which may
        # start above it (official behaviour: audio-to-audio's second step is noisier).
        assert (t[:, 2:] < t[:, 1:-1]).all()
    with pytest.raises(ValueError, match="needs seq_len"):
        build_schedule(8, shift=FullShift())


@pytest.mark.parametrize("shift", [LogSNRShift(rate=0.0), LogSNRShift(rate=1.0), FullShift(), FluxShift(alpha_min=1.5, alpha_max=6.0)])
@pytest.mark.parametrize("sigma", [0.3, 0.7, 0.95])
def test_schedule_from_starts_at_the_strength_and_only_goes_down(shift, sigma):
    lengths = torch.tensor([50.0, 700.0])
    t = schedule_from(8, sigma, shift, lengths)
    assert t.shape == (2, 9)
    assert torch.all(t[:, 0] == sigma) and torch.all(t[:, -1] == 0)
    assert torch.all(t[:, 1:] < t[:, :-1])  # every step lowers the noise
    # the rest of the curve is the shifted schedule's own points
    full = build_schedule(8, 1.0, shift, lengths)
    assert torch.all((t[:, 1:-1] > 0) & (t[:, 1:-1] < full[:, :1]))


def test_the_official_a2a_schedule_goes_back_up():
    """Why schedule_from exists: the official reset makes step 2 noisier than step 1."""
    t = build_schedule(8, 0.7, LogSNRShift(rate=0.0), torch.tensor([50.0]))
    assert t[0, 1] > t[0, 0]
