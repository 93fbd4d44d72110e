"""How big a seam is (studio.seams.seam_jump, wrap_jump), on signals built to have a known jump at a
known sample, and on seamless ones."""
from __future__ import annotations

import numpy as np
import pytest

from studio import seams
from studio.api import SAMPLE_RATE

SR = SAMPLE_RATE
AT = 3 * SR + 1234  # the seam: not on any frame or block boundary of a grid starting at 0


def noise(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, int(seconds * SR)))


def filtered(x: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """x band-limited to [low_hz, high_hz) through the FFT, scaled to RMS 0.1."""
    spec = np.fft.rfft(x, axis=1)
    freqs = np.fft.rfftfreq(x.shape[1], 1 / SR)
    spec[:, (freqs < low_hz) | (freqs >= high_hz)] = 0
    y = np.fft.irfft(spec, n=x.shape[1], axis=1)
    return 0.1 * y / np.sqrt(np.mean(y ** 2))


def test_a_step_in_level_is_its_size_in_db_and_stands_out_from_the_clip():
    x = 0.05 * noise(6, 0)
    x[:, AT:] *= 4  # +12.04 dB
    at_step = seams.seam_jump(x, AT)
    assert at_step.loudness_db == pytest.approx(20 * np.log10(4), abs=0.5)
    assert at_step.spectral > 2.5 and at_step.typical_db < 0.5
    away = seams.seam_jump(x, AT - SR)
    assert abs(away.loudness_db) < 0.5 and 0.7 < away.spectral < 1.4


def test_a_switch_of_timbre_at_the_same_level_is_a_spectral_jump_not_a_loud_one():
    dark, bright = filtered(noise(6, 1), 40, 800), filtered(noise(6, 2), 3000, 16000)
    x = np.concatenate([dark[:, :AT], bright[:, AT:]], axis=1)
    m = seams.seam_jump(x, AT)
    assert m.spectral > 8 and abs(m.loudness_db) < 1.0
    assert seams.seam_jump(x, AT + SR).spectral < 1.4


def test_a_sine_of_whole_periods_loops_seamlessly_and_a_broken_one_clicks():
    t = np.arange(2 * SR) / SR
    whole = np.stack([0.3 * np.sin(2 * np.pi * 441.0 * t)] * 2)     # 882 periods in the loop
    broken = np.stack([0.3 * np.sin(2 * np.pi * 445.3 * t)] * 2)    # 890.6: the wrap jumps in phase
    seamless, click = seams.wrap_jump(whole), seams.wrap_jump(broken)
    assert 0.8 < seamless.spectral < 1.25 and abs(seamless.loudness_db) < 0.05
    assert click.spectral > 10 and abs(click.loudness_db) < 0.05
    assert seamless.text() == f"seam {seamless.spectral:.1f}× typical, {seamless.loudness_db:+.1f} dB " \
                              f"(typical ±{seamless.typical_db:.1f} dB)"


def test_stationary_noise_looped_is_as_typical_at_its_wrap_as_anywhere():
    m = seams.wrap_jump(0.1 * noise(2, 5))
    assert 0.7 < m.spectral < 1.4 and abs(m.loudness_db) < 0.5


def test_silence_has_no_seam_and_a_point_too_near_an_end_is_one_sentence():
    m = seams.seam_jump(np.zeros((2, SR)), SR // 2)
    assert m.spectral == pytest.approx(1.0) and m.loudness_db == 0.0
    with pytest.raises(ValueError, match=r"A seam at 0.01 s cannot be measured: it needs 46 ms of audio on each side"):
        seams.seam_jump(np.zeros((2, SR)), 500)
