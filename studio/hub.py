"""Adapters a visitor names on the Hugging Face Hub: read from the text alone, sized on the Hub
before anything is downloaded, fetched without the host's token, kept in a bounded cache.

A visitor of a shared studio is a stranger, so what they type is never a path on the server:
`parse` accepts only ``owner/repo/path/in/repo.safetensors`` (optionally ``@revision``) and refuses
anything else with one sentence that does not depend on what the server's disk holds (it makes no
filesystem call). `HubFiles.fetch` asks the Hub for the file's size and commit (a HEAD request),
refuses a file over `HUB_FILE_CAP` before downloading a byte, downloads the file pinned to that
commit with ``token=False`` (the host's ``HF_TOKEN`` stays home unless the host passes
``--hub-token-for-visitors``), and keeps at most `HUB_CACHE_BYTES` of such files, least recently
used evicted. The engine then gets a local file, as for an upload; the command line keeps
accepting local paths and hub paths through models.loading.resolve_file (its user owns the machine).
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from studio.audio_io import TEMP_PREFIX, disk_full

HUB_FILE_CAP = 256 * 2**20     # bytes: the largest adapter a visitor may name on the Hub
HUB_CACHE_BYTES = 2 * 2**30    # bytes of visitors' Hub adapters kept on disk (at least the newest one)

NOT_A_HUB_FILE = ("The Hugging Face field takes a file on the Hub as owner/repo/file.safetensors (optionally "
                  "ending in @revision); to use an adapter from your computer, drop it on the LoRA file box.")

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}"  # a Hub owner or repo name
_HUB_FILE = re.compile(rf"^(?P<repo>{_NAME}/{_NAME})/(?P<path>(?:[A-Za-z0-9_][A-Za-z0-9_. -]*/)*"
                       rf"[A-Za-z0-9_][A-Za-z0-9_. -]*\.safetensors)(?:@(?P<revision>[A-Za-z0-9_./-]{{1,100}}))?$")


class HubError(ValueError):
    """A Hub adapter the studio will not use; str(e) is one sentence naming the fix."""


@dataclass(frozen=True)
class HubFile:
    repo_id: str              # owner/repo
    path: str                 # inside the repo, ends in .safetensors
    revision: str | None = None

    def __str__(self) -> str:
        return f"{self.repo_id}/{self.path}" + (f"@{self.revision}" if self.revision else "")


def parse(text: str) -> HubFile:
    """``owner/repo/path.safetensors[@revision]`` as a HubFile; HubError (always the same
    sentence) for anything else: an absolute or relative path, ``~``, ``..``, a backslash, a drive,
    a URL, another suffix. Pure string work: whether such a file exists anywhere is never asked."""
    m = _HUB_FILE.match(text.strip())
    if m is None or ".." in text:
        raise HubError(NOT_A_HUB_FILE)
    return HubFile(m["repo"], m["path"], m["revision"])


class HubFiles:
    """Visitors' Hub adapters, fetched into ``folder`` (``folder/<hash>/<file name>``, the hash of
    repo, path and commit) and kept while they fit in ``keep_bytes``.

    ``token``: False (the default) sends no token, so only public files can be fetched; None uses
    the host's login (HF_TOKEN), for a host who trusts every visitor with it."""

    def __init__(self, folder: str | Path, token: bool | str | None = False, cap: int = HUB_FILE_CAP,
                 keep_bytes: int = HUB_CACHE_BYTES):
        self.folder, self.token, self.cap, self.keep_bytes = Path(folder), token, cap, keep_bytes
        for stale in self.folder.glob(f"{TEMP_PREFIX}*"):  # downloads a killed process left
            shutil.rmtree(stale, ignore_errors=True)

    def fetch(self, ref: HubFile) -> Path:
        """The local copy of ``ref``: its size is read on the Hub first (HubError over the cap,
        nothing downloaded), then it is downloaded at the commit that size belongs to."""
        size, commit = self._size(ref)
        if size is None or size > self.cap:
            said = "does not say its size" if size is None else f"is {math.ceil(size / 2**20)} MB"  # 256.1 MB: 257
            raise HubError(f"{ref} {said}; the studio fetches adapters of up to {self.cap / 2**20:.0f} MB "
                           "from the Hub: pick a smaller adapter, or upload it from your computer.")
        key = hashlib.sha256(f"{ref.repo_id}/{ref.path}@{commit}".encode()).hexdigest()[:16]
        file = self.folder / key / Path(ref.path).name
        if not file.is_file():
            self._download(ref, commit, size, file)
        _used(file)
        self._evict(keep=file)
        return file

    def _size(self, ref: HubFile) -> tuple[int | None, str]:
        """(bytes, commit) of ``ref`` on the Hub: one HEAD request, nothing downloaded."""
        import huggingface_hub
        try:
            meta = huggingface_hub.get_hf_file_metadata(
                huggingface_hub.hf_hub_url(ref.repo_id, ref.path, revision=ref.revision), token=self.token)
        except Exception as e:  # noqa: BLE001 - every failure becomes one sentence (_hub_sentence)
            raise HubError(_hub_sentence(ref, e)) from None
        return meta.size, meta.commit_hash or ref.revision or "main"

    def _download(self, ref: HubFile, commit: str, size: int, file: Path) -> None:
        """Download ``ref`` at ``commit`` into a temporary folder, check its size, move it to ``file``."""
        import huggingface_hub
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=TEMP_PREFIX))
        try:
            got = Path(huggingface_hub.hf_hub_download(ref.repo_id, ref.path, revision=commit, token=self.token,
                                                       local_dir=staging))
            if got.stat().st_size != size:
                raise HubError(f"{ref} changed size while it was fetched; try again.")
            file.parent.mkdir(exist_ok=True)
            os.replace(got, file)
        except HubError:
            raise
        except Exception as e:  # noqa: BLE001 - one sentence, never the server's folders
            raise HubError(_hub_sentence(ref, e)) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _evict(self, keep: Path) -> None:
        """Delete the least recently used files until the rest fit in keep_bytes (``keep`` stays)."""
        files = sorted(self.folder.glob("*/*.safetensors"), key=lambda p: p.stat().st_atime, reverse=True)
        total = 0
        for p in files:
            total += p.stat().st_size
            if total > self.keep_bytes and p != keep:
                p.unlink(missing_ok=True)
                shutil.rmtree(p.parent, ignore_errors=True)


