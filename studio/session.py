"""A session: the versions of one track and the takes made on it, as plain data mirrored on disk.

Layout of a session folder (default ./sessions/<id>/, root set by SA3_SESSIONS or --sessions):
    session.json          this dataclass (format 2), replaced atomically after every change
    .lock                 the file the OS lock is taken on
    versions/vNNN.wav     float32 WAVs of loaded or generated sources, never rewritten
    takes/tNNN.wav        what each take changed: its changed spans (and continuation) back to back
    cache/tNNN.wav        the full audio of recently heard or exported takes, rebuilt exactly
    guides/<hash>.wav     guide files takes were restyled from (float32, named by their samples' hash)
    loras/<hash>.safetensors  the local LoRA files takes used (uploads are temporary), named by their hash
    views/, exports/      painter views; exported files and their side-car JSON (a recipe: studio/recipe.py)

Safe with many tabs and processes: every change runs under the session's lock (a thread lock
plus fcntl.flock on .lock) on the LATEST session.json, never on a caller's copy, so a Session
value passed in is only a handle (its id and folder; add_take also uses its current version as
the take's base). New files are created exclusively (a take or version file is never
overwritten) and atomically (a temporary ".tmp-" file, then a link or rename). Every file is
written while the lock is held, so a temporary file seen under the lock is the debris of a
killed writer, and `recover` removes it.

A take stores only the samples where it differs from its base version (bitwise), so a take on a
600 s clip costs what was regenerated, not 200 MB. `audio` rebuilds it sample for sample;
`track_file` materialises it as a WAV in a bounded cache for playback.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from studio import audio_io, recipe
from studio.api import SAMPLE_RATE, Region, Request, Take
from studio.edit import to_samples
from studio.meter import Grid

try:
    import fcntl
except ImportError:  # Windows: the thread lock alone (one studio process per sessions folder)
    fcntl = None

FORMAT = 2
# A session's id is its only key (the ?session= URL, the file route): 128 random bits, the usual
# size of session identifiers; hex, not token_urlsafe, so two ids never differ only in case (one
# folder on a case-insensitive disk). Ids of 12 hex digits (48 bits) were made before: they still open.
ID_BYTES = 16
_ID = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{12})$")
SPAN_GAP = 4096           # samples: changed runs closer than this are stored as one span
MAX_SPANS = 256           # more scattered changes than this: the take is stored whole
CACHE_BYTES = 512 * 2**20  # full take WAVs kept per session for playback (the newest two always)
STALE_SECONDS = 3600      # a session folder without session.json this old is a crashed create


class SessionError(ValueError):
    """A session problem a musician can act on; str(e) is one sentence naming the fix."""


DISK_FULL = ("The server's disk is full, so this was not saved; your session is kept as it was before it "
             "(nothing is half-written): try again later, once the host has freed space.")


class DiskFull(SessionError):
    """A write into a session refused for want of space (str(e): DISK_FULL). Every write is atomic
    (audio_io.atomic_write), so the session is exactly as it was before the change."""


@dataclass(frozen=True)
class Version:
    id: str
    file: str                     # relative to the session folder; "" for an accepted take
    label: str                    # e.g. "source: drums.wav" or "take 3 accepted"
    regions: tuple[Region, ...] = ()  # edited regions (highlighted in the painter)
    note: str = ""                # what load_audio converted
    take: str = ""                # id of the accepted take whose audio this version is
    recipe: dict = field(default_factory=dict)  # a generated source's recipe (studio/recipe.py)
    grid: dict = field(default_factory=dict)    # its bar grid (studio.meter.Grid's fields); {} if none
    tempo: str = ""               # how the grid was found or set (the tempo panel's line); "" until analysed


@dataclass(frozen=True)
class TakeRecord:
    id: str
    file: str                     # the changed spans, back to back (the whole take if spans is None)
    base: str                     # id of the version it was made from
    prompt: str                   # as sent to the model (prefix included)
    seed: int
    model: str
    regions: tuple[Region, ...]
    settings: dict = field(default_factory=dict)  # steps, strength, crossfade_ms, continue_seconds
    elapsed: float = 0.0
    discarded: bool = False
    frames: int = 0               # length of the take in samples
    spans: tuple[tuple[int, int], ...] | None = None  # [start, end) samples that differ from base
    shift: int = 0                # samples prepended before the base (an intro: extend before the start)
    recipe: dict = field(default_factory=dict)  # what made it (studio/recipe.py); {} if stored before recipes


@dataclass(frozen=True)
class Session:
    id: str
    folder: str
    versions: tuple[Version, ...] = ()  # every version ever made (a take may be based on any)
    history: tuple[str, ...] = ()       # version ids Undo/Redo walk; a new version drops the redo tail
    cursor: int = -1                    # index into history of the current version
    takes: tuple[TakeRecord, ...] = ()
    last: dict = field(default_factory=dict)  # last prompt and settings, source name: restored on reload

    @property
    def current(self) -> Version | None:
        return self.version(self.history[self.cursor]) if self.history else None

    @property
    def live_takes(self) -> tuple[TakeRecord, ...]:
        return tuple(t for t in self.takes if not t.discarded)

    def path(self, rel: str) -> Path:
        return Path(self.folder) / rel

    def version(self, vid: str) -> Version:
        return next(v for v in self.versions if v.id == vid)

    def take(self, take_id: str) -> TakeRecord:
        for t in self.takes:
            if t.id == take_id:
                return t
        raise KeyError(f"There is no take {take_id!r} in session {self.id}; pick one from the list.")


# ---- opening and creating -------------------------------------------------------------------

def folder_of(root: str | Path, sid: str) -> Path:
    """root/sid; SessionError for an id that is not 32 (or, made before, 12) hex digits, so nothing
    outside root is reached."""
    if not _ID.match(sid or ""):
        raise SessionError(f"{sid!r} is not a session id (32 hex digits); "
                           "open the studio without ?session= to start a new one.")
    return Path(root).resolve() / sid


def served_file(root: str | Path, sid: str, rel: str) -> Path:
    """The file ``rel`` of session ``sid`` under ``root``, for the page's media route: only a finished
    file inside that session's folder (no temporary file, nothing a link or ``..`` leads out to);
    FileNotFoundError otherwise, the same whether the file is missing or out of reach."""
    folder = folder_of(root, sid)
    path = (folder / rel).resolve()
    if not path.is_relative_to(folder) or path.name.startswith(audio_io.TEMP_PREFIX) or not path.is_file():
        raise FileNotFoundError(rel)
    return path


def in_session(path: str | Path) -> tuple[str, str]:
    """(session id, path inside its folder) of a file stored in a session (the inverse of
    ``served_file``); ValueError for a file outside every session."""
    path = Path(path).resolve()
    for folder in path.parents:
        if _ID.match(folder.name) and (folder / "session.json").is_file():
            return folder.name, path.relative_to(folder).as_posix()
    raise ValueError(f"{path.name} is not a file of a session.")


def create(root: str | Path) -> Session:
    """A new, empty session folder (call it when the user first stores something)."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    sid = secrets.token_hex(ID_BYTES)
    folder = root / sid
    with _said_full():
        folder.mkdir(exist_ok=False)
    s = Session(sid, str(folder))
    try:
        with _locked(folder):
            _save(s)
    except DiskFull:
        shutil.rmtree(folder, ignore_errors=True)  # no folder without its session.json
        raise
    return s


