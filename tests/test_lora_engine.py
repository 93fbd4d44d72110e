"""LoRA through the engine and the CLI on the tiny checkpoint with the golden adapter files: two
LoRAs at their strengths change the take, the CLI's file equals the engine called directly, a
strength change reads no file, and a pickled adapter is refused without being unpickled."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf

from studio.__main__ import main
from studio.api import GenerateRequest, LoraSpec
from studio.engine import RealEngine
from tests.conftest import GOLDEN

ADAPTERS = GOLDEN / "sa3_small_tiny"


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return RealEngine(), str(tiny_checkpoint)


def _gen(model, *loras):
    return GenerateRequest(model=model, prompt="rain", seconds=1.0, seed=4, steps=3, loras=loras)


def test_two_loras_change_the_take_and_the_cli_equals_the_engine(engine, tmp_path):
    e, model = engine
    first, second = ADAPTERS / "lora_lora.safetensors", ADAPTERS / "lora_dora-rows.safetensors"
    loras = (LoraSpec(path=str(first), strength=0.8), LoraSpec(path=str(second), strength=0.5))
    plain = e.generate(_gen(model)).audio
    with_loras = e.generate(_gen(model, *loras)).audio
    assert not np.allclose(with_loras, plain, atol=1e-4)
    out = tmp_path / "lora.wav"
    assert main(["generate", "rain", "--seconds", "1", "--seed", "4", "--steps", "3", "--model", model,
                 "--lora", f"{first}:0.8", "--lora", f"{second}:0.5", "-o", str(out)]) == 0
    np.testing.assert_allclose(sf.read(out, dtype="float32", always_2d=True)[0].T, with_loras, atol=2 ** -22)
    assert np.array_equal(e.generate(_gen(model)).audio, plain)  # removing them restores the base model


def test_a_strength_change_reads_no_file(engine, monkeypatch):
    e, model = engine
    spec = LoraSpec(path=str(ADAPTERS / "lora_lora.safetensors"), strength=1.0)
    e.generate(_gen(model, spec))
    import studio.engine as engine_module
    monkeypatch.setattr(engine_module, "read_lora", lambda path: pytest.fail("the file was read again"))
    half = e.generate(_gen(model, LoraSpec(path=spec.path, strength=0.5))).audio
    full = e.generate(_gen(model, spec)).audio
    assert not np.allclose(half, full, atol=1e-4)


def test_a_pickled_adapter_is_refused_without_unpickling(engine, tmp_path, capsys):
    e, model = engine
    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    bad = tmp_path / "adapter.ckpt"
    bad.write_bytes(pickle.dumps(Trap()))
    with pytest.raises(ValueError, match="pickle|safetensors"):
        e.generate(_gen(model, LoraSpec(path=str(bad))))
    assert main(["generate", "rain", "--seconds", "1", "--model", model, "--lora", str(bad),
                 "-o", str(tmp_path / "x.wav")]) == 1
    assert "Traceback" not in capsys.readouterr().err and not marker.exists()
