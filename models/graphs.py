"""Sampler steps as replayed CUDA graphs: one launch per step instead of ~1,200 small kernels.

On a GPU a DiT step costs the same at 10 s and at 120 s of audio: the host cannot launch its
kernels (rotary, casts, norms, gates, 24 layers of them) as fast as the card runs them. A CUDA
graph records a step's kernels once and replays them with one launch. What a graph reads and
writes must sit at fixed addresses, so each graph owns *static* buffers:

    x, t, t', eps              the step's inputs, copied in before each replay (a few MB)
    the conditioning           the prepared ``DiTContext`` (cross-attention keys and values,
                               inpainting embeddings, padding) and the padding mask, copied in
                               once per generation (``load``)
    next x, denoised           the step's outputs, copied out after each replay

A graph is keyed by everything that decides which kernels run: the sampler, the guidance
scales, the latents' shape and dtype, the conditioning's *structure* (``signature``: every
tensor's shape, strides and dtype, every Python value such as ``Padding.all_valid``) and the
DiT's weights (their addresses: a cast or a LoRA swap makes other weights). Two generations
with the same key replay the same graph on their own inputs; the numbers are those of the eager
step on the same inputs (the same kernels run), which is what ``tests/test_graphs.py`` checks.

A step rather than the whole loop is the unit: one graph serves 8 or 50 steps, progress and
step previews still arrive after every step, Cancel still stops after the current one, and a
replay costs one graph launch plus ~6 small copies per step. Every draw is made before the
first step (``sampling.step_draws``), from the request's seeded generator: a take is the same
with and without graphs.

Memory: all graphs of a model share one private pool, which holds the largest step's
activations once (graphs never run concurrently and everything that outlives a replay is in the
static buffers, outside the pool). Each graph adds its static buffers: about the prepared
conditioning of one generation (medium, an edit of 380 s: 24 layers x 4,100 frames x 1,536 x
bf16, ~0.3 GB; text-to-audio: a few MB). ``StepGraphs`` keeps at most ``max_graphs`` graphs and
``max_bytes`` of static buffers, dropping the least recently used.

Not captured (the eager step runs, with the same numbers): LoRAs (they swap weight tensors and
pick them per noise level on the host), the ``plain`` path, and any step whose capture fails
(remembered, so it is tried once). Without CUDA nothing here runs: ``StableAudio3`` has no
``graphs`` unless one is given.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from models.sampling import StepFn, Update, make_step

log = logging.getLogger(__name__)

GIB = 2**30
Velocity = Callable[..., Tensor]  # (x, t, *inputs) -> velocity (B, C, T) fp32
Capture = Callable[[Callable[[], None]], Callable[[], None]]  # body -> replay


# --------------------------------------------------------------------------- trees of inputs


def signature(tree: Any) -> Any:
    """A hashable description of everything in ``tree`` a captured step depends on besides the
    values of its tensors: tensors' shapes, strides, dtypes and devices; Python values (bools,
    ints, floats, None) themselves; the structure of tuples, lists and dataclasses."""
    if isinstance(tree, Tensor):
        return ("T", tuple(tree.shape), tree.stride(), tree.dtype, tree.device)
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return (type(tree).__name__, *(signature(getattr(tree, f.name)) for f in dataclasses.fields(tree)))
    if isinstance(tree, (tuple, list)):
        return (type(tree).__name__, *(signature(t) for t in tree))
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"signature: cannot describe a {type(tree).__name__} (tensors, numbers, tuples, dataclasses)")


def _compact(t: Tensor) -> Tensor:
    """``t`` with each broadcast (stride 0) dimension cut to one element: what it really holds."""
    return t[tuple(slice(0, 1) if s == 0 and n > 1 else slice(None) for n, s in zip(t.shape, t.stride(), strict=True))]


def clone_tree(tree: Any) -> Any:
    """A copy of ``tree`` whose tensors are new buffers of the same shapes and strides (a broadcast
    view stays a broadcast view of a new, compact buffer): the static inputs of a graph."""
    if isinstance(tree, Tensor):
        compact = _compact(tree)
        return compact.clone().expand(tree.shape) if compact.shape != tree.shape else tree.clone()
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return dataclasses.replace(tree, **{f.name: clone_tree(getattr(tree, f.name))
                                            for f in dataclasses.fields(tree) if f.init})
    if isinstance(tree, (tuple, list)):
        return type(tree)(clone_tree(t) for t in tree)
    return tree


def load(static: Any, fresh: Any) -> None:
    """Copy the tensors of ``fresh`` into those of ``static`` (same ``signature``), in place."""
    if isinstance(static, Tensor):
        _compact(static).copy_(_compact(fresh))
    elif dataclasses.is_dataclass(static) and not isinstance(static, type):
        for f in dataclasses.fields(static):
            load(getattr(static, f.name), getattr(fresh, f.name))
    elif isinstance(static, (tuple, list)):
        for s, t in zip(static, fresh, strict=True):
            load(s, t)


def tree_bytes(tree: Any) -> int:
    """Bytes the tensors of ``tree`` hold (a broadcast view counts what it really holds)."""
    if isinstance(tree, Tensor):
        return _compact(tree).numel() * tree.element_size()
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return sum(tree_bytes(getattr(tree, f.name)) for f in dataclasses.fields(tree))
    if isinstance(tree, (tuple, list)):
        return sum(tree_bytes(t) for t in tree)
    return 0


# --------------------------------------------------------------------------- capture


def cuda_capture(pool=None, warmup: int = 2) -> Capture:
    """The real backend: ``body`` run ``warmup`` times on a side stream (lazy initialisation,
    kernel choices, caches such as the rotary tables happen there, not in the graph), then
    captured into a ``torch.cuda.CUDAGraph`` in ``pool``; returns its ``replay``."""
    def capture(body: Callable[[], None]) -> Callable[[], None]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                body()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            body()
        return graph.replay
    return capture


def eager_capture(body: Callable[[], None]) -> Callable[[], None]:
    """A backend without a GPU: the "replay" runs the captured body again on the static buffers.
    Same numbers as the eager step; what it checks is the bookkeeping (an input not loaded into its
    buffer, an output read from the wrong one, changes the take). Tests and CPU dry runs."""
    return body


@dataclasses.dataclass
class _Graph:
    """One captured step: its static buffers and its replay."""

    x: Tensor
    t_now: Tensor
    t_next: Tensor
    eps: Optional[Tensor]
    inputs: Any
    x_next: Tensor
    denoised: Tensor
    replay: Callable[[], None]
    bytes: int

    def step(self, x: Tensor, t_now: Tensor, t_next: Tensor, eps: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """``make_step``'s contract on the static buffers; the outputs are the caller's own copies."""
        self.x.copy_(x)
        self.t_now.copy_(t_now)
        self.t_next.copy_(t_next)
        if eps is not None:
            self.eps.copy_(eps)
        self.replay()
        return self.x_next.clone(), self.denoised.clone()


class StepGraphs:
    """The captured steps of one model, least recently used first out.

    ``step(key, velocity, update, inputs, x, draws)`` returns a ``StepFn`` that replays the graph
    for (key, the structure of ``inputs``, x's shape) after loading ``inputs`` into its static
    buffers, capturing it first if needed; or None when it cannot be captured (the caller then
    runs the eager step). ``capture`` is the backend (``cuda_capture`` by default; tests pass one
    that replays by calling the body, which checks the static-buffer bookkeeping on a CPU).
    """

    def __init__(self, max_graphs: int = 8, max_bytes: int = 2 * GIB, capture: Optional[Capture] = None):
        self.max_graphs, self.max_bytes = max_graphs, max_bytes
        self._capture = capture
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._failed: set[tuple] = set()
        self.captures = 0  # graphs captured so far (tests, benchmarks)
        self.capture_s = 0.0  # seconds spent capturing them (warm-up included)

    def __len__(self) -> int:
        return len(self._graphs)

    @property
    def bytes(self) -> int:
        """Bytes of static buffers held by the graphs kept (the shared pool not included)."""
        return sum(g.bytes for g in self._graphs.values())

    def clear(self) -> None:
        self._graphs.clear()
        self._failed.clear()

    def step(self, key: tuple, velocity: Velocity, update: Update, inputs: Any, x: Tensor,
             draws: Optional[Tensor]) -> Optional[StepFn]:
        """A replaying ``StepFn`` for a generation whose step is ``make_step(lambda x, t:
        velocity(x, t, *inputs), update)``; ``x`` (B, C, T) and ``draws`` (steps, B, C, T) or None
        are the generation's first state and its draws (they size the static buffers)."""
        full = (key, signature(inputs), tuple(x.shape), x.dtype, x.device, draws is not None)
        if full in self._failed:
            return None
        graph = self._graphs.get(full)
        if graph is None:
            graph = self._new(full, velocity, update, inputs, x, draws)
            if graph is None:
                return None
        else:
            load(graph.inputs, inputs)
            self._graphs.move_to_end(full)
        return graph.step

    def _new(self, full: tuple, velocity: Velocity, update: Update, inputs: Any, x: Tensor,
             draws: Optional[Tensor]) -> Optional[_Graph]:
        t0 = time.perf_counter()
        static = clone_tree(inputs)
        B = x.shape[0]
        t_now = torch.full((B,), 0.5, device=x.device, dtype=x.dtype)  # any level: warm-up only
        bufs = dict(x=x.clone(), t_now=t_now, t_next=t_now.clone(),
                    eps=None if draws is None else draws[0].clone(), inputs=static)
        outs = dict(x_next=torch.empty_like(x), denoised=torch.empty_like(x))
        step = make_step(lambda x, t: velocity(x, t, *static), update)

        def body() -> None:
            x_next, denoised = step(bufs["x"], bufs["t_now"], bufs["t_next"], bufs["eps"])
            outs["x_next"].copy_(x_next)
            outs["denoised"].copy_(denoised)
        try:
            replay = (self._capture or cuda_capture())(body)
        except Exception as e:  # an op that cannot be captured: remember, run eagerly
            log.warning("sampler step not captured as a CUDA graph (%s: %s); running it eagerly",
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            self._failed.add(full)
            return None
        size = tree_bytes(static) + 5 * tree_bytes(x)
        graph = _Graph(**bufs, **outs, replay=replay, bytes=size)
        self._graphs[full] = graph
        self.captures += 1
        self.capture_s += time.perf_counter() - t0
        while len(self._graphs) > 1 and (len(self._graphs) > self.max_graphs or self.bytes > self.max_bytes):
            self._graphs.popitem(last=False)
        return graph


def weights_key(module: torch.nn.Module) -> tuple:
    """Where ``module``'s parameters live: a graph reads them at these addresses, so another set
    (a cast, a move, a LoRA's effective weights) needs another graph."""
    return tuple(p.data_ptr() for p in module.parameters())