def open_session(root: str | Path, sid: str) -> Session:
    """The session saved under root/sid; SessionError for a malformed id, FileNotFoundError if absent."""
    return _read(folder_of(root, sid))


def reload(s: Session) -> Session:
    """The latest state of `s` on disk (other tabs and processes may have changed it)."""
    return _read(Path(s.folder))


def _read(folder: Path) -> Session:
    data = json.loads((folder / "session.json").read_text())
    versions = tuple(Version(**{**v, "regions": _regions(v["regions"])}) for v in data["versions"])
    takes = tuple(_take_record(t) for t in data["takes"])
    history = tuple(data.get("history") or (v.id for v in versions))  # format 1: all versions
    return Session(data["id"], str(folder), versions, history, data["cursor"], takes, data.get("last", {}))


def _take_record(t: dict) -> TakeRecord:
    spans = t.get("spans")
    return TakeRecord(**{**t, "regions": _regions(t["regions"]),
                         "spans": None if spans is None else tuple(tuple(sp) for sp in spans)})


# ---- changes: each under the lock, applied to the latest state --------------------------------

def set_source(s: Session, audio: np.ndarray, label: str, note: str = "", made_by: dict | None = None) -> Session:
    """A new current version holding `audio` (the redo tail is dropped from history, not from disk);
    ``made_by``: the recipe of a generated source."""
    def change(latest: Session) -> Session:
        vid = _next_id("v", latest.versions, latest.path("versions"))
        rel = f"versions/{vid}.wav"
        audio_io.write_audio(latest.path(rel), audio, "wav32f", exclusive=True)
        latest = replace(latest, last={**latest.last, "source": label})
        return _push(latest, Version(vid, rel, label, (), note, recipe=made_by or {}))
    return _change(s, change)[0]


