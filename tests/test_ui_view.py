import numpy as np

from studio.ui_view import N_MELS, _power_stft, spectrogram_rgb


def test_power_stft_puts_a_sine_in_its_bin():
    sr, n_fft, hop, k = 44100, 2048, 512, 93
    x = np.sin(2 * np.pi * k * sr / n_fft * np.arange(sr) / sr).astype(np.float32)
    S = _power_stft(x, n_fft, hop)
    assert S.shape == (n_fft // 2 + 1, 1 + len(x) // hop)
    assert np.all(S[:, 5:-5].argmax(axis=0) == k)
    # Parseval on an interior frame: the window's energy times the sine's mean power
    frame = S[:, 40]
    window = np.hanning(n_fft + 1)[:-1]
    energy = (frame[0] + 2 * frame[1:-1].sum() + frame[-1]) / n_fft
    assert abs(energy - (window ** 2).sum() * 0.5) / energy < 1e-3


def test_spectrogram_image_shape_and_range():
    audio = np.random.default_rng(0).standard_normal((2, 44100)).astype(np.float32) * 0.1
    img = spectrogram_rgb(audio)
    assert img.shape[0] == N_MELS and img.shape[2] == 3 and img.dtype == np.uint8
    assert img.max() > 100
