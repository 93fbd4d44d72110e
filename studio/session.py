"""A session: the versions of one track and the takes made on it, as plain data mirrored on disk.

Layout of a session folder (default ./sessions/<id>/, root set by SA3_SESSIONS or --sessions):
    session.json          this dataclass, rewritten atomically after every change
    versions/vNNN.wav     float32 WAVs of sources (a version made by accepting a take points at it)
    takes/tNNN.wav        every take, kept even when discarded
    exports/...           exported files and their side-car JSON
Functions never mutate a Session; they write files first, then return the new value, so a crash
leaves the previous session.json valid. Uploaded source files are only read, never touched.
"""
from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from studio import audio_io
from studio.api import SAMPLE_RATE, Region, Take

_ID = re.compile(r"^[0-9a-f]{12}$")


@dataclass(frozen=True)
class Version:
    id: str
    file: str                     # relative to the session folder
    label: str                    # e.g. "source: drums.wav" or "take 3 accepted"
    regions: tuple[Region, ...] = ()  # edited regions (highlighted in the painter)
    note: str = ""                # what load_audio converted


@dataclass(frozen=True)
class TakeRecord:
    id: str
    file: str
    base: str                     # id of the version it was made from
    prompt: str                   # as sent to the model (prefix included)
    seed: int
    model: str
    regions: tuple[Region, ...]
    settings: dict = field(default_factory=dict)  # steps, strength, crossfade_ms, continue_seconds
    elapsed: float = 0.0
    discarded: bool = False


@dataclass(frozen=True)
class Session:
    id: str
    folder: str
    versions: tuple[Version, ...] = ()
    cursor: int = -1              # index of the current version; undo/redo move it
    takes: tuple[TakeRecord, ...] = ()

    @property
    def current(self) -> Version | None:
        return self.versions[self.cursor] if self.versions else None

    @property
    def live_takes(self) -> tuple[TakeRecord, ...]:
        return tuple(t for t in self.takes if not t.discarded)

    def path(self, rel: str) -> Path:
        return Path(self.folder) / rel

    def take(self, take_id: str) -> TakeRecord:
        for t in self.takes:
            if t.id == take_id:
                return t
        raise KeyError(f"no take {take_id!r} in session {self.id}")


def create(root: str | Path) -> Session:
    sid = secrets.token_hex(6)
    folder = Path(root).resolve() / sid
    folder.mkdir(parents=True, exist_ok=False)
    return _save(Session(sid, str(folder)))


def open_session(root: str | Path, sid: str) -> Session:
    """The session saved under root/sid; ValueError for a malformed id, FileNotFoundError if absent."""
    if not _ID.match(sid or ""):
        raise ValueError(f"session id must be 12 hex digits, got {sid!r}")
    folder = Path(root).resolve() / sid
    data = json.loads((folder / "session.json").read_text())
    versions = tuple(Version(**{**v, "regions": _regions(v["regions"])}) for v in data["versions"])
    takes = tuple(TakeRecord(**{**t, "regions": _regions(t["regions"])}) for t in data["takes"])
    return Session(data["id"], str(folder), versions, data["cursor"], takes)


def set_source(s: Session, audio: np.ndarray, label: str, note: str = "") -> Session:
    """A new current version holding `audio` (redo history past the cursor is dropped)."""
    vid = _new_id("v", s.versions)
    audio_io.write_audio(s.path(f"versions/{vid}.wav"), audio, "wav32f")
    return _push(s, Version(vid, f"versions/{vid}.wav", label, (), note))


def add_take(s: Session, take: Take, prompt: str, settings: dict) -> tuple[Session, TakeRecord]:
    tid = f"t{len(s.takes) + 1:03d}"
    audio_io.write_audio(s.path(f"takes/{tid}.wav"), take.audio, "wav32f")
    rec = TakeRecord(tid, f"takes/{tid}.wav", s.current.id if s.current else "", prompt, take.seed,
                     take.model, tuple(take.regions), dict(settings), round(take.elapsed, 3))
    return _save(replace(s, takes=s.takes + (rec,))), rec


def accept(s: Session, take_id: str) -> Session:
    t = s.take(take_id)
    vid = _new_id("v", s.versions)
    return _push(s, Version(vid, t.file, f"{take_label(t)} accepted", t.regions))


def discard(s: Session, take_id: str) -> Session:
    s.take(take_id)
    takes = tuple(replace(t, discarded=True) if t.id == take_id else t for t in s.takes)
    return _save(replace(s, takes=takes))


def undo(s: Session) -> Session:
    return _save(replace(s, cursor=max(0, s.cursor - 1))) if s.cursor > 0 else s


def redo(s: Session) -> Session:
    return _save(replace(s, cursor=s.cursor + 1)) if s.cursor < len(s.versions) - 1 else s


def audio(s: Session, rel: str) -> np.ndarray:
    return audio_io.read_track(s.path(rel))


def export(s: Session, what: str, fmt: str) -> Path:
    """Export the current version (what='current') or a take id; returns the audio file's path."""
    if what == "current":
        v = s.current
        rel, meta = v.file, {"version": v.id, "label": v.label, "regions": _plain(v.regions)}
        t = _take_of(s, v.file)
        if t is not None:
            meta.update(_take_meta(t))
    else:
        t = s.take(what)
        rel, meta = t.file, _take_meta(t)
    meta.update(sample_rate=SAMPLE_RATE, session=s.id, format=fmt)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"exports/{Path(rel).stem}-{stamp}{audio_io.FORMATS[fmt][2]}"
    path, _ = audio_io.export(s.path(name), audio(s, rel), fmt, meta)
    return path


def take_label(t: TakeRecord) -> str:
    return f"take {int(t.id[1:])}"


def _take_of(s: Session, rel: str) -> TakeRecord | None:
    return next((t for t in s.takes if t.file == rel), None)


def _take_meta(t: TakeRecord) -> dict:
    return {"take": t.id, "prompt": t.prompt, "seed": t.seed, "model": t.model,
            "regions": _plain(t.regions), "settings": t.settings}


def _new_id(prefix: str, items) -> str:
    """Ids stay unique after undo + new version drops the redo tail (its files stay on disk)."""
    return f"{prefix}{len(items) + 1:03d}-{secrets.token_hex(2)}"


def _push(s: Session, v: Version) -> Session:
    versions = s.versions[:s.cursor + 1] + (v,)
    return _save(replace(s, versions=versions, cursor=len(versions) - 1))


def _save(s: Session) -> Session:
    data = asdict(s)
    data.pop("folder")
    audio_io.write_json(s.path("session.json"), data)
    return s


def _regions(items) -> tuple[Region, ...]:
    return tuple(Region(**r) for r in items)


def _plain(regions) -> list[dict]:
    return [asdict(r) for r in regions]
