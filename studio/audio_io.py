"""Reading any audio file into the studio's format, and writing files that are never half-written.

The studio's format is float32 (2, N) at 44.1 kHz. `load_audio` says in a note what it converted
and refuses, with a sentence a musician understands, what it cannot use.
"""
from __future__ import annotations

import errno
import io
import json
import os
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from studio.api import SAMPLE_RATE

SILENCE_PEAK = 10 ** (-90 / 20)  # below -90 dBFS everywhere counts as silence
FORMATS = {  # export name -> (soundfile format, subtype, extension)
    "wav24": ("WAV", "PCM_24", ".wav"),
    "wav32f": ("WAV", "FLOAT", ".wav"),
    "flac": ("FLAC", "PCM_24", ".flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", ".mp3"),  # lossy, for sharing; libsndfile >= 1.1 writes it
}


class AudioError(ValueError):
    """A file the studio cannot use; str(e) says why and what to do."""


@dataclass(frozen=True)
class Limits:
    """What an upload may be. Peak memory while loading stays below about
    ``max_decoded_bytes`` * 2 / channels (only the front pair is kept, read in blocks) plus the
    44.1 kHz stereo result (``max_seconds`` * 44100 * 2 * 4 bytes: 212 MB for 600 s)."""

    max_bytes: int = 200 * 2**20  # the file itself
    max_seconds: float = 600.0
    max_decoded_bytes: int = 2**30  # frames x channels x 4 (float32) at the file's own rate


BLOCK_FRAMES = 2**16  # frames decoded at a time: a few MB even for 8 channels


