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


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(sample_rate=0), r"\$\.sample_rate: must be a positive integer, got 0"),
    (lambda d: d.update(sample_size=-5), r"\$\.sample_size: must be a positive integer, got -5"),
    (lambda d: d["model"]["diffusion"]["config"].update(num_heads=0),
     r"\$\.model\.diffusion\.config\.num_heads: must be a positive integer"),
    (lambda d: d["model"]["pretransform"]["config"]["encoder"]["config"]["strides"].__setitem__(0, 0),
     r"encoder\.config\.strides\[0\]: must be a positive integer"),
    (lambda d: d["model"]["pretransform"]["config"].update(downsampling_ratio=0),
     r"pretransform\.config\.downsampling_ratio: must be a positive integer"),
    (lambda d: d["model"]["diffusion"]["config"].update(embed_dim=30, num_heads=4),
     r"\$\.model\.diffusion\.config: embed_dim must be a multiple of num_heads"),
    (lambda d: d["model"]["diffusion"]["sampling_distribution_shift_options"].update(min_length=9, max_length=9)
     if d["model"]["diffusion"].get("sampling_distribution_shift_options") else
     d["model"]["diffusion"].update(sampling_distribution_shift_options=dict(
         base_shift=0.5, max_shift=1.0, min_length=9, max_length=9)),
     r"sampling_distribution_shift_options: min_length must be below max_length"),
])
def test_invalid_values_name_their_json_path_and_the_fix(edit, message):
    """Values a network would divide by or size a tensor with: refused at the boundary, not
    as a ZeroDivisionError or a torch error deep inside loading."""
    data = _small()
    edit(data)
    with pytest.raises(ConfigError, match=message) as e:
        parse_model_config(data)
    assert "correct model_config.json" in str(e.value)


def test_nan_in_a_float_field_is_refused(tmp_path):
    data = _small()
    conds = data["model"]["conditioning"]["configs"]
    number = next(c for c in conds if c["type"] == "number")
    number["config"]["max_val"] = float("nan")
    path = tmp_path / "model_config.json"
    path.write_text(json.dumps(data))  # json writes NaN, and reads it back
    with pytest.raises(ConfigError, match=r"configs\[\d\]\.config\.max_val: must be a finite number, got nan"):
        load_model_config(path)
    number["config"]["max_val"] = number["config"].get("min_val", 0.0)
    with pytest.raises(ConfigError, match=r"min_val must be below max_val"):
        parse_model_config(data)
