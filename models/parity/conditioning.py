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
from models.loading import CONDITIONER_PREFIX, TEXT_ENCODER_FOLDER, WEIGHTS_FILE, read_tensors
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
            said = re.search(r"sigma_max\s*=\s*([0-9.eE+-]+)", fx.doc(name))
            seq_len, sigma_max = _lengths_from_doc(fx.doc(name)), float(said[1]) if said else 1.0
        else:
            yield CaseResult(name, "fail", note="does not follow the schedules naming")
            continue
        ours = build_schedule(int(m["steps"]), sigma_max, shifts[m["shift"]], seq_len)
        yield check(name, ours, fx.tensors[name])


# --------------------------------------------------------------------------- conditioners
#
# These runners go by tensor name: every tensor of the fixture is either an input or gets a
# check, and a name we do not know fails (rather than passing unnoticed).

_UNKNOWN = "no check for this tensor name (unknown to the runner)"


def _text_encoder_folder(fx: Fixture, config) -> Path:
    """Fixture configs name the encoder's subfolder; it is a sibling folder in the golden root."""
    return fx.golden_root / (config.conditioning.by_id("prompt").config.subfolder or TEXT_ENCODER_FOLDER)


def run_conditioners(fx: Fixture) -> Iterator[CaseResult]:
    from models.conditioners import Conditioner
    from models.text import load_text_encoder

    config = load_model_config(fx.folder / "model_config.json")
    encoder = load_text_encoder(_text_encoder_folder(fx, config), device="cpu", dtype=torch.float32,
                                max_length=config.conditioning.by_id("prompt").config.max_length)
    conditioner = Conditioner(config, encoder)
    conditioner.load(read_tensors(fx.folder / WEIGHTS_FILE, CONDITIONER_PREFIX))
    golden, prompts = fx.tensors, fx.meta["prompts"]
    with torch.no_grad():
        seconds = conditioner.seconds_total(golden["seconds_values"]) if "seconds_values" in golden else None
        for name in fx.meta["tensors"]:
            if name == "seconds_values":
                continue  # an input
            if name == "padding_embedding":
                yield check(name, conditioner.prompt.padding_embedding, golden[name])
            elif name in ("seconds_embedding", "seconds_mask"):
                yield check(name, seconds[0] if name == "seconds_embedding" else seconds[1], golden[name])
            elif m := re.fullmatch(r"prompt(\d+)_(.+)", name):
                yield _check_prompt(name, m[2], conditioner, prompts[int(m[1])], golden[name])
            else:
                yield CaseResult(name, "fail", note=_UNKNOWN)


def _check_prompt(name: str, what: str, conditioner, prompt: str, golden: torch.Tensor) -> CaseResult:
    """One ``prompt<i>_<what>`` tensor: token ids and mask of the padded batch, conditioning
    rows (final, after the learned padding) or their float64 checksum."""
    if what in ("input_ids", "mask"):
        ids, mask = conditioner.prompt.encoder.tokenize([prompt])
        return check(name, (ids if what == "input_ids" else mask)[0], golden)
    cond = conditioner.prompt([prompt])[0][0]  # (max_length, D); encodings are cached per prompt
    if what == "cond_sum_f64":
        return check_sum(name, cond.double().sum().item(), golden.item())
    if what == "cond_valid_rows":
        return check(name, cond[: golden.shape[0]], golden)
    if m := re.fullmatch(r"cond_rows_(first|last)(\d+)", what):
        n = int(m[2])
        return check(name, cond[:n] if m[1] == "first" else cond[-n:], golden)
    return CaseResult(name, "fail", note=_UNKNOWN)


# --------------------------------------------------------------------------- T5Gemma


def run_text_encoder(fx: Fixture) -> Iterator[CaseResult]:
    from models.text import load_text_encoder

    entries = fx.meta.get("tokenization")
    prompts = [e["prompt"] for e in entries] if entries is not None else fx.meta["prompts"]
    encoder = load_text_encoder(fx.folder, device="cpu", dtype=torch.float32, max_length=_t5_max_length(fx))
    with torch.no_grad():
        for name in fx.meta["tensors"]:
            m = re.fullmatch(r"prompt(\d+)_(.+)", name)
            if not m:
                yield CaseResult(name, "fail", note=_UNKNOWN)
                continue
            yield _check_t5(name, m[2], encoder, prompts[int(m[1])], fx.tensors[name])


def _t5_max_length(fx: Fixture, default: int = 256) -> int:
    """The padded length the fixture was made with: a prompt whose valid rows are fewer than
    its untruncated tokens was cut there; else the released configs' max_length."""
    T = fx.meta["tensors"]
    for name, entry in T.items():
        m = re.fullmatch(r"prompt(\d+)_last_hidden_state_valid", name)
        ids = m and T.get(f"prompt{m[1]}_ids_untruncated")
        if ids and entry["shape"][0] < ids["shape"][0]:
            return entry["shape"][0]
    return default


def _check_t5(name: str, what: str, encoder, prompt: str, golden: torch.Tensor) -> CaseResult:
    if what == "ids_untruncated":
        return check(name, encoder.token_ids(prompt, truncate=False), golden)
    if re.fullmatch(r"last_hidden_state(_eager)?_valid", what):
        return check(name, encoder.encode(prompt), golden)  # (n_valid, D): real tokens only
    if what == "last_hidden_state_padrows_sum_f64":
        # The official path's rows at padded positions (discarded downstream): our plain
        # padded path computes them; the fast path never does.
        full, mask = encoder.encode_padded([prompt])
        return check_sum(name, full[0][~mask[0]].double().sum().item(), golden.item())
    return CaseResult(name, "fail", note=_UNKNOWN)
