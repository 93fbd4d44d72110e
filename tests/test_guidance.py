"""-base guidance from the CLI: CFG, APG and the negative prompt reach the sampler, and the file
equals the engine called directly with the same request."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from studio.__main__ import main
from studio.api import GenerateRequest, Guidance
from studio.engine import RealEngine
from tests.conftest import GOLDEN


@pytest.fixture(scope="module")
def base_checkpoint(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("base") / "tiny-base"
    shutil.copytree(tiny_checkpoint, folder)
    shutil.copy(GOLDEN / "sa3_small_tiny" / "model_config_base.json", folder / "model_config.json")
    return str(folder)


def _cli(base, tmp_path, name, *flags):
    out = tmp_path / f"{name}.wav"
    assert main(["generate", "rain", "--seconds", "1", "--seed", "5", "--steps", "3", "--model", base,
                 "-o", str(out), *flags]) == 0
    return sf.read(out, always_2d=True, dtype="float32")[0].T


@pytest.mark.parametrize("flags, guidance", [
    ((), Guidance()),
    (("--cfg", "3"), Guidance(cfg_scale=3.0)),
    (("--apg", "0"), Guidance(apg_scale=0.0)),
    (("--negative-prompt", "static hiss"), Guidance(negative_prompt="static hiss")),
])
def test_cli_guidance_reaches_the_sampler(base_checkpoint, tmp_path, flags, guidance):
    got = _cli(base_checkpoint, tmp_path, "take", *flags)
    engine = RealEngine()
    direct = engine.generate(GenerateRequest(model=base_checkpoint, prompt="rain", seconds=1.0, seed=5, steps=3,
                                             guidance=guidance)).audio
    np.testing.assert_allclose(got, direct, atol=2 ** -22)  # 24-bit WAV
    if flags:
        default = _cli(base_checkpoint, tmp_path, "default")
        assert not np.allclose(got, default, atol=1e-3)
