"""Parity runner for ``forward`` fixtures (dit_*_tiny): the DiT alone, one batch.

The fixture's json says how its context is assembled (``context_assembly``, ``n_valid``):
item b's rows are ``ctx<b>_valid_rows``, then ``ctx<b>_pad_row`` repeated up to the
conditioner's padded length, then ``ctx<b>_seconds_row``; ``global_cond[b]`` is the seconds
row. Per latent length L the inputs are ``T<L>_{x, inpaint_mask, inpaint_ref, padding_mask}``
and the outputs ``T<L>_out_<kind>``:

    full                model(x, t, cross, global, local_add_cond, padding_mask)
    nopad               the same without padding_mask
    text_only           no local_add_cond, no padding_mask
    cfg<s>_apg<a>[_negative][_nopad]   guided, see models/guidance.py

``T<L>_intermediate_<module>`` and ``T<L>_hidden_state_layer<i>`` (full case) are compared
too. Every name, length and size comes from the files.
"""

from __future__ import annotations

import re
from typing import Iterator

import torch

from models.config import load_model_config
from models.dit import DiT
from models.guidance import guided, null_context, prepare_guided
from models.loading import DIT_PREFIX, load_weights, read_tensors
from models.parity.core import CaseResult, Fixture, check

OUT = re.compile(r"T(\d+)_out_(.+)")
NUMBER = r"-?[0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?"
CFG = re.compile(rf"cfg({NUMBER})_apg({NUMBER})((?:_[a-z]+)*)")
INTERMEDIATE = re.compile(r"T(\d+)_intermediate_(\w+)")
HIDDEN = re.compile(r"T(\d+)_hidden_state_layer(\d+)")


def load_dit(fx: Fixture) -> DiT:
    cfg = load_model_config(fx.folder / "model_config.json").diffusion.config
    dit = DiT(cfg).eval()
    return load_weights(dit, read_tensors(fx.folder / "model.safetensors", DIT_PREFIX), "DiT weights")


