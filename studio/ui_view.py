"""What the painter draws for a track: per-pixel-column peaks and a mel spectrogram image.

Both are files next to the audio in the session folder, made once per audio file:
    views/<stem>.json  {"duration": s, "peaks": [[min, max, ...] per channel], "spectrogram": file}
    views/<stem>.png   mel spectrogram in dB (magma), low frequencies at the bottom
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from studio.api import SAMPLE_RATE
from studio.audio_io import atomic_write, read_track, write_json

PEAK_COLUMNS = 2400     # enough for a full-width painter zoomed in 2x on a wide screen
MAX_SPEC_COLUMNS = 3000  # PNG width cap; the browser stretches it onto the time axis
N_FFT = 2048
N_MELS = 160


def peaks(audio: np.ndarray, columns: int = PEAK_COLUMNS) -> list[list[float]]:
    """Per channel, interleaved [min0, max0, min1, max1, ...] over `columns` equal time slices."""
    n = audio.shape[1]
    columns = max(1, min(columns, n))
    edges = np.linspace(0, n, columns + 1).astype(int)
    out = []
    for ch in audio:
        lo = np.minimum.reduceat(ch, edges[:-1])
        hi = np.maximum.reduceat(ch, edges[:-1])
        out.append(np.round(np.stack([lo, hi], 1).reshape(-1), 4).tolist())
    return out


def _power_stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT|^2 (1 + n_fft/2, frames), centred frames, periodic Hann window. Plain numpy (as
    is the dB scale below): librosa.stft's and power_to_db's numba kernels take ~25 s to
    compile on a fresh install, which the first clip a musician loads would wait for."""
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, n_fft // 2), n_fft)[::hop]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    return (np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2).T


def spectrogram_rgb(audio: np.ndarray) -> np.ndarray:
    """(N_MELS, T, 3) uint8 image of the mono mix's mel spectrogram in dB (top = high frequency)."""
    import librosa
    from matplotlib import colormaps
    mono = audio.mean(axis=0)
    hop = max(256, int(np.ceil(len(mono) / MAX_SPEC_COLUMNS)))
    fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmax=SAMPLE_RATE / 2)
    mel = fb @ _power_stft(mono, N_FFT, hop)
    db = 10 * np.log10(np.maximum(mel, 1e-10) / max(float(mel.max()), 1e-10))  # dB re the peak
    db = np.maximum(db, -80.0)
    norm = (db + 80.0) / 80.0
    rgb = colormaps["magma"](norm[::-1])[..., :3]
    return (rgb * 255).astype(np.uint8)


def ensure_view(audio_file: Path) -> Path:
    """Path of the view JSON for a studio audio file, making it (and its PNG) if absent."""
    views = audio_file.parent.parent / "views"
    stem = f"{audio_file.parent.name}-{audio_file.stem}"
    json_path = views / f"{stem}.json"
    if json_path.exists():
        return json_path
    from PIL import Image
    audio = read_track(audio_file)
    png = views / f"{stem}.png"
    image = Image.fromarray(spectrogram_rgb(audio))
    atomic_write(png, lambda tmp: image.save(tmp, format="PNG"))
    write_json(json_path, {"duration": audio.shape[1] / SAMPLE_RATE, "peaks": peaks(audio),
                           "spectrogram": png.name})
    return json_path


def read_view(path: Path) -> dict:
    return json.loads(Path(path).read_text())
