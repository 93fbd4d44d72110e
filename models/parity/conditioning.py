"""Parity runners for conditioning and schedules.

- ``t5gemma-b-b-ul2/fixtures``: token ids and the T5Gemma encoder's last hidden state;
- ``sa3_*/conditioners``: the assembled prompt conditioning (learned padding) and the
  ``seconds_total`` embedding;
- ``sa3_*/schedules``: ``build_schedule`` for every shift, step count, length and sigma_max.

Every name, length and dimension is read from the fixture files.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterator, Optional

import torch

from models.config import load_model_config
from models.loading import CONDITIONER_PREFIX, WEIGHTS_FILE, read_tensors
from models.parity.core import CaseResult, Fixture, check, check_sum
from models.sampling import FluxShift, FullShift, LogSNRShift, Shift, build_schedule, sampling_shift, training_shift


def run(fx: Fixture) -> Iterator[CaseResult]:
    runners = {"fixtures": run_text_encoder, "conditioners": run_conditioners, "schedules": run_schedules}
    yield from runners[fx.name](fx)


# --------------------------------------------------------------------------- schedules

# Official class name -> ours, with the keyword arguments they share.
_SHIFT_CLASSES = {"LogSNRShift": LogSNRShift, "FluxDistributionShift": FluxShift, "DistributionShift": FullShift}
_CASE = re.compile(r"(?P<shift>.+)_steps(?P<steps>\d+)_len(?P<len>\d+)_smax(?P<smax>[0-9.eE+-]+)")
_LENVEC = re.compile(r"(?P<shift>.+)_steps(?P<steps>\d+)_lenvec")


def parse_shift(description: str, config_path: Path) -> Optional[Shift]:
    """The shift a ``shifts`` entry of schedules.json describes.

    The model's own shifts ("model.sampling_dist_shift ...", "model.dist_shift ...") come
    from its model_config.json through our config path, so that path is what is tested;
    any other entry names an official constructor and its keyword arguments.
    """
    if description.startswith("model.sampling_dist_shift"):
        return sampling_shift(load_model_config(config_path).diffusion)
    if description.startswith("model.dist_shift"):
        return training_shift(load_model_config(config_path).diffusion)
    if description.startswith("no dist_shift"):
        return None
    m = re.match(r"(\w+)\(([^()]*)\)", description)
    if not m or m.group(1) not in _SHIFT_CLASSES:
        raise ValueError(f"unknown shift description {description!r}")
    kwargs = {}
    for part in filter(None, (p.strip() for p in m.group(2).split(","))):
        key, value = part.split("=", 1)
        kwargs[key.strip()] = ast.literal_eval(value.strip())
    if kwargs.pop("use_sine", False):
        raise ValueError("use_sine shifts are not used by any SA3 checkpoint")
    return _SHIFT_CLASSES[m.group(1)](**kwargs)


def _lengths_from_doc(doc: str) -> torch.Tensor:
    m = re.search(r"effective_seq_len=tensor\(\[([^\]]*)\]\)", doc)
    if not m:
        raise ValueError(f"no effective_seq_len tensor in {doc!r}")
    return torch.tensor([float(v) for v in m.group(1).split(",") if v.strip()])


def run_schedules(fx: Fixture) -> Iterator[CaseResult]:
    config_path = fx.folder / "model_config.json"
    shifts = {name: parse_shift(desc, config_path) for name, desc in fx.meta["shifts"].items()}
    for name in fx.meta["tensors"]:
        if m := _CASE.fullmatch(name):
            seq_len, sigma_max = int(m["len"]), float(m["smax"])
        elif m := _LENVEC.fullmatch(name):
            seq_len, sigma_max = _lengths_from_doc(fx.doc(name)), 1.0
        else:
            raise ValueError(f"schedule tensor {name!r} does not follow the naming")
        ours = build_schedule(int(m["steps"]), sigma_max, shifts[m["shift"]], seq_len)
        yield check(name, ours, fx.tensors[name])


# --------------------------------------------------------------------------- conditioners


def _text_encoder_folder(fx: Fixture, config) -> Path:
    """Fixture configs name the encoder's subfolder; it is a sibling folder in the golden root."""
    return fx.golden_root / config.conditioning.by_id("prompt").config.subfolder


