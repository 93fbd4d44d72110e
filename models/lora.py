"""LoRA adapters (LoRA, DoRA, BoRA and their -XS variants) on a Stable Audio 3 model.

Facts follow the official ``stable_audio_3/models/lora/`` (``LoRAParametrization``,
``load_and_apply_loras``, ``filter_lora_layers``) @636f906; the code is ours.

A file (``read_lora``) is what the official trainer writes: safetensors, every float tensor
float16, one metadata key ``lora_config`` (JSON: rank, alpha, adapter_type, dropout,
include, exclude), tensors ``<module>.parametrizations.weight.0.<param>`` where ``<module>``
is ``model.<DiT module>`` or ``conditioners.<conditioner module>``. Every ``Linear`` and
``Conv1d`` of the DiT and of the conditioner can carry one; ``include`` / ``exclude`` (substring
patterns with bracket expansion) choose which.

With W the weight entering an adapter, 2-D (fan_out, fan_in) (a Conv1d's kernel is folded
into fan_in), ``c = alpha / rank`` and strength ``s``:

    lora        W + c s (B @ A)
    dora-rows   V = W + c s (B @ A); each row scaled to norm ``magnitude[row]``
    dora-cols   the same per column
    bora        rows to ``magnitude_r``, then columns to ``magnitude_c``
    *-xs        ``U @ M_xs @ V^T`` instead of ``B @ A``, U and V the leading singular
                vectors of the ORIGINAL base weight (not in the file)

The normalising types return W unchanged at ``s == 0``. Several files stack in order,
``W_eff = p1(p0(W0))``, each with its own strength.

Stacking follows the official loader to the letter, quirk included: it loads file i's
tensors into the i-th adapter IN THE MODULE'S LIST, so on a module that an earlier file's
include/exclude left out, file i's tensors find no slot and its adapter keeps the trainer's
initial values: no update (B = 0, M_xs = 0), magnitudes = the base weight's norms. A plain
LoRA then changes nothing there, and a DoRA/BoRA only renormalises the incoming weight to the
base weight's norms. (E.g. an ``include``-filtered LoRA stacked first confines the LoRAs
after it to its own modules.) Put unfiltered LoRAs first to avoid it. On the DiT each LoRA also has an
interval of noise levels (it acts when ``lo <= t <= hi``, t of the batch's first item,
compared in float32) and a layer filter (DiT modules it leaves alone); conditioner adapters
always act.

Use (the engine reads each file once and keeps the ``LoraFile``):

    style = read_lora("style.safetensors")                       # LoraError: one sentence
    job = Generation(..., loras=(LoraUse(style, 0.8, interval=(0.3, 1.0), layer_filter="self_attn"),))
    model.sample(job, noise)        # or model.set_loras([...]) and model.select_loras(t) per DiT call

LoRA wraps the network: ``LoraStack`` keeps the base weights and the parsed adapters and
swaps effective weights into the modules. The DiT never sees a LoRA argument. Effective
weights are cached per set of active adapters, so switching intervals from step to step
costs a dictionary lookup; changing a strength recomputes them from memory (no file read);
removing every LoRA puts the very base tensors back.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

DIT_MODULE_PREFIX = "model."  # module names in a file, relative to the official DiT wrapper
CONDITIONER_MODULE_PREFIX = "conditioners."  # ... and relative to the official conditioner
KEY = re.compile(r"(?P<module>.+)\.parametrizations\.weight\.(?P<index>\d+)\.(?P<param>\w+)")
NORM_EPS = 1e-12  # added to every row / column norm (official)


class LoraError(ValueError):
    """A LoRA file or setting that cannot be used; the message says why and what to do."""


# --------------------------------------------------------------------------- adapter types


@dataclass(frozen=True)
class AdapterType:
    """One ``adapter_type``: its low-rank update and the norms it rescales, in order.

    xs: the update is ``U @ M_xs @ V^T`` (bases from the base weight's SVD), else ``B @ A``.
    norms: (dim normalised over, magnitude tensor): dim 1 = each row, dim 0 = each column.
    """

    name: str
    xs: bool
    norms: tuple[tuple[int, str], ...]

    @property
    def params(self) -> tuple[str, ...]:
        """The tensors a file holds per module for this type."""
        return (("M_xs",) if self.xs else ("lora_A", "lora_B")) + tuple(m for _, m in self.norms)


_ROWS, _COLS = (1, "magnitude"), (0, "magnitude")
_BOTH = ((1, "magnitude_r"), (0, "magnitude_c"))
ADAPTER_TYPES = {t.name: t for t in (
    AdapterType("lora", False, ()), AdapterType("dora-rows", False, (_ROWS,)),
    AdapterType("dora-cols", False, (_COLS,)), AdapterType("bora", False, _BOTH),
    AdapterType("lora-xs", True, ()), AdapterType("dora-rows-xs", True, (_ROWS,)),
    AdapterType("dora-cols-xs", True, (_COLS,)), AdapterType("bora-xs", True, _BOTH),
)}


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class LoraConfig:
    """The file's ``lora_config``: rank, alpha (scaling = alpha / rank), type, include/exclude."""

    rank: int
    alpha: float
    adapter_type: AdapterType
    include: Optional[tuple[str, ...]] = None
    exclude: Optional[tuple[str, ...]] = None

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def selects(self, module: str) -> bool:
        """Whether a module (``model.…`` / ``conditioners.…`` name) carries this LoRA."""
        if self.include is not None and not matches_any(module, self.include):
            return False
        return not (self.exclude is not None and matches_any(module, self.exclude))


@dataclass(frozen=True, eq=False)
class LoraFile:
    """A LoRA file read into memory, independent of any model (compared by identity).

    tensors: module (``model.…`` / ``conditioners.…``) -> {param: float32 tensor}.
    """

    path: Path
    config: LoraConfig
    tensors: dict = field(repr=False)

    @property
    def name(self) -> str:
        return self.path.stem


def read_lora(path: str | Path) -> LoraFile:
    """Read a LoRA ``.safetensors`` file; pickled checkpoints are refused, never opened."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise LoraError(f"{path.name} is not a .safetensors file: LoRAs are read from safetensors only, because "
                        "pickled .ckpt/.pt files can run code; convert it to safetensors where you trust it.")
    if not path.is_file():
        raise LoraError(f"No LoRA file at {path}: check the path.")
    raw, metadata = _read_safetensors(path)
    if not raw:
        raise LoraError(f"{path.name} holds no tensors: it is not a LoRA file.")
    tensors = _group_by_module(path, raw)
    config = _parse_config(path, metadata.get("lora_config"), tensors)
    if config.adapter_type.norms and config.adapter_type.norms[0][1] == "magnitude":
        for params in tensors.values():  # legacy (1, n) / (n, 1) magnitudes
            if "magnitude" in params:
                params["magnitude"] = params["magnitude"].reshape(-1)
    return LoraFile(path, config, tensors)


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            foreign = next((k for k in f.keys() if not KEY.fullmatch(k)), None)
            if foreign is not None:  # e.g. a whole model chosen by mistake: refuse before reading it
                raise LoraError(f"{path.name} holds {foreign!r}, which is not a LoRA tensor name "
                                "('<module>.parametrizations.weight.0.<param>'): it is not a LoRA file.")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            return tensors, f.metadata() or {}
    except (OSError, SafetensorError) as e:
        raise LoraError(f"{path.name} cannot be read as safetensors ({e}): is it a LoRA .safetensors file?") from e


def _group_by_module(path: Path, raw: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    out: dict[str, dict[str, Tensor]] = {}
    for key, t in raw.items():
        m = KEY.fullmatch(key)  # _read_safetensors checked every name
        if m["index"] != "0":
            raise LoraError(f"{path.name} holds {key!r} with stack index {m['index']}: a LoRA file has index 0; "
                            "save each LoRA in its own file.")
        out.setdefault(m["module"], {})[m["param"]] = t.float()  # float16 -> float32 is exact
    return out


def _parse_config(path: Path, text: Optional[str], tensors: dict) -> LoraConfig:
    """``lora_config`` with the official defaults: rank from the tensors, alpha = rank, type lora."""
    try:
        cfg = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise LoraError(f"{path.name}: its lora_config metadata is not valid JSON ({e}).") from e
    if not isinstance(cfg, dict):
        raise LoraError(f"{path.name}: its lora_config metadata is not a JSON object.")
    kind = _resolve_type(path, cfg.get("adapter_type") or "lora", tensors)
    rank = cfg.get("rank")
    rank = _infer_rank(path, tensors) if rank is None else rank
    alpha = cfg.get("alpha")
    alpha = rank if alpha is None else alpha
    if not isinstance(rank, int) or rank < 1 or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise LoraError(f"{path.name}: lora_config has rank {rank!r} and alpha {alpha!r}; "
                        "rank must be a positive integer and alpha a number.")
    return LoraConfig(rank, float(alpha), kind, _patterns(path, cfg, "include"), _patterns(path, cfg, "exclude"))


def _resolve_type(path: Path, name, tensors: dict) -> AdapterType:
    """The legacy ``dora`` is dora-cols when a magnitude is (1, fan_in), else dora-rows."""
    if name == "dora":
        first = next((p["magnitude"] for p in tensors.values() if "magnitude" in p), None)
        name = "dora-cols" if first is not None and first.dim() == 2 and first.shape[0] == 1 else "dora-rows"
    if name not in ADAPTER_TYPES:
        raise LoraError(f"{path.name}: adapter_type {name!r} is not supported; "
                        f"it must be one of {', '.join(ADAPTER_TYPES)}.")
    return ADAPTER_TYPES[name]


def _infer_rank(path: Path, tensors: dict) -> int:
    for params in tensors.values():
        for name, dim in (("lora_A", 0), ("lora_B", 1), ("M_xs", 0)):
            if name in params:
                return int(params[name].shape[dim])
    raise LoraError(f"{path.name} has no rank in its lora_config and no lora_A, lora_B or M_xs tensor to infer it.")


def _patterns(path: Path, cfg: dict, key: str) -> Optional[tuple[str, ...]]:
    value = cfg.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LoraError(f"{path.name}: lora_config {key} must be a list of strings, not {value!r}.")
    return tuple(value)


# --------------------------------------------------------------------------- name patterns

_BRACKET = re.compile(r"\[(\d+)-(\d+)\]")


def expand_brackets(pattern: str) -> list[str]:
    """``a[i-j]b`` -> ``a<i>b`` ... ``a<j>b`` (inclusive, downwards when i > j); several
    brackets expand as a cartesian product."""
    parts = _BRACKET.split(pattern)
    texts, ranges = parts[0::3], list(zip(parts[1::3], parts[2::3]))
    pools = [[str(n) for n in range(int(a), int(b) + (1 if int(b) >= int(a) else -1),
                                    1 if int(b) >= int(a) else -1)] for a, b in ranges]
    out = []
    for combo in product(*pools):
        out.append("".join(t + n for t, n in zip(texts, combo)) + texts[-1])
    return out


def matches_any(name: str, patterns: Sequence[str]) -> bool:
    """Whether ``name`` contains one of the (stripped, bracket-expanded) patterns."""
    return any(p in name for pattern in patterns for p in expand_brackets(pattern.strip()))


def layer_filter_patterns(layer_filter: str) -> tuple[str, ...]:
    """A layer filter's comma-separated items, stripped and lower-cased. As in the official
    code, an empty item is dropped but an item of spaces becomes "", which matches every module
    ("a, " switches the LoRA off everywhere; callers taking user input may tidy it first)."""
    return tuple(item.strip().lower() for item in (layer_filter or "").strip().split(",") if item)


# --------------------------------------------------------------------------- one adapter on one weight


def svd_bases(weight: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """U (fan_out, rank), V (fan_in, rank): leading singular vectors of a 2-D weight, float32
    SVD on the CPU (official), each U column flipped so its largest-magnitude entry is positive
    and its V column with it."""
    U, _, Vh = torch.linalg.svd(weight.detach().cpu().float(), full_matrices=False)
    top = U.abs().argmax(dim=0)
    signs = U[top, torch.arange(U.shape[1])].sign()
    signs[signs == 0] = 1
    U, Vh = U * signs, Vh * signs[:, None]
    return U[:, :rank].to(weight.device), Vh[:rank].T.to(weight.device)


@dataclass(frozen=True, eq=False)
class ModuleAdapter:
    """One LoRA on one weight. tensors: its file tensors (and U, V for -xs), float32, on the
    weight's device; ``initial``: the trainer's initial adapter instead (no update, magnitudes =
    the base weight's norms), see the stacking note above."""

    kind: AdapterType
    scaling: float
    tensors: dict
    initial: bool = False

    @classmethod
    def initial_for(cls, kind: AdapterType, scaling: float, base: Tensor) -> "ModuleAdapter":
        """The adapter the official code creates before loading tensors, on a 2-D base weight."""
        w0 = base.detach().float()
        return cls(kind, scaling, {name: w0.norm(dim=dim) for dim, name in kind.norms}, initial=True)

    @property
    def is_identity(self) -> bool:
        return self.initial and not self.kind.norms

    def update(self) -> Tensor:
        """The low-rank direction (fan_out, fan_in)."""
        t = self.tensors
        return t["U"] @ t["M_xs"] @ t["V"].T if self.kind.xs else t["lora_B"] @ t["lora_A"]

    def __call__(self, w: Tensor, strength: float) -> Tensor:
        """w (fan_out, fan_in) float32 -> the adapted weight."""
        if strength == 0 and self.kind.norms:
            return w  # official: the normalising types pass W through at strength 0
        v = w if self.initial else w + (self.scaling * strength) * self.update()
        for dim, magnitude in self.kind.norms:
            scale = self.tensors[magnitude].unsqueeze(dim)
            v = v / (v.norm(dim=dim, keepdim=True) + NORM_EPS) * scale
        return v


def fan_shape(weight: Tensor) -> tuple[int, int]:
    """(fan_out, fan_in) of a Linear or Conv1d weight (a Conv1d: in_channels * kernel)."""
    return weight.shape[0], weight[0].numel()


def _two_d(weight: Tensor) -> Tensor:
    return weight.reshape(fan_shape(weight))


def bind(file: LoraFile, weights: dict[str, Tensor]) -> dict[str, ModuleAdapter]:
    """The adapters of ``file`` on every module its include/exclude selects, given the base
    weight of every module that can carry one (``model.…`` / ``conditioners.…`` -> weight).
    A module the file names but the model lacks, or a tensor of the wrong shape, is an error;
    tensors of modules it does not select are ignored, and a selected module without tensors
    gets the initial adapter (both official)."""
    unknown = sorted(set(file.tensors) - set(weights))
    if unknown:
        raise LoraError(f"{file.path.name} adapts {_listing(unknown)}, which this model does not have: "
                        "it was made for another model; pick a LoRA trained for this one.")
    cfg, out = file.config, {}
    for name, weight in weights.items():
        if not cfg.selects(name):
            continue
        if name in file.tensors:
            out[name] = _module_adapter(file, name, weight)
        else:
            out[name] = ModuleAdapter.initial_for(cfg.adapter_type, cfg.scaling, _two_d(weight))
    return out


def _module_adapter(file: LoraFile, module: str, weight: Tensor) -> ModuleAdapter:
    cfg, params = file.config, file.tensors[module]
    kind, r = cfg.adapter_type, cfg.rank
    fan_out, fan_in = fan_shape(weight)
    expected = {"lora_A": (r, fan_in), "lora_B": (fan_out, r), "M_xs": (r, r),
                "magnitude_r": (fan_out,), "magnitude_c": (fan_in,)}
    for dim, name in kind.norms:
        expected.setdefault(name, (fan_out,) if dim == 1 else (fan_in,))
    if name_set := set(params) ^ set(kind.params):
        raise LoraError(f"{file.path.name}: module {module} has tensors {sorted(params)}, but a {kind.name} "
                        f"adapter has {list(kind.params)} ({_listing(sorted(name_set))} differ): the file is damaged "
                        "or its lora_config is wrong.")
    for name, t in params.items():
        if tuple(t.shape) != expected[name]:
            raise LoraError(f"{file.path.name}: {module}.{name} has shape {tuple(t.shape)}, this model needs "
                            f"{expected[name]} (rank {r}): the LoRA was made for another model.")
    tensors = {k: v.to(weight.device) for k, v in params.items()}
    if kind.xs:
        if r > min(fan_out, fan_in):
            raise LoraError(f"{file.path.name}: rank {r} exceeds what {module} ({fan_out}x{fan_in}) allows.")
        tensors["U"], tensors["V"] = svd_bases(_two_d(weight), r)
    return ModuleAdapter(kind, cfg.scaling, tensors)


def _listing(names: list[str], limit: int = 4) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# --------------------------------------------------------------------------- the stack on a model


@dataclass(frozen=True)
class LoraUse:
    """One LoRA as a generation uses it. interval: (lo, hi) noise levels (1 = noise, 0 = data)
    where it acts on the DiT (never when lo > hi); layer_filter: comma-separated DiT module
    patterns (bracket expansion, case-insensitive) it leaves alone."""

    file: LoraFile
    strength: float = 1.0
    interval: tuple[float, float] = (0.0, 1.0)
    layer_filter: str = ""

    def __post_init__(self):
        values = (self.strength, *self.interval)
        if len(self.interval) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise LoraError(f"LoRA {self.file.name}: strength {self.strength!r} and interval {self.interval!r} "
                            "must be a number and a (start, end) pair of numbers.")
        object.__setattr__(self, "strength", float(self.strength))
        object.__setattr__(self, "interval", (float(self.interval[0]), float(self.interval[1])))

    def acts_at(self, t: float) -> bool:
        """lo <= t <= hi in float32, as the official DiT compares (a bound counts as inside)."""
        f32 = lambda v: torch.tensor(v, dtype=torch.float32).item()
        return f32(self.interval[0]) <= f32(t) <= f32(self.interval[1])


def lora_targets(dit: nn.Module, conditioner: nn.Module) -> dict[str, nn.Module]:
    """Every module that can carry an adapter, by its name in a LoRA file."""
    out = {}
    for prefix, root in ((DIT_MODULE_PREFIX, dit), (CONDITIONER_MODULE_PREFIX, conditioner)):
        out.update({prefix + n: m for n, m in root.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d))})
    return out


