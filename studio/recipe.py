"""A take's recipe: everything it depends on, as JSON, and back into the request that remakes it.

The side-car written beside every export (CLI and studio) is a recipe. Audio a request holds
(the source of an edit, the init of audio-to-audio) is named by its file and the SHA-256 of its
samples as the studio reads them (float32, 44.1 kHz stereo), so a replay can prove it starts from
the same audio. ``python -m studio replay SIDECAR.json`` remakes the take bit for bit on the same
machine and precision (torch kernels may differ between machines).

A take made in the studio may stand on accepted takes (take 1 accepted, take 2 made on it...).
Its side-car is then a chain: the top level is the recipe of the last take, and ``"chain"`` lists
the recipes of the accepted takes below it, oldest first. The first step's source is a file; each
later step's source is the previous step's output (``"file": null``), which a replay makes again
and checks against the recorded SHA-256 before going on.

A healed loop (studio/loops.py) is an edit of the loop turned so its wrap sits in the middle: its
recipe adds ``"loop"`` (where the loop was cut from the file or the previous output, how far it was
turned, whether the output is the loop alone or the input with the loop healed in place). Its
``source`` hash is that of the turned loop, its ``output_sha256`` that of the output; a replay cuts,
turns, edits and turns back the same way.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable

import numpy as np

from studio import loops
from studio.api import SAMPLE_RATE, EditRequest, GenerateRequest, Guidance, LoraSpec, Region, Take

VERSION = 1
AUDIO_FIELDS = ("source", "init_audio", "guide")  # request fields that hold audio


def audio_hash(audio: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()


def file_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes (a LoRA adapter), read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def to_recipe(take: Take, files: dict[str, str | Path | None], **extra) -> dict:
    """The take's recipe; ``files`` names the file each audio field of its request came from
    (None: the output of the previous step of a chain); ``extra`` (e.g. precision, device and model
    revision: an engine's ``made_on``) is recorded as given."""
    req = take.request
    data: dict = {"recipe": VERSION, "kind": "edit" if isinstance(req, EditRequest) else "generate"}
    for f in fields(req):
        value = getattr(req, f.name)
        if f.name in AUDIO_FIELDS:
            if value is not None:
                if f.name not in files:
                    raise ValueError(f"the recipe needs the file that {f.name} came from")
                file = files[f.name] and str(Path(files[f.name]).resolve())
                data[f.name] = {"file": file, "sha256": audio_hash(value),
                                "seconds": value.shape[1] / SAMPLE_RATE}
            continue
        data[f.name] = _plain(value)
    for spec in data["loras"]:
        if Path(spec["path"]).is_file():  # a local adapter, pinned by its bytes (a hub one by its repo path)
            spec.update(path=str(Path(spec["path"]).resolve()), sha256=file_hash(spec["path"]))
    data.update(sample_rate=SAMPLE_RATE, output_sha256=audio_hash(take.audio), made_by=take.model,
                elapsed_s=round(take.elapsed, 3), regenerated=[asdict(r) for r in take.regions],
                notes=list(take.notes), **extra)
    return data


def chained(steps: list[dict]) -> dict:
    """One side-car from the recipes of a chain of takes, oldest first (see the module doc)."""
    *below, last = steps
    return {**last, "chain": below} if below else dict(last)


def steps(data: dict) -> list[dict]:
    """The recipes of a side-car's chain, oldest first (one for a single take); ValueError (one
    sentence) for JSON that is not a side-car of this version."""
    chain = data.get("chain", []) if isinstance(data, dict) else None
    found = [*chain, data] if isinstance(chain, list) else [None]
    for step in found:
        _check(step)
    return [{k: v for k, v in step.items() if k != "chain"} for step in found]


def _check(step) -> None:
    if not (isinstance(step, dict) and step.get("recipe") == VERSION and step.get("kind") in ("edit", "generate")):
        raise ValueError("This JSON holds no take's recipe from this version of SA3 Studio (no \"recipe\": 1; "
                         "the export of a loaded clip has none): replay the side-car of an exported take.")


def files(data) -> list[Path]:
    """The files a side-car names (audio, local LoRAs) in every step of its chain (of any JSON: what it names)."""
    chain = data.get("chain") if isinstance(data, dict) else None
    found = [step for step in [*(chain if isinstance(chain, list) else []), data] if isinstance(step, dict)]
    paths = [step[name].get("file") for step in found for name in AUDIO_FIELDS if isinstance(step.get(name), dict)]
    paths += [spec.get("path") for step in found if isinstance(step.get("loras"), list) for spec in step["loras"]
              if isinstance(spec, dict) and "sha256" in spec]
    return [Path(path) for path in paths if isinstance(path, str)]


def replay(data: dict, read: Callable[[Path], np.ndarray],
           make: Callable[[GenerateRequest | EditRequest], Take]) -> Take:
    """The take a side-car describes, made again: each step of its chain by ``make`` (an engine
    run), each later step's source the previous step's output, checked against its recorded hash.
    ValueError (one sentence) when a file changed or a step came out different."""
    chain, take = steps(data), None
    for path in files(data):  # all there before any work (their samples are checked as each step reads them)
        _there(path)
    for k, step in enumerate(chain):
        previous = None if take is None else take.audio
        try:
            take = make(from_recipe(step, read, previous))
            if step.get("loop"):  # a healed loop: the edit was of the loop turned; turn it back (and put it in place)
                raw = previous if step["source"]["file"] is None else read(Path(step["source"]["file"]))
                take = loops.output_of(raw, take, step["loop"])
        except _Differs:
            made = chain[k - 1]  # the step whose output differs (a first step's source is a file)
            raise ValueError(
                f"Take {k} of the {len(chain)} in this side-car came out different from when it was made "
                f"({made.get('precision', '?')} on {made.get('device', '?')}), so the takes made on it cannot "
                "be replayed: replay on that machine with that --precision.") from None
    return take


class _Differs(ValueError):
    """A chained step's source (the previous step's output) is not what the take was made from."""


def from_recipe(data: dict, read: Callable[[Path], np.ndarray],
                previous: np.ndarray | None = None) -> GenerateRequest | EditRequest:
    """The request one recipe describes; ``read`` loads an audio file into (2, N) float32 at 44.1 kHz;
    ``previous`` is the output of the step before (the source of a step whose file is null).
    ValueError (one sentence) for a recipe this version cannot read or audio that changed."""
    _check(data)
    cls = EditRequest if data["kind"] == "edit" else GenerateRequest
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in AUDIO_FIELDS:
            value = _audio(value, read, previous, data.get("loop") if f.name == "source" else None) \
                if value is not None else None
        elif f.name == "regions":
            value = tuple(Region(**r) for r in value)
        elif f.name == "guidance":
            value = Guidance(**value)
        elif f.name == "loras":
            value = tuple(_lora(spec) for spec in value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _audio(entry: dict, read, previous: np.ndarray | None, loop: dict | None = None) -> np.ndarray:
    """The audio a recipe's entry names (a file, or the previous step's output), checked against its
    hash; for a healed loop's source (``loop``: its step, studio/loops.py) the loop cut and turned."""
    if entry["file"] is None:  # a chained step: made from the previous step's output
        if previous is None:
            raise ValueError("The first take of this side-car names no file it was made from: replay a side-car "
                             "written by an export.")
        audio = previous if loop is None else loops.source_of(previous, loop)
        if audio_hash(audio) != entry["sha256"]:
            raise _Differs()
        return audio
    path = _there(Path(entry["file"]))
    audio = read(path) if loop is None else loops.source_of(read(path), loop)
    if audio_hash(audio) != entry["sha256"]:
        raise ValueError(f"{path.name} has changed since the take was made, so the replay would differ: "
                         "use the file the take was made from.")
    return audio


def _lora(spec: dict) -> LoraSpec:
    """The LoraSpec a recipe records; a local adapter's file checked unchanged."""
    spec = dict(spec)
    recorded = spec.pop("sha256", None)
    if recorded is not None and file_hash(_there(Path(spec["path"]))) != recorded:
        raise ValueError(f"The LoRA {Path(spec['path']).name} has changed since the take was made, so the replay "
                         "would differ: use the adapter file the take was made with.")
    return LoraSpec(**{**spec, "interval": tuple(spec["interval"])})


def _there(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"The take was made from {path}, which is no longer there: put it back to replay.")
    return path


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
