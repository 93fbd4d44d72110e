"""studio.api: a request checks its own numbers when made, with one sentence naming the fix."""
from __future__ import annotations

import numpy as np
import pytest

from studio.api import MAX_REGIONS, MAX_STEPS, EditRequest, GenerateRequest, LoraSpec, Region, check_finite, EngineError

SRC = np.zeros((2, 44100), np.float32)


def gen(**kw):
    return GenerateRequest(**{"model": "small-music", "prompt": "pads", "seconds": 2.0, "seed": 1, **kw})


def ed(**kw):
    return EditRequest(**{"model": "small-music", "source": SRC, "regions": (Region(0.1, 0.5),), "prompt": "pads",
                          "seed": 1, **kw})


@pytest.mark.parametrize("kw, message", [
    (dict(seconds=float("nan")), "Length must be a number"),
    (dict(seconds=float("inf")), "Length must be a number"),
    (dict(seconds=0.0), "Length must be more than 0"),
    (dict(seed=-1), "seed must be a whole number"),
    (dict(seed=10**23), "seed must be a whole number"),
    (dict(seed=1.5), "seed must be a whole number"),
    (dict(steps=0), "Steps must be a whole number from 1"),
    (dict(steps=-3), "Steps must be a whole number from 1"),
    (dict(steps=MAX_STEPS + 1), f"from 1 to {MAX_STEPS}"),
    (dict(init_strength=2.0), "more than 0 and at most 1"),
    (dict(init_strength=0.0), "more than 0 and at most 1"),
    (dict(prompt="bad \ud800 paste"), "invalid character at position 5"),
    (dict(model=""), "Pick a model"),
])
def test_generate_request_refuses(kw, message):
    with pytest.raises(ValueError, match=message):
        gen(**kw)


@pytest.mark.parametrize("kw, message", [
    (dict(strength=2.0), "Strength must be more than 0 and at most 1"),
    (dict(strength=-1.0), "Strength must be more than 0 and at most 1"),
    (dict(continue_seconds=float("inf")), "Continue-by must be a number"),
    (dict(continue_seconds=-1.0), "Continue-by must be 0 seconds or more"),
    (dict(context_seconds=float("nan")), "Context must be a number"),
    (dict(crossfade_ms=float("nan")), "Crossfade must be a number"),
    (dict(regions=tuple(Region(i * 0.01, i * 0.01 + 0.005) for i in range(MAX_REGIONS + 1))),
     f"an edit takes at most {MAX_REGIONS}"),
    (dict(regions=(Region(0.1, 0.5, "x\udc00"),)), "prompt of region 1 holds an invalid character"),
])
def test_edit_request_refuses(kw, message):
    with pytest.raises(ValueError, match=message):
        ed(**kw)


def test_valid_requests_and_keyword_only():
    assert gen(steps=MAX_STEPS, seed=2**63 - 1).steps == MAX_STEPS
    assert ed(strength=1.0, context_seconds=0.0).context_seconds == 0.0
    with pytest.raises(TypeError):
        GenerateRequest("small-music", "pads", 2.0, 1)  # positional fields could be silently swapped


def test_lora_spec_and_finite_check():
    with pytest.raises(ValueError, match="active interval"):
        LoraSpec(path="a.safetensors", interval=(0.8, 0.2))
    with pytest.raises(ValueError, match="LoRA strength must be a number"):
        LoraSpec(path="a.safetensors", strength=float("nan"))
    check_finite(np.zeros(4))
    with pytest.raises(EngineError, match="invalid audio"):
        check_finite(np.array([0.0, np.inf]))
