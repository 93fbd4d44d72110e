"""A take's recipe: everything it depends on, as JSON, and back into the request that remakes it.

The side-car written beside every export (CLI and studio) is a recipe. Audio a request holds
(the source of an edit, the init of audio-to-audio) is named by its file and the SHA-256 of its
samples as the studio reads them (float32, 44.1 kHz stereo), so a replay can prove it starts from
the same audio. ``python -m studio replay SIDECAR.json`` remakes the take bit for bit on the same
machine and precision (torch kernels may differ between machines).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable

import numpy as np

from studio.api import SAMPLE_RATE, EditRequest, GenerateRequest, Guidance, LoraSpec, Region, Take

VERSION = 1
AUDIO_FIELDS = ("source", "init_audio", "guide")  # request fields that hold audio


def audio_hash(audio: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()


def to_recipe(take: Take, files: dict[str, str | Path], **extra) -> dict:
    """The take's recipe; ``files`` names the file each audio field of its request came from;
    ``extra`` (e.g. precision, model revision) is recorded as given."""
    req = take.request
    data: dict = {"recipe": VERSION, "kind": "edit" if isinstance(req, EditRequest) else "generate"}
    for f in fields(req):
        value = getattr(req, f.name)
        if f.name in AUDIO_FIELDS:
            if value is not None:
                if f.name not in files:
                    raise ValueError(f"the recipe needs the file that {f.name} came from")
                data[f.name] = {"file": str(Path(files[f.name]).resolve()), "sha256": audio_hash(value),
                                "seconds": value.shape[1] / SAMPLE_RATE}
            continue
        data[f.name] = _plain(value)
    data.update(sample_rate=SAMPLE_RATE, made_by=take.model, elapsed_s=round(take.elapsed, 3),
                regenerated=[asdict(r) for r in take.regions], notes=list(take.notes), **extra)
    return data


def from_recipe(data: dict, read: Callable[[Path], np.ndarray]) -> GenerateRequest | EditRequest:
    """The request a recipe describes; ``read`` loads an audio file into (2, N) float32 at 44.1 kHz.
    ValueError (one sentence) for a recipe this version cannot read or audio that changed."""
    if data.get("recipe") != VERSION or data.get("kind") not in ("edit", "generate"):
        raise ValueError("This JSON is not a take's side-car from this version of SA3 Studio "
                         "(no \"recipe\": 1): replay a side-car written by an export.")
    cls = EditRequest if data["kind"] == "edit" else GenerateRequest
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in AUDIO_FIELDS:
            value = _audio(value, read) if value is not None else None
        elif f.name == "regions":
            value = tuple(Region(**r) for r in value)
        elif f.name == "guidance":
            value = Guidance(**value)
        elif f.name == "loras":
            value = tuple(LoraSpec(**{**spec, "interval": tuple(spec["interval"])}) for spec in value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _audio(entry: dict, read) -> np.ndarray:
    path = Path(entry["file"])
    if not path.is_file():
        raise ValueError(f"The take was made from {path}, which is no longer there: put it back to replay.")
    audio = read(path)
    if audio_hash(audio) != entry["sha256"]:
        raise ValueError(f"{path.name} has changed since the take was made, so the replay would differ: "
                         "use the file the take was made from.")
    return audio


def _plain(value):
    """JSON-ready copy of a request field (dataclasses, tuples, numpy scalars)."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"a recipe cannot hold {value}")
    return value
