"""Parity runner for ``lora`` fixtures (sa3_*_tiny): LoRA adapters on the whole model.

``scenarios`` lists every output: the adapter files in load order, each index's strength,
``t`` (a DiT forward on the fixture's inputs) or ``seconds`` (the ``seconds_total``
embedding), and the official forward's ``lora_configs`` (per index: interval, layer filter)
or its legacy ``lora_interval`` / ``lora_layer_filter`` (the same for every index).
``runs`` are whole ``generate`` calls with LoRAs, replayed with their recorded noise by the
``generate`` runner. We also check which modules each file adapts
(``adapter_files``), what each layer filter switches off, the effective weights of the probe
modules and the base weights. Every name, number and string comes from the files; a tensor
no check reads fails.
"""

from __future__ import annotations

import re
from typing import Iterator

import torch

from models.lora import CONDITIONER_MODULE_PREFIX, DIT_MODULE_PREFIX, LoraFile, LoraUse, read_lora
from models.parity import generate
from models.parity.core import CaseResult, Fixture, check
from models.parity.dit import assemble_context
from models.sa3 import StableAudio3

INPUTS = {"x", "inpaint_mask", "inpaint_ref", "padding_mask", "t"}
CONTEXT = re.compile(r"ctx\d+_(valid_rows|pad_row|seconds_row)")
FILTER_LIST = re.compile(r"(?P<file>.+)_layerfilter_disabled_layers")


def run(fx: Fixture) -> Iterator[CaseResult]:
    model = generate._model(fx.folder, "model_config.json")
    files = _read_files(fx)
    checked: set[str] = set()
    try:
        yield from _adapter_files(fx, model, files)
        yield from _filters(fx, model, files)
        yield from _base_weights(fx, model, checked)
        yield from _scenarios(fx, model, files, checked)
        yield from _runs(fx, files, checked)
    finally:
        model.set_loras(())  # the model is shared with the generate runner
    for name in fx.meta["tensors"]:
        if name not in checked and name not in INPUTS and not CONTEXT.fullmatch(name):
            yield CaseResult(name, "fail", note="no check for this tensor name (unknown to the runner)")


def _read_files(fx: Fixture) -> dict[str, LoraFile]:
    """Every adapter file the fixture names, read once."""
    names = {info["file"] for info in fx.meta["adapter_files"].values()}
    names |= {f for s in fx.meta["scenarios"] for f in s.get("files", [])}
    names |= {f for r in fx.meta.get("runs", []) for f in r["lora_files"]}
    return {name: read_lora(fx.folder / name) for name in sorted(names)}


def _uses(files: dict[str, LoraFile], names, strengths, spec: dict) -> list[LoraUse]:
    """The official forward's settings as ``LoraUse``s: ``lora_configs`` per index (an index
    not listed keeps its initial state: acting everywhere), else the legacy kwargs for all."""
    per_index = {c["lora_index"]: c for c in spec.get("lora_configs") or []}
    legacy = dict(interval=spec.get("lora_interval", (0.0, 1.0)), layer_filter=spec.get("lora_layer_filter", ""))
    if len(strengths) != len(names):
        raise ValueError(f"{len(names)} adapter files but {len(strengths)} strengths: {spec}")
    uses = []
    for i, (name, strength) in enumerate(zip(names, strengths)):
        if spec.get("lora_configs") is not None:
            c = per_index.get(i, {})
            how = dict(interval=c.get("interval", (0.0, 1.0)), layer_filter=c.get("layer_filter", ""))
        else:
            how = legacy
        uses.append(LoraUse(files[name], strength, tuple(how["interval"]), how["layer_filter"] or ""))
    return uses


def _adapter_files(fx, model: StableAudio3, files) -> Iterator[CaseResult]:
    """Each file adapts exactly the modules the official loader gave an adapter."""
    for key, info in fx.meta["adapter_files"].items():
        model.set_loras([LoraUse(files[info["file"]])])
        adapted = set(model.lora_stack.adapted(0))
        for part, prefix in (("dit_wrapper", DIT_MODULE_PREFIX), ("conditioner", CONDITIONER_MODULE_PREFIX)):
            golden = set(info[f"layers_with_lora_{part}"])
            ours = {n for n in adapted if n.startswith(prefix)}
            yield _same_names(f"adapter_files/{key}/layers_with_lora_{part}", ours, golden)