def run_conditioners(fx: Fixture) -> Iterator[CaseResult]:
    from models.conditioners import Conditioner
    from models.text import load_text_encoder

    config = load_model_config(fx.folder / "model_config.json")
    encoder = load_text_encoder(_text_encoder_folder(fx, config), device="cpu", dtype=torch.float32,
                                max_length=config.conditioning.by_id("prompt").config.max_length)
    conditioner = Conditioner(config, encoder)
    conditioner.load(read_tensors(fx.folder / WEIGHTS_FILE, CONDITIONER_PREFIX))
    golden = fx.tensors

    yield check("padding_embedding", conditioner.prompt.padding_embedding, golden["padding_embedding"])
    prompts = fx.meta["prompts"]
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            yield from _check_prompt(fx, f"prompt{i}", conditioner, prompt)
        seconds = golden["seconds_values"]
        emb, mask = conditioner.seconds_total(seconds)
    yield check("seconds_embedding", emb, golden["seconds_embedding"])
    if "seconds_mask" in golden:
        yield check("seconds_mask", mask, golden["seconds_mask"])


def _check_prompt(fx: Fixture, key: str, conditioner, prompt: str) -> Iterator[CaseResult]:
    golden = fx.tensors
    ids, mask = conditioner.prompt.encoder.tokenize([prompt])
    yield check(f"{key}_input_ids", ids[0], golden[f"{key}_input_ids"])
    yield check(f"{key}_mask", mask[0], golden[f"{key}_mask"])
    cond, cond_mask = conditioner.prompt([prompt])
    cond = cond[0]  # (max_length, D)
    for name in fx.meta["tensors"]:
        if name == f"{key}_cond_valid_rows":
            ours = cond[: golden[name].shape[0]]
        elif m := re.fullmatch(rf"{key}_cond_rows_(first|last)(\d+)", name):
            n = int(m[2])
            ours = cond[:n] if m[1] == "first" else cond[-n:]
        else:
            continue
        yield check(name, ours, golden[name])
    yield check_sum(f"{key}_cond_sum_f64", cond.double().sum().item(), golden[f"{key}_cond_sum_f64"].item())


# --------------------------------------------------------------------------- T5Gemma


def run_text_encoder(fx: Fixture) -> Iterator[CaseResult]:
    from models.text import load_text_encoder

    encoder = load_text_encoder(fx.folder, device="cpu", dtype=torch.float32)
    golden = fx.tensors
    with torch.no_grad():
        for i, entry in enumerate(fx.meta["tokenization"]):
            key, prompt = f"prompt{i}", entry["prompt"]
            ids = encoder.token_ids(prompt, truncate=False)
            yield check(f"{key}_ids_untruncated", ids, golden[f"{key}_ids_untruncated"])
            hidden = encoder.encode(prompt)  # (n_valid, D): the real tokens only
            for suffix in ("last_hidden_state_valid", "last_hidden_state_eager_valid"):
                if f"{key}_{suffix}" in golden:
                    yield check(f"{key}_{suffix}", hidden, golden[f"{key}_{suffix}"])
            if f"{key}_last_hidden_state_padrows_sum_f64" in golden:
                # The official path's rows at padded positions (discarded downstream): our
                # plain padded path computes them, the fast path never does.
                full, mask = encoder.encode_padded([prompt])
                pad_sum = full[0][~mask[0]].double().sum().item()
                yield check_sum(f"{key}_last_hidden_state_padrows_sum_f64", pad_sum,
                                golden[f"{key}_last_hidden_state_padrows_sum_f64"].item())