def add_take(s: Session, take: Take, prompt: str, settings: dict,
             made_on: dict | None = None) -> tuple[Session, TakeRecord]:
    """Store `take`, made from s.current (the version the caller read), as a new take with its
    recipe (``made_on``: the engine's, see Engine.made_on).

    Only the samples that differ from that version are written; the take's id is allocated from
    the latest state, so takes from other tabs are kept and never overwritten."""
    base = s.current
    base_audio = audio(s, base.id) if base else np.zeros((2, 0), np.float32)
    full = np.asarray(take.audio, np.float32)
    shift = to_samples(getattr(take.request, "extend_start_seconds", 0.0) or 0.0)
    spans = changed_spans(base_audio, full, shift)
    patch = np.concatenate([full[:, a:b] for a, b in spans], axis=1) if spans else full[:, :0]
    request, guide = _keep_inputs(s, take.request)
    files = {"source": s.path(base.file) if base and base.file else None,  # None: the accepted take below
             "guide": guide}
    made_by = recipe.to_recipe(replace(take, request=request), files, **(made_on or {}))

    def change(latest: Session) -> Session:
        tid = _next_id("t", latest.takes, latest.path("takes"))
        audio_io.write_audio(latest.path(f"takes/{tid}.wav"), patch, "wav32f", exclusive=True)
        rec = TakeRecord(tid, f"takes/{tid}.wav", base.id if base else "", prompt, take.seed, take.model,
                         tuple(take.regions), dict(settings), round(take.elapsed, 3),
                         frames=full.shape[1], spans=spans, shift=shift, recipe=made_by)
        return replace(latest, takes=latest.takes + (rec,))
    new, _ = _change(s, change)
    return new, new.takes[-1]  # appended under the lock: the last one is this take


def _keep_inputs(s: Session, req: Request) -> tuple[Request, Path | None]:
    """Copies in the session of what a take's recipe must name but may not last (its guide's audio,
    its local LoRA files: in the studio, temporary uploads), each stored once under its hash.
    Returns (the request with its LoRAs pointing at the copies, the guide's copy or None)."""
    guide = getattr(req, "guide", None)
    guide_file = s.path(f"guides/{recipe.audio_hash(guide)[:16]}.wav") if guide is not None else None
    loras = {spec.path: s.path(f"loras/{recipe.file_hash(spec.path)[:16]}.safetensors")
             for spec in req.loras if Path(spec.path).is_file()}
    with _locked(Path(s.folder)):
        if guide_file is not None and not guide_file.exists():
            audio_io.write_audio(guide_file, guide, "wav32f", exclusive=True)
        for source, copy in loras.items():
            if not copy.exists():
                audio_io.atomic_write(copy, lambda tmp, source=source: shutil.copyfile(source, tmp), exclusive=True)
    kept = tuple(replace(spec, path=str(loras.get(spec.path, spec.path))) for spec in req.loras)
    return replace(req, loras=kept), guide_file


def accept(s: Session, take_id: str) -> Session:
    """The take becomes the current version; it keeps its base's bar grid (moved by an intro)."""
    def change(latest: Session) -> Session:
        t = latest.take(take_id)
        vid = _next_id("v", latest.versions, latest.path("versions"))
        base = latest.version(t.base) if t.base else None
        grid = dict(base.grid) if base else {}
        if grid:
            grid["downbeat"] = grid["downbeat"] + t.shift / SAMPLE_RATE
        return _push(latest, Version(vid, "", f"{take_label(t)} accepted", t.regions, take=t.id, grid=grid,
                                     tempo=base.tempo if base else ""))
    return _change(s, change)[0]


def grid_of(s: Session, vid: str | None = None) -> Grid | None:
    """The bar grid of the current version (or of version ``vid``), or None when it has none (no beat
    found, none set)."""
    v = s.current if vid is None else s.version(vid)
    return Grid(**v.grid) if v is not None and v.grid else None