class LoraStack:
    """The LoRAs applied to a DiT and its conditioner (build it after the weights are loaded).

    ``set(uses)`` applies a stack (its order is the stacking order); ``select(t)`` puts the DiT
    weights for noise level t in place and returns the indices of the LoRAs acting there.
    Base weights and parsed adapters stay in memory: a new strength recomputes effective
    weights without reading a file; ``set(())`` puts the base parameters back.
    """

    BOUND_CACHE = 8  # files whose bound adapters (and -xs SVD bases) are kept after they leave the stack

    def __init__(self, dit: nn.Module, conditioner: nn.Module):
        self.targets = lora_targets(dit, conditioner)
        self.base = {name: m.weight for name, m in self.targets.items()}
        self._dit_names = [n for n in self.targets if n.startswith(DIT_MODULE_PREFIX)]
        self._conditioner_names = [n for n in self.targets if n.startswith(CONDITIONER_MODULE_PREFIX)]
        self.uses: tuple[LoraUse, ...] = ()
        self._bound: OrderedDict[LoraFile, dict[str, ModuleAdapter]] = OrderedDict()
        self._stack: list[dict[str, ModuleAdapter]] = []
        self._selected: list[frozenset[str]] = []  # per LoRA: modules its include/exclude selects
        self._skip: list[frozenset[str]] = []  # per LoRA: DiT modules its layer filter disables
        self._weights: dict[tuple[str, tuple[int, ...]], nn.Parameter] = {}
        self._active: Optional[tuple[int, ...]] = None

    def set(self, uses: Sequence[LoraUse]) -> None:
        """Apply ``uses`` in order; nothing changes if one of them does not fit the model, and
        nothing is recomputed if they are the ones in place."""
        uses = tuple(uses)
        if uses == self.uses:
            return
        bound = [self._bind(u.file) for u in uses]  # may raise: before anything is touched
        self.uses, self._stack, self._weights, self._active = uses, self._slots(bound), {}, None
        self._selected = [frozenset(b) for b in bound]
        self._skip = [self._filtered(u.layer_filter) for u in uses]
        self._apply(self._conditioner_names, tuple(range(len(uses))))
        self.select(None)

    def select(self, t: Optional[Tensor]) -> tuple[int, ...]:
        """DiT weights for noise level ``t[0]`` (None: every LoRA) -> the indices acting there."""
        active = tuple(i for i, u in enumerate(self.uses) if t is None or u.acts_at(float(t.reshape(-1)[0])))
        if active != self._active:
            self._apply(self._dit_names, active)
            self._active = active
        return active

    def disabled_by_filter(self, index: int) -> list[str]:
        """DiT module names (no ``model.`` prefix) where LoRA ``index`` is switched off by its filter."""
        return [n[len(DIT_MODULE_PREFIX):] for n in self._dit_names if n in self._skip[index] & self._selected[index]]

    def adapted(self, index: int) -> list[str]:
        """Module names (as in a file) that carry an adapter of LoRA ``index``."""
        return [n for n in self.targets if n in self._selected[index]]

    def _bind(self, file: LoraFile) -> dict[str, ModuleAdapter]:
        if file not in self._bound:
            self._bound[file] = bind(file, self.base)
        self._bound.move_to_end(file)
        while len(self._bound) > self.BOUND_CACHE:
            self._bound.popitem(last=False)
        return self._bound[file]

    def _slots(self, bound: list[dict[str, ModuleAdapter]]) -> list[dict[str, ModuleAdapter]]:
        """The official loader's slots: LoRA i keeps its tensors on a module only where every
        earlier LoRA has an adapter too (module docstring); identity adapters are dropped."""
        stack = []
        for i, adapters in enumerate(bound):
            layer = {}
            for name, a in adapters.items():
                if not a.initial and not all(name in bound[j] for j in range(i)):
                    base = _two_d(self.base[name])
                    a = ModuleAdapter.initial_for(a.kind, a.scaling, base)
                if not a.is_identity:
                    layer[name] = a
            stack.append(layer)
        return stack

    def _filtered(self, layer_filter: str) -> frozenset[str]:
        patterns = layer_filter_patterns(layer_filter)
        return frozenset(n for n in self._dit_names if matches_any(n[len(DIT_MODULE_PREFIX):], patterns))

    def _apply(self, names: list[str], active: tuple[int, ...]) -> None:
        """Give each module the weight of the adapters acting on it (cached per chain)."""
        for name in names:
            chain = tuple(i for i in active if name in self._stack[i] and name not in self._skip[i]
                          and self.uses[i].strength != 0)
            if not chain:
                self.targets[name].weight = self.base[name]
                continue
            if (name, chain) not in self._weights:
                self._weights[name, chain] = self._effective(name, chain)
            self.targets[name].weight = self._weights[name, chain]

    def _effective(self, name: str, chain: tuple[int, ...]) -> nn.Parameter:
        base = self.base[name]
        w = base.detach().float().reshape(fan_shape(base))
        for i in chain:
            w = self._stack[i][name](w, self.uses[i].strength)
        return nn.Parameter(w.reshape(base.shape).to(base.dtype), requires_grad=False)