def _filters(fx, model: StableAudio3, files) -> Iterator[CaseResult]:
    """``<file>_layerfilter_disabled_layers``: what the filter of scenario ``<file>_layerfilter_out`` disables."""
    scenarios = {s["name"]: s for s in fx.meta["scenarios"]}
    for key in fx.meta:
        if not (m := FILTER_LIST.fullmatch(key)):
            continue
        spec = scenarios.get(f"{m['file']}_layerfilter_out")
        if spec is None:
            yield CaseResult(key, "fail", note=f"no scenario {m['file']}_layerfilter_out gives its filter")
            continue
        model.set_loras(_uses(files, spec["files"], spec["strengths"], spec))
        ours = {n for i in range(len(spec["files"])) for n in model.lora_stack.disabled_by_filter(i)}
        yield _same_names(key, ours, set(fx.meta[key]))


def _same_names(name: str, ours: set, golden: set) -> CaseResult:
    if ours == golden:
        return CaseResult(name, "pass", 0.0, 0.0)
    return CaseResult(name, "fail", note=f"missing {sorted(golden - ours)}, extra {sorted(ours - golden)}")


def _base_weights(fx, model: StableAudio3, checked: set) -> Iterator[CaseResult]:
    model.set_loras(())
    yield from _probe_weights(fx, model, "base", checked)


def _scenarios(fx, model: StableAudio3, files, checked: set) -> Iterator[CaseResult]:
    inputs = _forward_inputs(fx)
    for spec in fx.meta["scenarios"]:
        name, names = spec["name"], spec.get("files", [])
        model.set_loras(_uses(files, names, spec.get("strengths", [1.0] * len(names)), spec))
        checked.add(name)
        with torch.no_grad():
            if "t" in spec:
                ours = _forward(model, torch.tensor(spec["t"], dtype=torch.float32), *inputs)
            elif "seconds" in spec:
                ours = model.conditioner.seconds_total(spec["seconds"])[0]
            else:
                yield CaseResult(name, "fail", note="scenario has neither 't' nor 'seconds'")
                continue
        yield check(name, ours, fx.tensors[name])
        yield from _weight_probes(fx, model, name, checked)


def _forward_inputs(fx: Fixture):
    """(x, cross_attn_cond, global_cond, local_add_cond, padding_mask) of every forward."""
    cross, _, global_cond = assemble_context(fx)
    T = fx.tensors
    mask = T["inpaint_mask"]
    local = torch.cat([mask, T["inpaint_ref"] * mask], dim=1)  # (B, 1 + C, L)
    return T["x"], cross, global_cond, local, T["padding_mask"].bool()


def _forward(model: StableAudio3, t, x, cross, global_cond, local, pad) -> torch.Tensor:
    """One official DiTWrapper forward: the LoRAs acting at t[0], then the DiT."""
    model.select_loras(t)
    dit = model.dit
    return dit(x, t, dit.prepare(cross, global_cond, local, pad))


def _weight_probes(fx, model: StableAudio3, scenario: str, checked: set) -> Iterator[CaseResult]:
    """``<scenario minus _out>_weight_<module>``: the module's effective weight after that forward."""
    if scenario.endswith("_out"):
        yield from _probe_weights(fx, model, scenario[:-len("_out")], checked)


def _probe_weights(fx, model: StableAudio3, prefix: str, checked: set) -> Iterator[CaseResult]:
    """``<prefix>_weight_<module>`` for each probed DiT module the fixture holds: its weight now."""
    for module in fx.meta["weight_probe_modules"]:
        name = f"{prefix}_weight_{module}"
        if name in fx.tensors:
            checked.add(name)
            yield check(name, model.dit.get_submodule(module).weight, fx.tensors[name])


def _runs(fx: Fixture, files, checked: set) -> Iterator[CaseResult]:
    """Whole generate calls: the generate runner's replay with the run's LoRAs on the job."""
    audio = None
    for spec in fx.meta.get("runs", []):
        kwargs = dict(spec["kwargs"])
        lora_kw = {k: kwargs.pop(k) for k in ("lora_configs", "lora_interval", "lora_layer_filter") if k in kwargs}
        uses = _uses(files, spec["lora_files"], spec["strengths"], lora_kw)
        model = generate._model(fx.folder, generate.config_name(fx, spec))
        if audio is None:
            audio = generate.audio_input(fx)
        checked.update(n for n in fx.meta["tensors"] if n.startswith(f"{spec['name']}_"))
        try:
            yield from generate._run_one(fx, model, {**spec, "kwargs": kwargs}, audio, loras=tuple(uses))
        finally:
            model.set_loras(())