def set_grid(s: Session, grid: Grid | None, note: str = "") -> Session:
    """Store ``grid`` (None: no grid) with the current version, so a reload keeps it; ``note`` says
    how it was found or set (e.g. "Found by librosa · confidence 0.82", or why there is none)."""
    def change(latest: Session) -> Session:
        v = latest.current
        if v is None:
            raise SessionError("Load or generate a clip first, then set its tempo.")
        new = replace(v, grid=asdict(grid) if grid is not None else {}, tempo=note)
        return replace(latest, versions=tuple(new if x.id == v.id else x for x in latest.versions))
    return _change(s, change)[0]


def discard(s: Session, take_id: str) -> Session:
    def change(latest: Session) -> Session:
        latest.take(take_id)
        return replace(latest, takes=tuple(replace(t, discarded=True) if t.id == take_id else t
                                           for t in latest.takes))
    return _change(s, change)[0]


def undo(s: Session) -> tuple[Session, bool]:
    """(latest session, whether the cursor moved back)."""
    return _change(s, lambda latest: replace(latest, cursor=latest.cursor - 1) if latest.cursor > 0 else latest)


def redo(s: Session) -> tuple[Session, bool]:
    """(latest session, whether the cursor moved forward)."""
    return _change(s, lambda latest: (replace(latest, cursor=latest.cursor + 1)
                                      if latest.cursor < len(latest.history) - 1 else latest))


def remember(s: Session, **values) -> Session:
    """Store the last prompt/settings (plain JSON values), restored when the page is reloaded."""
    return _change(s, lambda latest: replace(latest, last={**latest.last, **values}))[0]


def _change(s: Session, change) -> tuple[Session, bool]:
    """(change(latest), whether it changed anything): applied and saved under the session's lock."""
    folder = Path(s.folder)
    with _locked(folder):
        latest = _read(folder)
        new = change(latest)
        if new != latest:
            _save(new)
        return new, new != latest


def _push(s: Session, v: Version) -> Session:
    history = s.history[:s.cursor + 1] + (v.id,)
    return replace(s, versions=s.versions + (v,), history=history, cursor=len(history) - 1)


def _next_id(prefix: str, items, folder: Path) -> str:
    """One past the highest id in use, in the session or on disk (so a leftover file is skipped)."""
    names = [x.id for x in items] + ([p.stem for p in folder.glob(f"{prefix}*")] if folder.is_dir() else [])
    return f"{prefix}{max(map(_number, names), default=0) + 1:03d}"


def _number(name: str) -> int:
    """3 for 't003', 'v003' or a format-1 'v003-1f2e'."""
    digits = re.match(r"[a-z](\d+)", name)
    return int(digits.group(1)) if digits else 0


def _save(s: Session) -> Session:
    data = asdict(s)
    data.pop("folder")
    data["format"] = FORMAT
    audio_io.write_json(s.path("session.json"), data)
    return s


# ---- audio: exact rebuild, bounded cache of full files ------------------------------------------

def changed_spans(base: np.ndarray, audio: np.ndarray, shift: int = 0) -> tuple[tuple[int, int], ...]:
    """[start, end) sample spans of audio (2, M) that differ bitwise from base (2, N) placed at
    `shift`; what lies before `shift` or after the base counts as changed.

    Runs closer than SPAN_GAP are merged; with more than MAX_SPANS the whole take is one span."""
    n, m = base.shape[1], audio.shape[1]
    shift = min(max(shift, 0), m)
    k = min(n, m - shift)
    differs = np.any(base[:, :k].view(np.uint32) != audio[:, shift:shift + k].view(np.uint32), axis=0)
    differs = np.concatenate([[False], np.ones(shift, bool), differs, np.ones(m - shift - k, bool),
                              [False]]).astype(np.int8)
    edges = np.diff(differs)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if len(starts) > 1:
        apart = starts[1:] - ends[:-1] >= SPAN_GAP
        starts, ends = np.concatenate([starts[:1], starts[1:][apart]]), np.concatenate([ends[:-1][apart], ends[-1:]])
    if len(starts) > MAX_SPANS:
        return ((0, m),)
    return tuple((int(a), int(b)) for a, b in zip(starts, ends))


