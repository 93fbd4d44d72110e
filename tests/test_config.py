import json

import pytest

from models.config import (AutoencoderModelConfig, ConfigError, DiffusionModelConfig,
                           load_model_config, parse_model_config)
from tests.conftest import GOLDEN, REFERENCE

RELEASED = sorted((REFERENCE / "configs").glob("*.json"))


@pytest.mark.parametrize("path", RELEASED, ids=lambda p: p.stem)
def test_every_released_config_parses(path):
    cfg = load_model_config(path)
    if path.stem.startswith("SAME"):
        assert isinstance(cfg, AutoencoderModelConfig)
    else:
        assert isinstance(cfg, DiffusionModelConfig)
        assert cfg.is_base == path.stem.endswith("-base")
        assert cfg.diffusion.config.attn_kwargs.differential == ("medium" in path.stem)
    assert cfg.same.downsampling_ratio == 4096
    assert cfg.same.patching.patch_size == 256


def test_values_are_typed_and_frozen():
    cfg = load_model_config(REFERENCE / "configs" / "SAME-L.json")
    assert cfg.same.encoder.sliding_window == (1, 1)
    assert cfg.same.decoder.sinusoidal_blocks == (8,)
    assert cfg.same.encoder.dyt is True  # absent from SAME-L's json: the official default
    with pytest.raises(AttributeError):
        cfg.same.encoder.channels = 3


def _small():
    return json.loads((GOLDEN / "sa3_small_tiny" / "model_config.json").read_text())


def test_unknown_key_names_its_json_path():
    data = _small()
    data["model"]["diffusion"]["config"]["fancy_option"] = 1
    with pytest.raises(ConfigError, match=r"\$\.model\.diffusion\.config\.fancy_option: unknown key"):
        parse_model_config(data)


def test_missing_key_names_its_json_path():
    data = _small()
    del data["model"]["pretransform"]["config"]["encoder"]["config"]["strides"]
    with pytest.raises(ConfigError, match=r"encoder\.config\.strides: missing key"):
        parse_model_config(data)


def test_unsupported_value_is_named():
    data = _small()
    data["model"]["diffusion"]["diffusion_objective"] = "v"
    with pytest.raises(ConfigError, match=r"diffusion_objective: unsupported value 'v'"):
        parse_model_config(data)


def test_wrong_type_is_named():
    data = _small()
    data["model"]["diffusion"]["config"]["depth"] = "twenty"
    with pytest.raises(ConfigError, match=r"config\.depth: expected int"):
        parse_model_config(data)


def test_unreadable_file(tmp_path):
    bad = tmp_path / "model_config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read model config"):
        load_model_config(bad)
