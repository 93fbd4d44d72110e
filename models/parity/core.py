"""The fixture format of ../shared/golden and the comparison rules of its README.

A fixture is a pair ``NAME.json`` + ``NAME.safetensors`` in a component folder (e.g.
``same_s_tiny/encode``). A runner turns one fixture into ``CaseResult``s; it reads every
name, length and dimension from the files, since other fixture sets use other ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

import torch

from models.loading import read_tensors

REL_TOL = 1e-4  # a single tensor: max|ours - golden| <= REL_TOL * max(1, max|golden|)
GENERATE_REL_TOL = 1e-3  # a whole multi-step generate output
SUM_REL_TOL = 1e-5  # *_sum_f64 checksums


@dataclass(frozen=True)
class CaseResult:
    name: str
    status: str  # "pass" | "fail" | "skip"
    error: float | None = None
    tolerance: float | None = None
    note: str = ""

    def line(self) -> str:
        if self.status == "skip":
            return f"SKIP  {self.name}: {self.note}"
        head = "ok  " if self.status == "pass" else "FAIL"
        nums = f"err {self.error:.3g} tol {self.tolerance:.3g}" if self.error is not None else ""
        return f"{head}  {self.name}  {nums}{'  ' + self.note if self.note else ''}".rstrip()


@dataclass
class Fixture:
    folder: Path  # the component folder, e.g. golden/same_s_tiny
    name: str  # the json stem, e.g. "encode"
    meta: dict = field(repr=False)

    @classmethod
    def read(cls, json_path: Path) -> "Fixture":
        return cls(json_path.parent, json_path.stem, json.loads(json_path.read_text()))

    @cached_property
    def tensors(self) -> dict[str, torch.Tensor]:
        return read_tensors(self.folder / f"{self.name}.safetensors")

    @property
    def golden_root(self) -> Path:
        return self.folder.parent

    def names(self, pattern: str) -> list[re.Match]:
        """Tensor names matching a regex, as match objects (in file order)."""
        return [m for n in self.meta["tensors"] if (m := re.fullmatch(pattern, n))]

    def doc(self, tensor: str) -> str:
        return self.meta["tensors"][tensor]["doc"]


def check(name: str, ours: torch.Tensor, golden: torch.Tensor, rel: float = REL_TOL) -> CaseResult:
    """Compare by the README's rule; int/bool tensors must be equal."""
    ours = torch.as_tensor(ours).detach().cpu()
    golden = golden.detach().cpu()
    if ours.shape != golden.shape:
        return CaseResult(name, "fail", note=f"shape {tuple(ours.shape)} != golden {tuple(golden.shape)}")
    if not golden.is_floating_point():
        wrong = int((ours.to(golden.dtype) != golden).sum())
        return CaseResult(name, "pass" if wrong == 0 else "fail", float(wrong), 0.0,
                          "" if wrong == 0 else f"{wrong} elements differ")
    err = (ours.double() - golden.double()).abs().max().item() if golden.numel() else 0.0
    tol = rel * max(1.0, golden.abs().max().item() if golden.numel() else 0.0)
    ok = err <= tol  # NaN compares false: a NaN fails
    return CaseResult(name, "pass" if ok else "fail", err, tol)


def check_sum(name: str, ours: float, golden: float, rel: float = SUM_REL_TOL) -> CaseResult:
    err = abs(ours - golden)
    tol = rel * max(abs(golden), 1e-12)
    return CaseResult(name, "pass" if err <= tol else "fail", err, tol)


def skip(name: str, why: str) -> CaseResult:
    return CaseResult(name, "skip", note=why)


Runner = Callable[[Fixture], Iterator[CaseResult]]


DATA_FILES = {"model", "audio_inputs"}  # inputs shared by fixtures, not fixtures


def discover(root: Path) -> list[Path]:
    """Fixture json files under ``root``: a golden root, or one of its component folders."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no fixture folder at {root}")

    def fixtures_in(folder: Path) -> list[Path]:
        return [js for js in sorted(folder.glob("*.json"))
                if js.with_suffix(".safetensors").exists() and js.stem not in DATA_FILES]

    if fixtures_in(root) or (root / "model.safetensors").exists():
        return fixtures_in(root)
    return [js for sub in sorted(p for p in root.iterdir() if p.is_dir()) for js in fixtures_in(sub)]