def audio(s: Session, what: str) -> np.ndarray:
    """(2, N) float32 of version id, take id or 'current', exactly as it was made."""
    if what == "current":
        what = s.current.id
    if what.startswith("v"):
        v = s.version(what)
        return audio(s, v.take) if v.take else audio_io.read_track(s.path(v.file))
    t = s.take(what)
    stored = audio_io.read_track(s.path(t.file))
    if t.spans is None:  # format 1: the file is the whole take
        return stored
    base = audio(s, t.base) if t.base else np.zeros((2, 0), np.float32)
    out = base if base.shape[1] == t.frames and not t.shift else np.zeros((2, t.frames), np.float32)
    if out is not base:
        k = min(base.shape[1], t.frames - t.shift)
        out[:, t.shift:t.shift + k] = base[:, :k]
    offset = 0
    for a, b in t.spans:
        out[:, a:b] = stored[:, offset:offset + b - a]
        offset += b - a
    return out


def track_file(s: Session, what: str) -> Path:
    """A full 32-bit float WAV of version id, take id or 'current' (a take's is rebuilt into the
    cache, which keeps about CACHE_BYTES per session)."""
    v = s.current if what == "current" else s.version(what) if what.startswith("v") else None
    if v is not None and not v.take:
        return s.path(v.file)
    tid = v.take if v is not None else s.take(what).id
    path = s.path(f"cache/{tid}.wav")
    with _locked(Path(s.folder)):
        if not path.exists():
            audio_io.write_audio(path, audio(s, tid), "wav32f")
        os.utime(path)  # newest first when the cache is pruned
        _prune_cache(Path(s.folder), keep=path)
    return path


def _prune_cache(folder: Path, keep: Path | None = None) -> None:
    files = sorted((folder / "cache").glob("*.wav"), key=lambda p: p.stat().st_mtime, reverse=True)
    total = 0
    for i, p in enumerate(files):
        total += p.stat().st_size
        if i >= 2 and total > CACHE_BYTES and p != keep:
            p.unlink(missing_ok=True)


@contextmanager
def locked(s: Session):
    """Hold the session's lock, e.g. while writing a file into its folder (see the module doc)."""
    with _locked(Path(s.folder)):
        yield


def export(s: Session, what: str, fmt: str, name: str | None = None, span: tuple[int, int] | None = None) -> Path:
    """Export the current version (what='current') or a take id, with a side-car JSON: the recipe
    of what made it (see `recipe_of`), else what is known; returns the audio file's path.
    ``name``: the file's name without its extension (default: the take or version id and the time);
    ``span``: [start, end) samples to export instead of the whole (recorded as ``"excerpt"``)."""
    if what == "current":
        v = s.current
        meta = {"version": v.id, "label": v.label, "regions": _plain(v.regions)}
        if v.take:
            meta.update(_take_meta(s.take(v.take)))
        stem = v.take or v.id
    else:
        t = s.take(what)
        meta, stem = _take_meta(t), t.id
    made = recipe_of(s, what)
    if made:
        meta = {**made, **{k: meta[k] for k in ("version", "label", "take") if k in meta}}
    meta.update(sample_rate=SAMPLE_RATE, session=s.id, format=fmt)
    data, ext = audio(s, what), audio_io.FORMATS[fmt][2]
    if span is not None:
        data = data[:, span[0]:span[1]]
        meta["excerpt"] = {"start": span[0], "end": span[1]}
    name = name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    with _locked(Path(s.folder)):
        for k in range(1000):  # two exports in one second get -2, -3, ...
            path = s.path(f"exports/{name}{f'-{k + 1}' if k else ''}{ext}")
            try:
                audio_io.write_audio(path, data, fmt, exclusive=True)
                break
            except FileExistsError:
                continue
        audio_io.write_json(path.with_suffix(".json"), meta)
    return path


def recipe_of(s: Session, what: str) -> dict:
    """The recipe (studio/recipe.py) of version id, take id or 'current': the take's, on the chain
    of accepted takes it was made on, down to the version that is a file (a loaded or generated
    source); a generated source's own. {} for a loaded file, or a take older than recipes."""
    v = s.current if what == "current" else s.version(what) if what.startswith("v") else None
    if v is not None and not v.take:
        return dict(v.recipe)
    steps, t = [], s.take(v.take if v is not None else what)
    while True:
        steps.insert(0, t.recipe)
        base = s.version(t.base) if t.base else None
        if base is None or not base.take:
            break
        t = s.take(base.take)
    return recipe.chained(steps) if all(steps) else {}


def take_label(t: TakeRecord) -> str:
    return f"take {_number(t.id)}"