def assemble_context(fx: Fixture) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cross_attn_cond (B, S, D), cross_attn_mask (B, S), global_cond (B, D)) per ``context_assembly``."""
    tensors, n_valid = fx.tensors, fx.meta["n_valid"]
    padded_len = _padded_length(fx)
    rows, masks, seconds = [], [], []
    for b, n in enumerate(n_valid):
        valid, pad, sec = (tensors[f"ctx{b}_{part}"] for part in ("valid_rows", "pad_row", "seconds_row"))
        assert valid.shape[0] == n, f"ctx{b}_valid_rows has {valid.shape[0]} rows, n_valid says {n}"
        rows.append(torch.cat([valid, pad.expand(padded_len - n, -1), sec[None]]))
        masks.append(torch.tensor([True] * n + [False] * (padded_len - n) + [True]))
        seconds.append(sec)
    return torch.stack(rows), torch.stack(masks), torch.stack(seconds)


def _padded_length(fx: Fixture) -> int:
    """The prompt's padded length: as ``context_assembly`` says, else the config's max_length."""
    m = re.search(r"repeated to (\d+) rows", fx.meta.get("context_assembly", ""))
    if m is not None:
        return int(m.group(1))
    return load_model_config(fx.folder / "model_config.json").conditioning.by_id("prompt").config.max_length


def run(fx: Fixture) -> Iterator[CaseResult]:
    yield from run_cases(fx, collapse_context=True)


def run_cases(fx: Fixture, collapse_context: bool = True) -> Iterator[CaseResult]:
    """Every output, intermediate and hidden state of the fixture; ``collapse_context=False``
    runs the plain path (every context row its own key)."""
    dit = load_dit(fx)
    cross, cross_mask, global_cond = assemble_context(fx)
    t = fx.tensors["t"]
    for name in fx.meta["tensors"]:
        m = OUT.fullmatch(name)
        if m is None:
            continue
        length, kind = m.groups()
        with torch.no_grad():
            ours, probes = _output(fx, dit, length, kind, t, cross, cross_mask, global_cond, collapse_context)
        yield check(name, ours, fx.tensors[name])
        for probe_name, value in probes.items():
            yield check(probe_name, value, fx.tensors[probe_name])


def _inputs(fx: Fixture, length: str):
    g = lambda part: fx.tensors[f"T{length}_{part}"]
    mask = g("inpaint_mask")
    local_add_cond = torch.cat([mask, g("inpaint_ref") * mask], dim=1)  # (B, 1 + C, T)
    return g("x"), local_add_cond, g("padding_mask").bool()


def _output(fx, dit, length, kind, t, cross, cross_mask, global_cond, collapse):
    x, local_add_cond, padding_mask = _inputs(fx, length)
    if kind in ("full", "nopad", "text_only"):
        local = None if kind == "text_only" else local_add_cond
        pad = padding_mask if kind == "full" else None
        out = dit(x, t, dit.prepare(cross, global_cond, local, pad, collapse_context=collapse))
        probes = _probe_names(fx, length) if kind == "full" else {}
        if probes:  # intermediates are read on the plain path, where every context row is kept
            with _Capture(dit, set(probes.values())) as seen:
                dit(x, t, dit.prepare(cross, global_cond, local, pad, collapse_context=False))
            probes = {name: seen[key] for name, key in probes.items()}
        return out, probes
    m = CFG.fullmatch(kind)
    if m is None:
        raise ValueError(f"unknown output kind {kind!r} in T{length}_out_{kind}")
    scale, apg, flags = float(m.group(1)), float(m.group(2)), set(filter(None, m.group(3).split("_")))
    unknown = flags - {"negative", "nopad"}
    if unknown:
        raise ValueError(f"unknown guidance flags {sorted(unknown)} in T{length}_out_{kind}")
    pad = None if "nopad" in flags else padding_mask
    uncond = null_context(cross)
    if "negative" in flags:  # the doc's negative prompt: a scaled context flipped over the batch
        factor = _negative_factor(fx.doc(f"T{length}_out_{kind}"))
        uncond = null_context(cross, factor * cross.flip(0), cross_mask.flip(0))
    ctx = prepare_guided(dit, cross, uncond, global_cond, local_add_cond, pad, collapse_context=collapse)
    return guided(dit, x, t, ctx, scale, apg, pad), {}


def _negative_factor(doc: str) -> float:
    m = re.search(rf"negative_cross_attn_cond\s*=\s*(?:({NUMBER})\s*\*\s*)?cross_attn_cond\.flip\(0\),\s*"
                  r"negative_cross_attn_mask\s*=\s*cross_attn_mask\.flip\(0\)", doc)
    if m is None:
        raise ValueError(f"cannot read the negative prompt's construction from the doc: {doc!r}")
    return float(m.group(1)) if m.group(1) is not None else 1.0


class _Capture:
    """Forward hooks recording the outputs of the named submodules (last name component,
    e.g. ``to_cond_embed``) and of transformer layer i as ``layer<i>``."""

    def __init__(self, dit: DiT, keys: set[str]):
        self.modules = {f"layer{i}": layer for i, layer in enumerate(dit.transformer.layers)}
        self.modules.update({name.rsplit(".", 1)[-1]: mod for name, mod in dit.named_modules() if name})
        missing = keys - set(self.modules)
        if missing:
            raise ValueError(f"the fixture stores intermediates of unknown modules {sorted(missing)}")
        self.keys, self.seen, self.hooks = keys, {}, []

    def __enter__(self) -> dict:
        for key in self.keys:
            hook = lambda mod, args, out, key=key: self.seen.__setitem__(key, out)
            self.hooks.append(self.modules[key].register_forward_hook(hook))
        return self.seen

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()


def _probe_names(fx: Fixture, length: str) -> dict[str, str]:
    """Fixture tensor name -> our capture key, for the intermediates stored at this length."""
    probes = {}
    for name in fx.meta["tensors"]:
        if (m := INTERMEDIATE.fullmatch(name)) and m.group(1) == length:
            probes[name] = m.group(2)
        elif (m := HIDDEN.fullmatch(name)) and m.group(1) == length:
            probes[name] = f"layer{m.group(2)}"
    return probes
