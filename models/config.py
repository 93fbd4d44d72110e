"""Typed, frozen views of the official ``model_config.json`` files.

The released checkpoints describe themselves with a nested JSON schema (see
../shared/reference/configs). We parse it once, at the boundary, into the dataclasses
below; model code reads attributes and never calls ``.get()``.

Rules of the parser (``parse``):
- every JSON key must be a field of the target dataclass, else ``ConfigError`` naming the
  JSON path of the unknown key;
- a field without a default must be present, else ``ConfigError`` naming it;
- a field with a default is optional: the default is the official implementation's
  (``stable_audio_3/factory.py`` and the constructors it calls);
- ``Literal`` fields only take their listed values; lists become tuples.

Keys that only matter for training (``checkpointing``, ``freeze``...) are accepted and
ignored by the networks; they are kept so a config round-trips and an unknown key stays
an error.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

# Seconds attended past each clip's end (official ``generate(duration_padding_sec=6)``): the model
# was trained to see a little silence after a clip, so every generation samples that headroom.
HEADROOM_SECONDS = 6.0


class ConfigError(ValueError):
    """A model_config.json that we cannot read; the message names the JSON path."""


class _PositiveMark:
    """Marks an int that counts or measures something (a rate, a width, a length): it must be > 0."""


Positive = Annotated[int, _PositiveMark]


# --------------------------------------------------------------------------- SAME


@dataclass(frozen=True)
class SameCoderConfig:
    """One side of SAME (encoder or decoder): ``model.encoder.config`` / ``model.decoder.config``."""

    channels: Positive  # base width; block i has channels * c_mults[i]
    c_mults: tuple[Positive, ...]
    strides: tuple[Positive, ...]  # per Transformer Resampling Block (16 in the released models)
    latent_dim: Positive  # bottleneck width (256 released)
    transformer_depths: tuple[int, ...]
    dim_heads: Positive
    in_channels: Optional[Positive] = None  # encoder only: patched input width (2 ch x 256 samples)
    out_channels: Optional[Positive] = None  # decoder only: patched output width
    sinusoidal_blocks: tuple[int, ...] = ()  # decoder only: last-n blocks use a sin FF
    differential: bool = True  # differential attention
    dyt: bool = True  # DynamicTanh norms instead of RMS norms
    variable_stride: bool = False
    chunk_size: Optional[Positive] = None  # SAME-S: attention chunk in frames; absent: 128 in the network
    chunk_midpoint_shift: bool = False  # SAME-S: alternate blocks shift chunks by half
    sliding_window: Optional[tuple[int, int]] = None  # SAME-L: (left, right) latent frames
    conv_mapping: bool = False  # 3-tap conv instead of 1x1 for the channel mapping
    mask_noise: float = 0.0  # decoder: noise the official code injects at inference
    conv_bias: bool = True  # accepted, unused by the official implementation
    checkpointing: bool = False  # training only


@dataclass(frozen=True)
class SoftNormConfig:
    """``bottleneck.config`` of type ``softnorm``."""

    dim: Positive
    noise_augment_dim: int = 0
    noise_regularize: bool = True
    auto_scale: bool = True
    freeze: bool = False  # training only


@dataclass(frozen=True)
class PatchedConfig:
    """``pretransform.config`` of type ``patched``: audio (C, T) <-> (C*P, T/P)."""

    channels: Positive
    patch_size: Positive


@dataclass(frozen=True)
class SameConfig:
    """A whole SAME autoencoder (standalone repo ``model`` or a full model's pretransform)."""

    encoder: SameCoderConfig
    decoder: SameCoderConfig
    bottleneck: SoftNormConfig
    patching: PatchedConfig
    latent_dim: Positive
    downsampling_ratio: Positive  # audio samples per latent frame (4096)
    io_channels: Positive  # audio channels (2)


# --------------------------------------------------------------------------- conditioning


@dataclass(frozen=True)
class T5GemmaConditionerConfig:
    max_length: Positive = 256
    padding_mode: Literal["learned", "zero"] = "learned"
    repo_id: Optional[str] = None  # where the text encoder lives...
    subfolder: Optional[str] = None  # ...and in which folder of that repo


@dataclass(frozen=True)
class NumberConditionerConfig:
    min_val: float = 0.0
    max_val: float = 1.0
    fourier_features_type: Literal["expo"] = "expo"


@dataclass(frozen=True)
class ConditionerConfig:
    id: str
    type: Literal["t5gemma", "number"]
    config: Union[T5GemmaConditionerConfig, NumberConditionerConfig]


@dataclass(frozen=True)
class ConditioningConfig:
    configs: tuple[ConditionerConfig, ...]
    cond_dim: int

    def by_id(self, id: str) -> ConditionerConfig:
        for c in self.configs:
            if c.id == id:
                return c
        raise KeyError(id)


# --------------------------------------------------------------------------- DiT


@dataclass(frozen=True)
class AttnKwargs:
    qk_norm: Literal["rms"] = "rms"
    differential: bool = False  # medium: differential attention


@dataclass(frozen=True)
class NormKwargs:
    force_fp32: bool = False


@dataclass(frozen=True)
class FFKwargs:
    mult: Positive = 4


@dataclass(frozen=True)
class DiTConfig:
    """``model.diffusion.config``."""

    io_channels: Positive
    embed_dim: Positive
    depth: Positive
    num_heads: Positive
    cond_token_dim: Positive
    global_cond_dim: Positive
    local_add_cond_dim: Positive  # 1 mask channel + io_channels reference channels
    patch_size: Literal[1] = 1
    transformer_type: Literal["continuous_transformer"] = "continuous_transformer"
    global_cond_type: Literal["adaLN"] = "adaLN"
    timestep_features_type: Literal["expo"] = "expo"
    timestep_features_dim: Positive = 256
    timestep_features_logsnr: bool = False
    num_memory_tokens: int = 0
    attn_kwargs: AttnKwargs = AttnKwargs()
    norm_type: Literal["rms_norm"] = "rms_norm"
    norm_kwargs: NormKwargs = NormKwargs()
    ff_kwargs: FFKwargs = FFKwargs()


@dataclass(frozen=True)
class DistributionShiftConfig:
    """Length-dependent shift of the timestep schedule (official ``distribution_shift.py``)."""

    base_shift: float
    max_shift: float
    min_length: Positive
    max_length: Positive
    type: Literal["full"] = "full"


@dataclass(frozen=True)
class DiffusionConfig:
    """``model.diffusion``."""

    config: DiTConfig
    diffusion_objective: Literal["rf_denoiser", "rectified_flow"]
    type: Literal["dit"] = "dit"
    cross_attention_cond_ids: tuple[str, ...] = ()
    global_cond_ids: tuple[str, ...] = ()
    local_add_cond_ids: tuple[str, ...] = ()
    distribution_shift_options: Optional[DistributionShiftConfig] = None
    sampling_distribution_shift_options: Optional[DistributionShiftConfig] = None
    mask_padding_attention: bool = False
    use_effective_length_for_schedule: bool = False


# --------------------------------------------------------------------------- whole models


@dataclass(frozen=True)
class AutoencoderModelConfig:
    """A standalone SAME repo (stabilityai/SAME-S, SAME-L)."""

    sample_rate: Positive
    audio_channels: Positive
    sample_size: Positive
    same: SameConfig


@dataclass(frozen=True)
class DiffusionModelConfig:
    """A full SA3 model: DiT + SAME pretransform + conditioners."""

    sample_rate: Positive
    audio_channels: Positive
    sample_size: Positive  # the longest clip the model was trained on, in samples
    io_channels: Positive
    same: SameConfig
    conditioning: ConditioningConfig
    diffusion: DiffusionConfig

    @property
    def max_seconds(self) -> float:
        return self.sample_size / self.sample_rate

    @property
    def is_base(self) -> bool:
        """``-base`` checkpoints: rectified flow, sampled with Euler + CFG."""
        return self.diffusion.diffusion_objective == "rectified_flow"


ModelConfig = Union[AutoencoderModelConfig, DiffusionModelConfig]


# --------------------------------------------------------------------------- parsing

_FIX = "correct model_config.json, or download the checkpoint again"

# Relations between fields the networks rely on (a division, a head split), per dataclass.
_RULES = {
    DiTConfig: ((lambda c: c.embed_dim % c.num_heads == 0, "embed_dim must be a multiple of num_heads"),),
    DistributionShiftConfig: ((lambda c: c.min_length < c.max_length, "min_length must be below max_length"),),
    NumberConditionerConfig: ((lambda c: c.min_val < c.max_val, "min_val must be below max_val"),),
}


def parse(cls, data, path: str = "$"):
    """Build dataclass ``cls`` (or any supported type annotation) from JSON ``data``."""
    origin = typing.get_origin(cls)
    args = typing.get_args(cls)
    if origin is Annotated:
        value = parse(args[0], data, path)
        if _PositiveMark in cls.__metadata__ and value <= 0:
            raise ConfigError(f"{path}: must be a positive integer, got {data!r}; {_FIX}")
        return value
    if origin in (Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return parse(options[0], data, path)
        raise ConfigError(f"{path}: ambiguous type {cls}")  # resolved by the caller
    if origin is Literal:
        if data not in args:
            raise ConfigError(f"{path}: unsupported value {data!r}; expected one of {list(args)}")
        return data
    if origin is tuple:
        if not isinstance(data, list):
            raise ConfigError(f"{path}: expected a list, got {data!r}")
        item = args[0]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse(item, x, f"{path}[{i}]") for i, x in enumerate(data))
        if len(data) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} items, got {data!r}")
        return tuple(parse(a, x, f"{path}[{i}]") for i, (a, x) in enumerate(zip(args, data)))
    if dataclasses.is_dataclass(cls):
        return _parse_dataclass(cls, data, path)
    if cls is float and isinstance(data, (int, float)) and not isinstance(data, bool):
        if not math.isfinite(data):  # Python's json reads NaN and Infinity
            raise ConfigError(f"{path}: must be a finite number, got {data!r}; {_FIX}")
        return float(data)
    if cls in (int, bool, str) and type(data) is cls:
        return data
    raise ConfigError(f"{path}: expected {getattr(cls, '__name__', cls)}, got {data!r}")


