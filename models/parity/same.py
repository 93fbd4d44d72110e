"""Parity runner for SAME fixtures: ``encode`` and ``decode`` (grammar in ../shared/golden/README.md).

encode: ``latents_<N>`` (audio_<N> padded to 4096), ``latents_raw_<N>``, ``latents_batch<k>`` (the
clips named in its doc, zero-padded to the longest), ``latents_<N>_chunked_c<chunk>_o<overlap>``.
decode: from ``latents_<L>``: ``audio_<L>_zero_noise`` (deterministic), ``audio_<L>_recorded_noise``
(draws ``d<L>_noise_<k>`` replayed in the order of ``d<L>_noise_sequence``),
``audio_<L>_chunked_c<chunk>_o<overlap>_zero_noise``. Every number comes from the names.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import torch

from models import sa3
from models.loading import Checkpoint, read_tensors
from models.parity.core import CaseResult, Fixture, check, skip
from models.noise import recorded_noise
from models.same import Same

AUDIO_INPUTS = ("common", "audio_inputs.safetensors")


@lru_cache(maxsize=4)
def load_same(folder: str) -> Same:
    """The fixture folder's SAME in fp32 on CPU (standalone layout, or a full checkpoint's pretransform)."""
    return sa3.load_same(Checkpoint(Path(folder)))


def run(fx: Fixture) -> Iterator[CaseResult]:
    model = load_same(str(fx.folder))
    if fx.name == "encode":
        yield from _encode_cases(fx, model)
    elif fx.name == "decode":
        yield from _decode_cases(fx, model)
    else:
        yield skip(fx.name, "not a SAME fixture")


def _encode_cases(fx: Fixture, model: Same) -> Iterator[CaseResult]:
    audio = read_tensors(fx.golden_root.joinpath(*AUDIO_INPUTS))
    for name in fx.meta["tensors"]:
        golden = fx.tensors[name]
        if m := re.fullmatch(r"latents_(\d+)", name):
            ours = model.encode(audio[f"audio_{m[1]}"][None])
        elif m := re.fullmatch(r"latents_raw_(\d+)", name):
            ours = model.encode(audio[f"audio_{m[1]}"][None], pad=False)
        elif m := re.fullmatch(r"latents_(\d+)_chunked_c(\d+)_o(\d+)", name):
            ours = model.encode_chunked(audio[f"audio_{m[1]}"][None], int(m[2]), int(m[3]))
        elif re.fullmatch(r"latents_batch\d+", name):
            clips = _batch_clips(fx.doc(name))
            if not clips:
                yield skip(name, "cannot read the batch's clips from its doc")
                continue
            ours = model.encode(_pad_batch([audio[c] for c in clips]))
        else:
            yield skip(name, "unrecognised encode tensor name")
            continue
        yield check(name, ours, golden)


def _batch_clips(doc: str) -> list[str]:
    """``"batch [audio_4096, audio_28000] via ..."`` -> ["audio_4096", "audio_28000"]."""
    m = re.search(r"\[([^\]]*)\]", doc)
    return re.findall(r"audio_\d+", m[1]) if m else []


def _pad_batch(clips: list[torch.Tensor]) -> torch.Tensor:
    """Zero-pad (C, N_i) clips to the longest and stack (official preprocess_audio_list_for_encoder)."""
    n = max(c.shape[-1] for c in clips)
    return torch.stack([torch.nn.functional.pad(c, (0, n - c.shape[-1])) for c in clips])


def _decode_cases(fx: Fixture, model: Same) -> Iterator[CaseResult]:
    for name in fx.meta["tensors"]:
        if re.fullmatch(r"latents_\d+|d\d+_noise_\d+", name):
            continue  # inputs
        m = re.fullmatch(r"audio_(\d+)(?:_chunked_c(\d+)_o(\d+))?_(zero|recorded)_noise", name)
        if not m:
            yield skip(name, "unrecognised decode tensor name")
            continue
        latents = fx.tensors[f"latents_{m[1]}"]
        noise = None
        if m[4] == "recorded":
            seq = fx.meta.get(f"d{m[1]}_noise_sequence")
            if seq is None or m[2]:
                yield skip(name, f"no d{m[1]}_noise_sequence for this case")
                continue
            noise = recorded_noise([fx.tensors[d["name"]] for d in seq])
        if m[2]:
            ours = model.decode_chunked(latents, int(m[2]), int(m[3]), noise=noise, trim=False)
        else:
            ours = model.decode(latents, noise=noise, trim=False)
        if noise is not None and noise.remaining:
            yield CaseResult(name, "fail", note=f"{len(noise.remaining)} recorded draws were not used")
            continue
        yield check(name, ours, fx.tensors[name])