def _used(file: Path) -> None:
    """Mark ``file`` as used now (its access time orders the eviction); its modification time is
    kept, so the engine, which knows a file by path, size and mtime, does not read it again."""
    os.utime(file, (time.time(), file.stat().st_mtime))


def _hub_sentence(ref: HubFile, e: Exception) -> str:
    """One sentence for a failed Hub request; it names the visitor's own path and nothing of the server's."""
    from huggingface_hub import errors
    if disk_full(e):
        return f"The server's disk is full, so {ref} could not be fetched; try again later."
    if isinstance(e, errors.RevisionNotFoundError):
        return f"{ref.repo_id} has no revision {ref.revision!r} on Hugging Face: check the name after the @."
    if isinstance(e, errors.RepositoryNotFoundError):  # gated repos too: no token is sent for visitors
        return (f"{ref.repo_id} is not a public repository on Hugging Face (it does not exist, is private or is "
                "gated): the studio fetches visitors' adapters from public repositories only.")
    if isinstance(e, errors.EntryNotFoundError):
        return f"{ref.repo_id} has no file {ref.path}: check the path on its Hugging Face page."
    if isinstance(e, errors.OfflineModeIsEnabled) or isinstance(e, errors.LocalEntryNotFoundError):
        return f"{ref} cannot be fetched: this studio does not reach Hugging Face; upload the file instead."
    return f"{ref} could not be fetched from Hugging Face ({type(e).__name__}); try again, or upload the file."