def load_audio(path: str | os.PathLike, limits: Limits = Limits()) -> tuple[np.ndarray, str]:
    """(audio (2, N) float32 at 44.1 kHz, note of what was converted; '' if nothing)."""
    path = Path(path)
    name = path.name
    if path.is_dir():
        raise AudioError(f"“{path}” is a folder: give an audio file (WAV, FLAC, OGG or MP3).")
    if not path.is_file():
        raise AudioError(f"“{name}” was not found.")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise AudioError(f"“{name}” is {size / 2**20:.0f} MB; the studio takes files up to "
                         f"{limits.max_bytes / 2**20:.0f} MB. Trim or compress it first.")
    if size == 0:
        raise AudioError(f"“{name}” is empty (0 bytes).")
    data, sr, channels = _read(path, limits)
    if data.shape[0] == 0:
        raise AudioError(f"“{name}” contains no audio.")
    notes = []
    data, note = _to_stereo(data.T, channels)
    if note:
        notes.append(note)
    if sr != SAMPLE_RATE:
        # soxr directly (librosa's default resampler): librosa.resample's first call compiles
        # numba kernels for ~25 s on a fresh install, which an upload would wait for.
        import soxr
        data = soxr.resample(np.ascontiguousarray(data.T), sr, SAMPLE_RATE, quality="HQ").T
        notes.append(f"resampled {sr} Hz → {SAMPLE_RATE} Hz")
    audio = np.ascontiguousarray(data, dtype=np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if not np.isfinite(peak):
        raise AudioError(f"“{name}” contains invalid samples (NaN or infinity).")
    if peak < SILENCE_PEAK:
        raise AudioError(f"“{name}” is silent (peak below -90 dBFS); there is nothing to edit. "
                         "Generate a clip from a prompt instead.")
    return audio, "; ".join(notes)


def _read(path: Path, limits: Limits) -> tuple[np.ndarray, int, int]:
    """(frames, min(channels, 2)) float32, the sample rate and the file's channel count;
    soundfile (sizes checked from the header, then decoded in blocks), librosa for the rest."""
    try:
        f = sf.SoundFile(str(path))
    except Exception:
        return _read_with_librosa(path, limits)
    with f:
        _check_header(path, f, limits)
        return _read_blocks(path.name, f), f.samplerate, f.channels


def _check_header(path: Path, f: sf.SoundFile, limits: Limits) -> None:
    """Refuse, before decoding, a file too long, one that would decode too large, or a WAV cut short."""
    name = path.name
    _check_duration(name, f.frames / f.samplerate, limits)
    decoded = f.frames * f.channels * 4
    if decoded > limits.max_decoded_bytes:
        raise AudioError(f"“{name}” would decode to {decoded / 2**20:,.0f} MB ({f.frames / f.samplerate:.0f} s × "
                         f"{f.channels} channels at {f.samplerate / 1000:g} kHz); the studio decodes up to "
                         f"{limits.max_decoded_bytes / 2**20:,.0f} MB. Convert it to stereo at 44.1 or 48 kHz first.")
    cut = _wav_shortfall(path) if f.format in ("WAV", "WAVEX") else None
    if cut:
        promised, present = cut
        raise AudioError(f"“{name}” is cut short: its header promises {promised:,} bytes of audio but the file holds "
                         f"{present:,} (an interrupted copy or download?). Use the complete file.")


def _read_blocks(name: str, f: sf.SoundFile) -> np.ndarray:
    """The front pair of ``f`` decoded BLOCK_FRAMES at a time: the other channels never fill memory."""
    out = np.empty((f.frames, min(f.channels, 2)), dtype=np.float32)
    done = 0
    try:
        while done < f.frames:
            block = f.read(min(BLOCK_FRAMES, f.frames - done), dtype="float32", always_2d=True)
            if len(block) == 0:
                break
            out[done:done + len(block)] = block[:, :2]
            done += len(block)
    except Exception:  # libsndfile's "decoder lost sync" and the like
        raise AudioError(f"“{name}” is damaged: decoding failed at {done / f.samplerate:.1f} s. "
                         "Use an undamaged copy.") from None
    if done < f.frames and f.format != "MP3":  # MP3 headers only estimate their length
        raise AudioError(f"“{name}” is cut short: it holds {done / f.samplerate:.1f} s of the "
                         f"{f.frames / f.samplerate:.1f} s its header promises. Use the complete file.")
    return out[:done]


def _wav_shortfall(path: Path) -> tuple[int, int] | None:
    """(data bytes the RIFF header promises, bytes present) when a WAV's data chunk is cut short.

    libsndfile quietly shortens such a file to what is there, so a cut copy would load "as is".
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(12)[8:12] != b"WAVE":
            return None
        while (head := f.read(8)) and len(head) == 8:
            length = struct.unpack("<I", head[4:])[0]
            if head[:4] == b"data":
                present = size - f.tell()
                # 0 and 0xFFFFFFFF: a streaming writer that never knew the length
                return (length, present) if present < length < 0xFFFFFFFF else None
            f.seek(length + (length & 1), 1)  # chunks are padded to an even length
    return None


def _read_with_librosa(path: Path, limits: Limits) -> tuple[np.ndarray, int, int]:
    """Formats libsndfile cannot open (through audioread / ffmpeg); all channels are decoded."""
    try:
        import librosa
        with warnings.catch_warnings():  # librosa warns that it falls back to audioread: we know
            warnings.simplefilter("ignore")
            _check_duration(path.name, librosa.get_duration(path=str(path)), limits)
            data, sr = librosa.load(str(path), sr=None, mono=False)
    except AudioError:
        raise
    except Exception:
        raise AudioError(f"“{path.name}” could not be read as audio; the studio opens WAV, FLAC, "
                         "OGG and MP3 files.") from None
    data = np.atleast_2d(data)
    return np.ascontiguousarray(data[:2].T, dtype=np.float32), int(sr), data.shape[0]


def _check_duration(name: str, seconds: float, limits: Limits) -> None:
    if seconds > limits.max_seconds:
        raise AudioError(f"“{name}” is {seconds:.0f} s long; the studio takes clips up to "
                         f"{limits.max_seconds:.0f} s. Trim it first.")


def _to_stereo(data: np.ndarray, channels: int) -> tuple[np.ndarray, str]:
    """(min(channels, 2), N) -> (2, N): mono is doubled; of more than two the front pair was kept."""
    if channels == 1:
        return np.concatenate([data, data]), "mono → stereo"
    if channels == 2:
        return data, ""
    return data[:2], f"kept the first 2 of {channels} channels"


TEMP_PREFIX = ".tmp-"  # every half-written file starts so; studio.session removes leftovers of a crash
# A write that failed because the disk (or the user's quota on it) is full: no space, not a bad path.
DISK_FULL = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)


NEARLY_FULL_BYTES = 2**20  # a write that failed with less than this free failed for want of space


def disk_full(e: BaseException) -> bool:
    """Whether ``e`` is a write refused for want of space (ENOSPC, or EDQUOT where the OS has it)."""
    return isinstance(e, OSError) and e.errno in DISK_FULL


def _nearly_full(folder: Path) -> bool:
    """Whether the disk holding ``folder`` has less than NEARLY_FULL_BYTES left for this process
    (root may use the blocks reserved for it)."""
    st = os.statvfs(folder)
    free = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return free * st.f_frsize < NEARLY_FULL_BYTES


def atomic_write(path: str | os.PathLike, write, exclusive: bool = False) -> Path:
    """Call write(tmp_path) then move tmp over path, so readers see the old file or the new one.

    exclusive: never replace an existing file; FileExistsError instead (the new file is linked
    into place, which fails atomically when the name is taken)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        try:
            write(tmp)
        except Exception as e:
            # libsndfile reports a full disk as "System error." (a RuntimeError): say what it is
            if not disk_full(e) and _nearly_full(path.parent):
                raise OSError(errno.ENOSPC, "No space left on device") from e
            raise
        if exclusive:
            _link_new(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _link_new(tmp: str, path: Path) -> None:
    """Give tmp the name path unless path exists (FileExistsError)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: reserve the name, then replace it
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.replace(tmp, path)


def check_writable(fmt: str) -> None:
    """AudioError unless this system's libsndfile writes ``fmt`` (MP3 needs libsndfile >= 1.1)."""
    kind = FORMATS[fmt][0]
    if kind not in sf.available_formats():
        raise AudioError(f"This system's sound library (libsndfile {sf.__libsndfile_version__}) cannot write "
                         f"{kind}: export as WAV or FLAC, or update libsndfile to 1.1 or newer.")


def write_audio(path: str | os.PathLike, audio: np.ndarray, fmt: str = "wav32f", exclusive: bool = False) -> Path:
    """Write (2, N) float32 audio atomically as 'wav24', 'wav32f', 'flac' or 'mp3' (see atomic_write)."""
    frames, kind, subtype = _encodable(audio, fmt)
    return atomic_write(path, lambda tmp: sf.write(tmp, frames, SAMPLE_RATE, subtype=subtype,
                                                   format=kind), exclusive)


def wav_bytes(audio: np.ndarray) -> bytes:
    """(2, N) float32 audio as the bytes of a 32-bit float WAV (a short clip handed to a player)."""
    frames, kind, subtype = _encodable(audio, "wav32f")
    buffer = io.BytesIO()
    sf.write(buffer, frames, SAMPLE_RATE, subtype=subtype, format=kind)
    return buffer.getvalue()


def _encodable(audio: np.ndarray, fmt: str) -> tuple[np.ndarray, str, str]:
    """(frames (N, 2) float32, soundfile format, subtype) of (2, N) audio, checked for ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {sorted(FORMATS)}, got {fmt!r}")
    if audio.ndim != 2 or audio.shape[0] != 2:
        raise ValueError(f"audio must be (2, N), got {audio.shape}")
    if not np.isfinite(audio).all():  # 24-bit would hold a full-scale constant, FLAC would fail
        raise AudioError("The audio holds NaN or infinite samples (the model produced invalid output), so it "
                         "was not written: try another seed, or check the model's weights.")
    check_writable(fmt)
    kind, subtype, _ = FORMATS[fmt]
    return np.ascontiguousarray(audio.T, dtype=np.float32), kind, subtype


def write_json(path: str | os.PathLike, data) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))


def export(path: str | os.PathLike, audio: np.ndarray, fmt: str, sidecar: dict) -> tuple[Path, Path]:
    """Audio file plus `<name>.json` beside it with the prompt, seed, model and regions."""
    audio_path = write_audio(path, audio, fmt)
    return audio_path, write_json(audio_path.with_suffix(".json"), sidecar)


def read_track(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> np.ndarray:
    """A file the studio wrote (44.1 kHz stereo) as (2, N) float32; with ``start``/``stop``
    (samples) only those frames are read (fewer where the file ends first)."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True, start=start, stop=stop)
    if sr != SAMPLE_RATE or data.shape[1] != 2:
        raise AudioError(f"{Path(path).name} is not a 44.1 kHz stereo studio file ({sr} Hz, {data.shape[1]} ch).")
    return np.ascontiguousarray(data.T)
