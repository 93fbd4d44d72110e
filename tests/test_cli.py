"""``python -m studio`` end to end on the tiny checkpoint (in-process)."""

import json

import numpy as np
import pytest
import soundfile as sf

from studio.__main__ import main


def test_generate_then_edit_with_regions_and_continuation(tiny_checkpoint, tmp_path, capsys):
    first = tmp_path / "gen.wav"
    assert main(["generate", "lofi", "--seconds", "2", "--seed", "3", "--model", str(tiny_checkpoint),
                 "-o", str(first)]) == 0
    audio, sr = sf.read(first, always_2d=True)
    assert sr == 44100 and audio.shape == (88200, 2)
    assert json.loads(first.with_suffix(".json").read_text())["seed"] == 3

    edited = tmp_path / "edit.flac"
    assert main(["edit", str(first), "--prompt", "drums", "--regions", "0.5:1,1.2:1.5", "--continue", "1",
                 "--seed", "4", "--model", str(tiny_checkpoint), "-o", str(edited)]) == 0
    out, _ = sf.read(edited, always_2d=True)
    assert out.shape == (3 * 44100, 2)
    side = json.loads(edited.with_suffix(".json").read_text())
    assert [(r["start"], r["end"]) for r in side["regenerated"]] == [(0.5, 1.0), (1.2, 1.5), (2.0, 3.0)]
    # outside the regions the 24-bit source comes back exactly (FLAC is lossless)
    keep = np.r_[0:22050, 44100:52920, 66150:88200]
    np.testing.assert_array_equal(out[keep], audio[keep])


def test_region_outside_the_track_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    src = tmp_path / "src.wav"
    sf.write(src, np.random.default_rng(0).uniform(-0.5, 0.5, (44100, 2)), 44100)
    code = main(["edit", str(src), "--prompt", "x", "--regions", "0.5:9", "--model", str(tiny_checkpoint),
                 "-o", str(tmp_path / "o.wav")])
    assert code == 1
    assert "lies outside the clip" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()


def test_bad_region_syntax_and_output_type(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["edit", "x.wav", "--prompt", "x", "--regions", "4-8", "-o", "o.wav"])
    assert e.value.code == 2 and "is not START:END" in capsys.readouterr().err
    assert main(["generate", "x", "-o", str(tmp_path / "o.mp3")]) == 2
    assert "must end in .wav or .flac" in capsys.readouterr().err


def test_replay_a_sidecar_gives_the_same_samples(tiny_checkpoint, tmp_path, capsys):
    model = str(tiny_checkpoint)
    source = tmp_path / "gen.wav"
    assert main(["generate", "pads", "--seconds", "2", "--seed", "9", "--model", model, "-o", str(source)]) == 0
    take = tmp_path / "take.wav"
    assert main(["edit", str(source), "--prompt", "drums", "--regions", "0.4:1.1", "--continue", "0.5", "--seed", "4",
                 "--strength", "0.8", "--crossfade-ms", "12", "--context", "0.5", "--model", model,
                 "-o", str(take)]) == 0
    side = json.loads(take.with_suffix(".json").read_text())
    assert (side["strength"], side["crossfade_ms"], side["context_seconds"], side["seed"]) == (0.8, 12.0, 0.5, 4)
    again = tmp_path / "again.wav"
    assert main(["replay", str(take.with_suffix(".json")), "-o", str(again)]) == 0
    np.testing.assert_array_equal(sf.read(again)[0], sf.read(take)[0])
    # a changed source is refused, not silently replayed into something else
    audio, sr = sf.read(source)
    sf.write(source, audio * 0.5, sr, subtype="PCM_24")
    assert main(["replay", str(take.with_suffix(".json")), "-o", str(tmp_path / "x.wav")]) == 1
    assert "has changed since the take was made" in capsys.readouterr().err