def _take_meta(t: TakeRecord) -> dict:
    return {"take": t.id, "prompt": t.prompt, "seed": t.seed, "model": t.model,
            "regions": _plain(t.regions), "settings": t.settings}


# ---- bounds: quota, recovery after a crash, old sessions -----------------------------------------

def size_bytes(s: Session) -> int:
    """Bytes the session holds on disk, the playback cache excepted (it is bounded on its own)."""
    folder = Path(s.folder)
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.parent.name != "cache")


def check_room(s: Session, quota_bytes: int) -> None:
    """SessionError when the session already holds more than quota_bytes (checked before work starts,
    so a generation that was started always keeps its takes)."""
    used = size_bytes(s)
    if quota_bytes and used > quota_bytes:
        raise SessionError(f"This session holds {used / 2**20:.0f} MB, more than its "
                           f"{quota_bytes / 2**20:.0f} MB limit; export what you want to keep and "
                           "open the studio without ?session= to start a new session.")


def touch(s: Session) -> None:
    """Mark the session as used now (sessions untouched for --keep-sessions-days are deleted)."""
    os.utime(s.path("session.json"))


def recover(folder: str | Path) -> list[Path]:
    """Remove what killed writers left in a session folder (temporary files, files no record names)
    and trim the cache. Safe while the studio runs: every writer holds the lock. Returns what went."""
    folder = Path(folder)
    with _locked(folder):
        s = _read(folder)
        named = {v.file for v in s.versions} | {t.file for t in s.takes}
        debris = [p for p in folder.rglob(f"{audio_io.TEMP_PREFIX}*") if p.is_file()]
        debris += [p for sub in ("versions", "takes") for p in (folder / sub).glob("*")
                   if p.relative_to(folder).as_posix() not in named]
        for p in debris:
            p.unlink(missing_ok=True)
        _prune_cache(folder)
    return debris


def sweep(root: str | Path, keep_days: float = 0.0) -> list[str]:
    """Delete sessions untouched for keep_days (0: keep all) and crashed creations; recover the rest.
    Returns the ids deleted."""
    root = Path(root).resolve()
    gone, now = [], time.time()
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        if folder.name.startswith(audio_io.TEMP_PREFIX) and folder.is_file() and now - _mtime(folder) > STALE_SECONDS:
            folder.unlink(missing_ok=True)  # e.g. a tab's cancel flag (studio.ui)
        if not (folder.is_dir() and _ID.match(folder.name)):
            continue
        meta = folder / "session.json"
        if not meta.exists():
            if now - _mtime(folder) > STALE_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
                gone.append(folder.name)
            continue
        if keep_days and now - _mtime(meta) > keep_days * 86400:
            with _locked(folder):
                shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder.name)
        else:
            try:
                recover(folder)
            except (OSError, ValueError, KeyError, TypeError):  # unreadable session.json: left as it is
                continue
    return gone


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed meanwhile (another process sweeping): not old
        return time.time()


# ---- the lock ----------------------------------------------------------------------------------

_GUARD = threading.Lock()
_THREAD_LOCKS: dict[str, threading.Lock] = {}  # per session folder, shared by this process's threads


def _fresh_thread_locks() -> None:
    """In a forked child (ZeroGPU runs generations so), locks held by the parent's other threads
    would stay held forever: start with new ones (the file lock still orders the processes)."""
    global _GUARD, _THREAD_LOCKS
    _GUARD, _THREAD_LOCKS = threading.Lock(), {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_thread_locks)


@contextmanager
def _locked(folder: Path):
    """The session's lock: a thread lock (threads of this process) then flock on folder/.lock
    (other processes). Not re-entrant: public functions take it once."""
    with _GUARD:
        lock = _THREAD_LOCKS.setdefault(str(folder), threading.Lock())
    with lock, _said_full():
        if fcntl is None:
            yield
            return
        with open(folder / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:  # explicitly: a child forked meanwhile (ZeroGPU) shares f, so closing is not enough
                fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def _said_full():
    """A full disk met by a write under the lock (every session write) as DiskFull."""
    try:
        yield
    except OSError as e:
        if audio_io.disk_full(e):
            raise DiskFull(DISK_FULL) from e
        raise


def _regions(items) -> tuple[Region, ...]:
    return tuple(Region(**r) for r in items)


def _plain(regions) -> list[dict]:
    return [asdict(r) for r in regions]