def _parse_dataclass(cls, data, path):
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object, got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown key (this version reads {sorted(fields)})")
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{path}.{name}: missing key")
            continue
        values[name] = parse(hints[name], data[name], f"{path}.{name}")
    value = cls(**values)
    for check, problem in _RULES.get(cls, ()):
        if not check(value):
            raise ConfigError(f"{path}: {problem}; {_FIX}")
    return value


def _typed_block(data, path: str, types_: dict):
    """``{"type": ..., "config": {...}}`` blocks: check the type, parse the config."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object, got {data!r}")
    extra = sorted(set(data) - {"type", "config"})
    if extra:
        raise ConfigError(f"{path}.{extra[0]}: unknown key")
    kind = data.get("type")
    if kind not in types_:
        raise ConfigError(f"{path}.type: unsupported value {kind!r}; expected one of {list(types_)}")
    if "config" not in data:
        raise ConfigError(f"{path}.config: missing key")
    return parse(types_[kind], data["config"], f"{path}.config")


def _require(data: dict, path: str, keys: set, optional: set = frozenset()):
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object, got {data!r}")
    unknown = sorted(set(data) - keys - optional)
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown key")
    missing = sorted(keys - set(data))
    if missing:
        raise ConfigError(f"{path}.{missing[0]}: missing key")


def parse_same(data: dict, path: str) -> SameConfig:
    _require(data, path, {"encoder", "decoder", "bottleneck", "pretransform", "latent_dim",
                          "downsampling_ratio", "io_channels"})
    for side, key in (("encoder", "in_channels"), ("decoder", "out_channels")):
        if key not in data[side].get("config", {}):
            raise ConfigError(f"{path}.{side}.config.{key}: missing key")
    return SameConfig(
        encoder=_typed_block(data["encoder"], f"{path}.encoder", {"same": SameCoderConfig}),
        decoder=_typed_block(data["decoder"], f"{path}.decoder", {"same": SameCoderConfig}),
        bottleneck=_typed_block(data["bottleneck"], f"{path}.bottleneck", {"softnorm": SoftNormConfig}),
        patching=_typed_block(data["pretransform"], f"{path}.pretransform", {"patched": PatchedConfig}),
        latent_dim=parse(Positive, data["latent_dim"], f"{path}.latent_dim"),
        downsampling_ratio=parse(Positive, data["downsampling_ratio"], f"{path}.downsampling_ratio"),
        io_channels=parse(Positive, data["io_channels"], f"{path}.io_channels"),
    )


def _parse_conditioning(data: dict, path: str) -> ConditioningConfig:
    _require(data, path, {"configs", "cond_dim"})
    kinds = {"t5gemma": T5GemmaConditionerConfig, "number": NumberConditionerConfig}
    configs = []
    for i, c in enumerate(data["configs"]):
        p = f"{path}.configs[{i}]"
        _require(c, p, {"id", "type", "config"})
        kind = parse(Literal["t5gemma", "number"], c["type"], f"{p}.type")
        configs.append(ConditionerConfig(id=parse(str, c["id"], f"{p}.id"), type=kind,
                                         config=parse(kinds[kind], c["config"], f"{p}.config")))
    return ConditioningConfig(configs=tuple(configs), cond_dim=parse(Positive, data["cond_dim"], f"{path}.cond_dim"))


def parse_model_config(data: dict) -> ModelConfig:
    """The whole ``model_config.json`` of a released repo (autoencoder or diffusion model)."""
    _require(data, "$", {"model_type", "sample_size", "sample_rate", "audio_channels", "model"})
    head = dict(sample_rate=parse(Positive, data["sample_rate"], "$.sample_rate"),
                audio_channels=parse(Positive, data["audio_channels"], "$.audio_channels"),
                sample_size=parse(Positive, data["sample_size"], "$.sample_size"))
    kind = data["model_type"]
    model = data["model"]
    if kind == "autoencoder":
        return AutoencoderModelConfig(**head, same=parse_same(model, "$.model"))
    if kind == "diffusion_cond_inpaint":
        _require(model, "$.model", {"io_channels", "pretransform", "conditioning", "diffusion"})
        pre = model["pretransform"]
        _require(pre, "$.model.pretransform", {"type", "config"})
        if pre["type"] != "autoencoder":
            raise ConfigError(f"$.model.pretransform.type: unsupported value {pre['type']!r}; expected 'autoencoder'")
        return DiffusionModelConfig(
            **head,
            io_channels=parse(Positive, model["io_channels"], "$.model.io_channels"),
            same=parse_same(pre["config"], "$.model.pretransform.config"),
            conditioning=_parse_conditioning(model["conditioning"], "$.model.conditioning"),
            diffusion=parse(DiffusionConfig, model["diffusion"], "$.model.diffusion"),
        )
    raise ConfigError(f"$.model_type: unsupported value {kind!r}; expected 'autoencoder' or 'diffusion_cond_inpaint'")


def load_model_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read model config ({e})") from e
    try:
        return parse_model_config(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
