"""studio.audio_io: any file to 44.1 kHz stereo with a note, clear refusals, atomic exact writes."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from studio import audio_io
from studio.audio_io import AudioError, Limits, load_audio

SR = 44100


def tone(n, channels, sr=SR):
    t = np.arange(n) / sr
    return np.stack([0.3 * np.sin(2 * np.pi * 440 * (1 + 0.1 * c) * t) for c in range(channels)], 1)


def test_stereo_44k_is_used_as_is(tmp_path):
    x = tone(SR, 2).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, SR, subtype="FLOAT")
    audio, note = load_audio(tmp_path / "a.wav")
    assert note == "" and audio.dtype == np.float32 and audio.shape == (2, SR)
    assert np.array_equal(audio, x.T)


def test_mono_is_doubled_and_rate_converted_with_a_note(tmp_path):
    sf.write(tmp_path / "m.flac", tone(22050, 1, 22050), 22050)
    audio, note = load_audio(tmp_path / "m.flac")
    assert audio.shape == (2, SR) and np.array_equal(audio[0], audio[1])
    assert note == "mono → stereo; resampled 22050 Hz → 44100 Hz"


def test_more_channels_keep_the_front_pair(tmp_path):
    x = tone(1000, 6)
    sf.write(tmp_path / "s.wav", x, SR, subtype="FLOAT")
    audio, note = load_audio(tmp_path / "s.wav")
    assert note == "kept the first 2 of 6 channels"
    np.testing.assert_array_equal(audio, x[:, :2].T.astype(np.float32))


@pytest.mark.parametrize("name, fmt, subtype", [("o.ogg", "OGG", "VORBIS"), ("m.mp3", "MP3", "MPEG_LAYER_III")])
def test_compressed_formats_read(tmp_path, name, fmt, subtype):
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}")
    sf.write(tmp_path / name, tone(SR, 2), SR, format=fmt, subtype=subtype)
    audio, _ = load_audio(tmp_path / name)
    assert audio.shape[0] == 2 and abs(audio.shape[1] - SR) < 2048 and np.abs(audio).max() > 0.1


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"RIFF nonsense" * 50), "could not be read as audio"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: sf.write(p, np.zeros((0, 2)), SR), "contains no audio"),
    (lambda p: sf.write(p, np.zeros((SR, 2)), SR), "is silent"),
    (lambda p: sf.write(p, np.full((10, 2), np.nan), SR, subtype="FLOAT"), "invalid samples"),
])
def test_unusable_files_are_refused(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message):
        load_audio(path)


def test_limits_on_size_and_duration(tmp_path):
    sf.write(tmp_path / "big.wav", tone(7 * SR, 2), SR, subtype="PCM_16")
    with pytest.raises(AudioError, match="up to 1 MB"):
        load_audio(tmp_path / "big.wav", Limits(max_bytes=2**20))
    with pytest.raises(AudioError, match="is 7 s long; the studio takes clips up to 3 s"):
        load_audio(tmp_path / "big.wav", Limits(max_seconds=3))
    with pytest.raises(AudioError, match="was not found"):
        load_audio(tmp_path / "nope.wav")


@pytest.mark.parametrize("fmt, exact", [("wav32f", True), ("wav24", False), ("flac", False)])
def test_write_roundtrip(tmp_path, fmt, exact):
    x = tone(SR // 2, 2).T.astype(np.float32)
    path = audio_io.write_audio(tmp_path / f"x{audio_io.FORMATS[fmt][2]}", x, fmt)
    back = audio_io.read_track(path)
    if exact:
        assert np.array_equal(back, x)
    else:
        np.testing.assert_allclose(back, x, atol=2.0 ** -22)
    assert sf.info(str(path)).subtype == audio_io.FORMATS[fmt][1]


def test_24_bit_keeps_16_bit_sources_exact(tmp_path):
    x = (np.random.default_rng(0).integers(-32768, 32767, (2, 1000)) / 32768).astype(np.float32)
    back = audio_io.read_track(audio_io.write_audio(tmp_path / "x.wav", x, "wav24"))
    assert np.array_equal(back, x)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "keep.json"
    audio_io.write_json(path, {"a": 1})

    def broken(tmp):
        open(tmp, "w").write("half")
        raise OSError("disk full")
    with pytest.raises(OSError):
        audio_io.atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["keep.json"]


def test_export_writes_a_sidecar(tmp_path):
    x = tone(100, 2).T.astype(np.float32)
    audio_path, side = audio_io.export(tmp_path / "e.flac", x, "flac", {"prompt": "p", "seed": 3})
    assert audio_path.exists() and json.loads(side.read_text()) == {"prompt": "p", "seed": 3}
    assert side.name == "e.json"


def test_write_refuses_bad_shapes_and_formats(tmp_path):
    with pytest.raises(ValueError, match="audio must be"):
        audio_io.write_audio(tmp_path / "x.wav", np.zeros((1, 10), np.float32))
    with pytest.raises(ValueError, match="fmt must be"):
        audio_io.write_audio(tmp_path / "x.wav", np.zeros((2, 10), np.float32), "ogg")


def test_resampling_keeps_pitch_and_length(tmp_path):
    sf.write(tmp_path / "h.wav", tone(48000, 2, 48000), 48000, subtype="FLOAT")  # 1 s of 440 Hz
    audio, note = load_audio(tmp_path / "h.wav")
    assert note == "resampled 48000 Hz → 44100 Hz" and audio.shape == (2, SR)
    spectrum = np.abs(np.fft.rfft(audio[0]))
    assert abs(np.argmax(spectrum) * SR / audio.shape[1] - 440) <= 1


def test_mp3_export_and_a_clear_sentence_where_libsndfile_cannot(tmp_path, monkeypatch):
    from studio import audio_io
    audio = (0.3 * np.sin(np.linspace(0, 2000, 44100))[None].repeat(2, 0)).astype(np.float32)
    path, side = audio_io.export(tmp_path / "take.mp3", audio, "mp3", {"seed": 1})
    back, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == 44100 and back.shape[1] == 2 and abs(back.shape[0] - 44100) < 4096  # encoder padding
    assert json.loads(side.read_text()) == {"seed": 1}
    monkeypatch.setattr(audio_io.sf, "available_formats", lambda: {"WAV": "", "FLAC": ""})
    with pytest.raises(audio_io.AudioError, match="cannot write MP3: export as WAV or FLAC"):
        audio_io.write_audio(tmp_path / "x.mp3", audio, "mp3")
    assert not (tmp_path / "x.mp3").exists()


# --------------------------------------------------------------------------- hostile and damaged files


def test_a_folder_is_not_an_audio_file(tmp_path):
    with pytest.raises(AudioError, match=r"is a folder: give an audio file \(WAV, FLAC, OGG or MP3\)\.$"):
        load_audio(tmp_path)


def test_a_truncated_wav_is_refused_not_loaded_as_is(tmp_path):
    """libsndfile shortens a WAV whose data chunk runs past the end of the file to what is there."""
    sf.write(tmp_path / "full.wav", tone(2 * SR, 2), SR, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "full.wav").read_bytes()[:1044])
    assert sf.info(str(tmp_path / "cut.wav")).frames == 250  # what it used to load, with no word
    with pytest.raises(AudioError, match=r"“cut.wav” is cut short: its header promises 352,800 bytes of audio "
                                         r"but the file holds 1,000 .*Use the complete file\.$"):
        load_audio(tmp_path / "cut.wav")


def test_a_truncated_flac_is_refused(tmp_path):
    sf.write(tmp_path / "full.flac", tone(2 * SR, 2), SR)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 3])
    with pytest.raises(AudioError, match=r"“cut.flac” is (damaged|cut short)"):
        load_audio(tmp_path / "cut.flac")


@pytest.mark.parametrize("channels, rate", [(3, 8000), (5, 96000), (1, 11025), (8, 192000)])
def test_odd_rates_and_channel_counts_still_load(tmp_path, channels, rate):
    sf.write(tmp_path / "odd.flac", tone(rate, channels, rate), rate)  # 1 s
    audio, note = load_audio(tmp_path / "odd.flac")
    assert audio.shape == (2, SR)
    assert f"resampled {rate} Hz → 44100 Hz" in note
    assert ("mono → stereo" if channels == 1 else f"kept the first 2 of {channels} channels") in note


def hostile_flac(path, seconds=599, channels=8, rate=192000):
    """A small FLAC whose header announces ``seconds`` of ``channels`` at ``rate``: one real second,
    then STREAMINFO's 36-bit total-samples field set to the full length (a real 599 s file of
    near-silence is about as small, but takes a while to encode)."""
    sf.write(path, tone(rate, channels, rate), rate, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO comes first
    field = int.from_bytes(data[18:26], "big")  # sample rate, channels, bits, total samples
    field = field & ~(2**36 - 1) | seconds * rate
    data[18:26] = field.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


PEAK_RSS = """
import resource, sys
import soxr  # its library is loaded before the baseline: not what we measure
from studio.audio_io import AudioError, Limits, load_audio
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    audio, note = load_audio(sys.argv[1], Limits(max_decoded_bytes=int(sys.argv[2])))
    print("loaded", audio.shape[1])
