"""Synthesise the studio's demo clips (no third-party audio): `python assets/make_demo_clips.py`.

Writes 44.1 kHz stereo 16-bit WAVs next to this script; every clip is a pure function of its seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44100


def env(n: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / SR
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-t / decay)


def drums(bpm: float = 96, bars: int = 4, seed: int = 1) -> np.ndarray:
    """Kick on 1 and 3, snare on 2 and 4, hats on eighths, lightly swung."""
    rng = np.random.default_rng(seed)
    beat = 60 / bpm
    out = np.zeros((2, int(SR * beat * 4 * bars)))
    for k in range(4 * bars):
        at = int(k * beat * SR)
        kick_n = int(0.35 * SR)
        t = np.arange(kick_n) / SR
        kick = np.sin(2 * np.pi * (45 + 90 * np.exp(-t * 30)) * t) * env(kick_n, 0.002, 0.12)
        if k % 2 == 0:
            _add(out, at, 0.9 * kick, 0.0)
        else:
            snare_n = int(0.25 * SR)
            snare = rng.standard_normal(snare_n) * env(snare_n, 0.001, 0.06)
            snare += 0.5 * np.sin(2 * np.pi * 190 * np.arange(snare_n) / SR) * env(snare_n, 0.001, 0.05)
            _add(out, at, 0.45 * snare, 0.1)
        for half in (0, 1):
            hat_n = int(0.06 * SR)
            hat = np.diff(rng.standard_normal(hat_n + 1)) * env(hat_n, 0.0005, 0.015)
            _add(out, at + int((half * 0.55) * beat * SR), 0.12 * hat, -0.4 + 0.8 * half)
    return out


def pads(seed: int = 2, seconds: float = 10.0) -> np.ndarray:
    """A slow i–VI–III–VII progression of detuned saw-ish pads."""
    rng = np.random.default_rng(seed)
    n = int(SR * seconds)
    t = np.arange(n) / SR
    out = np.zeros((2, n))
    chords = [(57, 60, 64), (53, 57, 60), (60, 64, 67), (55, 59, 62)]
    seg = n // len(chords)
    for i, chord in enumerate(chords):
        sl = slice(i * seg, (i + 1) * seg)
        for note in chord:
            f = 440 * 2 ** ((note - 69) / 12)
            for side, detune in ((0, -0.003), (1, 0.003)):
                ph = rng.uniform(0, 2 * np.pi)
                wave = sum(np.sin(2 * np.pi * f * (1 + detune) * h * t[sl] + ph) / h for h in range(1, 6))
                out[side, sl] += 0.05 * wave * np.hanning(seg)
    return out


def arp(seed: int = 3, bpm: float = 120, bars: int = 4) -> np.ndarray:
    """A plucked minor-pentatonic arpeggio in sixteenths, panned left-right."""
    rng = np.random.default_rng(seed)
    step = 60 / bpm / 4
    notes = [57, 60, 62, 64, 67, 69, 72]
    out = np.zeros((2, int(SR * step * 16 * bars) + SR))
    for k in range(16 * bars):
        f = 440 * 2 ** ((notes[rng.integers(len(notes))] - 69) / 12)
        m = int(0.4 * SR)
        t = np.arange(m) / SR
        pluck = (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)) * env(m, 0.002, 0.09)
        _add(out, int(k * step * SR), 0.3 * pluck, np.sin(k * 0.7) * 0.7)
    return out


def _add(out: np.ndarray, at: int, x: np.ndarray, pan: float) -> None:
    n = min(len(x), out.shape[1] - at)
    gains = (np.cos((pan + 1) * np.pi / 4), np.sin((pan + 1) * np.pi / 4))
    for ch in (0, 1):
        out[ch, at:at + n] += gains[ch] * x[:n]


def main() -> None:
    here = Path(__file__).parent
    for name, audio in (("drums-96bpm.wav", drums()), ("pads-am.wav", pads()), ("arp-120bpm.wav", arp())):
        audio = 0.89 * audio / np.abs(audio).max()
        sf.write(here / name, audio.T.astype(np.float32), SR, subtype="PCM_16")
        print(f"{name}: {audio.shape[1] / SR:.1f} s")


if __name__ == "__main__":
    main()