except AudioError as e:
    print(e)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)  # MB (ru_maxrss is in KB)
"""


def peak_rss_mb(path, max_decoded_bytes) -> tuple[str, float]:
    """(what load_audio said, its peak memory in MB above the child's baseline), in a fresh process."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, str(path), str(max_decoded_bytes)], cwd=root,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": root})
    assert out.returncode == 0, out.stderr
    said, mb = out.stdout.strip().splitlines()
    return said, float(mb)


def test_a_file_that_would_decode_huge_is_refused_before_decoding(tmp_path):
    path = hostile_flac(tmp_path / "hostile.flac")
    assert path.stat().st_size < 2**20 and sf.info(str(path)).duration == 599  # passes size and length limits
    said, mb = peak_rss_mb(path, Limits().max_decoded_bytes)
    assert said == ("“hostile.flac” would decode to 3,510 MB (599 s × 8 channels at 192 kHz); the studio "
                    "decodes up to 1,024 MB. Convert it to stereo at 44.1 or 48 kHz first.")
    assert mb < 20  # decoding all of it: 3.7 GB


def test_decoding_keeps_only_the_front_pair_in_memory(tmp_path):
    """30 s of 8 channels at 192 kHz: 184 MB as float32 all at once; read in blocks keeping two
    channels, the peak is the pair (46 MB) plus the 44.1 kHz result (11 MB) and its copy."""
    rate, channels, seconds = 192000, 8, 30
    second = tone(rate, channels, rate).astype(np.float32)
    with sf.SoundFile(tmp_path / "wide.flac", "w", rate, channels, subtype="PCM_16") as f:
        for _ in range(seconds):
            f.write(second)
    said, mb = peak_rss_mb(tmp_path / "wide.flac", 2**31)
    assert said == f"loaded {seconds * SR}"
    everything = seconds * rate * channels * 4 / 2**20
    assert mb < 0.5 * everything, f"peak {mb:.0f} MB, all channels {everything:.0f} MB"


@pytest.mark.parametrize("fmt", sorted(audio_io.FORMATS))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_export_refuses_non_finite_audio_and_leaves_nothing(tmp_path, fmt, bad):
    x = tone(1000, 2).T.astype(np.float32)
    x[1, 500] = bad
    with pytest.raises(AudioError, match=r"^The audio holds NaN or infinite samples .* was not written: "):
        audio_io.export(tmp_path / f"take{audio_io.FORMATS[fmt][2]}", x, fmt, {"seed": 1})
    assert os.listdir(tmp_path) == []
