"""``python -m studio`` end to end on the tiny checkpoint (in-process)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from studio import edit
from studio.__main__ import main
from studio.api import EngineError, Region, Take
from tests.conftest import ROOT


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
    snapped = edit.snap_regions([Region(0.5, 1.0), Region(1.2, 1.5)], 2.0)  # the studio's one rule
    assert [(r["start"], r["end"]) for r in side["regenerated"]] == [(r.start, r.end) for r in snapped] + [(2.0, 3.0)]
    # outside the regions the 24-bit source comes back exactly (FLAC is lossless)
    keep = ~edit.region_mask(len(audio), snapped)
    np.testing.assert_array_equal(out[:len(audio)][keep], audio[keep])


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
    assert main(["generate", "x", "-o", str(tmp_path / "o.ogg")]) == 2
    assert "must end in .wav, .flac or .mp3" in capsys.readouterr().err


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
# --------------------------------------------------------------------------- fresh processes, exactly as a user runs it


def run_cli(args, cwd, hf_home, importtime=False):
    """``python [-X importtime] -m studio ARGS`` in a new process: offline, with an empty hub cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run([sys.executable, *flags, "-m", "studio", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_fresh_cli_without_the_model_says_one_sentence_and_imports_no_gradio(tmp_path):
    """Issue 9: `python -m studio generate "x" --seconds 2 -o x.wav` died with AttributeError
    (huggingface_hub.constants exists only once gradio has imported it)."""
    out = run_cli(["generate", "x", "--seconds", "2", "-o", "x.wav"], tmp_path, tmp_path / "hf", importtime=True)
    imports = [line for line in out.stderr.splitlines() if line.startswith("import time:")]
    said = [line for line in out.stderr.splitlines() if not line.startswith("import time:")]
    assert out.returncode == 1
    modules = {line.split("|")[-1].strip() for line in imports}
    assert "huggingface_hub.constants" in modules and "torch" in modules
    assert not any(m == "gradio" or m.startswith("gradio.") for m in modules)
    assert len(said) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert said[0].startswith("error: stabilityai/stable-audio-3-") and said[0].endswith(
        "is not in the local Hugging Face cache and cannot be downloaded (no network, or offline mode is on): "
        "connect and retry, or pass a local folder.")
    assert not (tmp_path / "x.wav").exists() and out.stdout == ""


def test_fresh_cli_generates_from_a_local_checkpoint_folder(tiny_checkpoint, tmp_path):
    out = run_cli(["generate", "lofi", "--seconds", "1", "--seed", "5", "--model", str(tiny_checkpoint),
                   "-o", "one.flac"], tmp_path, tmp_path / "hf")
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith("wrote one.flac (1.00 s, seed 5,") and out.stderr.count("\n") == 1
    audio, sr = sf.read(tmp_path / "one.flac", always_2d=True)
    assert sr == 44100 and audio.shape == (44100, 2) and np.abs(audio).max() > 0
    assert json.loads((tmp_path / "one.json").read_text())["seed"] == 5


# --------------------------------------------------------------------------- every bad value: one line, before any work


@pytest.mark.parametrize("args, message", [
    (["generate", "x", "--strength", "2"], "argument --strength: must be a number above 0 and at most 1, got '2'"),
    (["generate", "x", "--strength", "-1"], "--strength: must be a number above 0 and at most 1, got '-1'"),
    (["generate", "x", "--strength", "0"], "--strength: must be a number above 0 and at most 1, got '0'"),
    (["generate", "x", "--strength", "nan"], "--strength: must be a number above 0 and at most 1, got 'nan'"),
    (["generate", "x", "--steps", "0"], "--steps: must be a whole number from 1 to 500, got '0'"),
    (["generate", "x", "--steps", "-3"], "--steps: must be a whole number from 1 to 500, got '-3'"),
    (["generate", "x", "--steps", "501"], "--steps: must be a whole number from 1 to 500, got '501'"),
    (["generate", "x", "--steps", "2.5"], "--steps: must be a whole number from 1 to 500, got '2.5'"),
    (["generate", "x", "--seconds", "0.00001"], "--seconds: must be a length in seconds of at least 0.093"),
    (["generate", "x", "--seconds", "inf"], "--seconds: must be a length in seconds of at least 0.093"),
    (["generate", "x", "--seconds", "nan"], "--seconds: must be a length in seconds of at least 0.093"),
    (["generate", "x", "--seed", "1e23"], "--seed: must be a whole number from 0 to 9223372036854775807"),
    (["generate", "x", "--seed", "-1"], "--seed: must be a whole number from 0 to 9223372036854775807"),
    (["generate", "x", "--seed", str(2**63)], "--seed: must be a whole number from 0 to 9223372036854775807"),
    (["edit", "s.wav", "--prompt", "x", "--continue", "inf"], "--continue: must be a number of at least 0, got 'inf'"),
    (["edit", "s.wav", "--prompt", "x", "--continue", "nan"], "--continue: must be a number of at least 0, got 'nan'"),
    (["edit", "s.wav", "--prompt", "x", "--continue", "-1"], "--continue: must be a number of at least 0, got '-1'"),
    (["edit", "s.wav", "--prompt", "x", "--context", "nan"], "--context: must be a number of at least 0, got 'nan'"),
    (["edit", "s.wav", "--prompt", "x", "--crossfade-ms=-inf"], "--crossfade-ms: must be a number of at least 0"),
    (["edit", "s.wav", "--prompt", "x", "--strength", "1.5"], "--strength: must be a number above 0 and at most 1"),
    (["edit", "s.wav", "--prompt", "x", "--regions", "nan:5"], "region 'nan:5' is not START:END in seconds"),
    (["edit", "s.wav", "--prompt", "x", "--extend-start", "nan"], "--extend-start: must be a number of at least 0"),
    (["generate", "x", "--cfg", "nan"], "--cfg: must be a number from 0 to 25, got 'nan'"),
    (["generate", "x", "--cfg", "30"], "--cfg: must be a number from 0 to 25, got '30'"),
    (["edit", "s.wav", "--prompt", "x", "--apg", "2"], "--apg: must be a number from 0 to 1, got '2'"),
])
def test_bad_numbers_are_one_line_before_anything_loads(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(args + ["-o", "o.wav"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "usage" not in err
    assert err.startswith("error: argument ") and message in err and err.endswith("--help`.\n")


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to load a model fails the test: these runs must stop before."""
    from studio.engine import RealEngine

    def ensure(self, name, progress=None):
        raise AssertionError("a model was loaded")
    monkeypatch.setattr(RealEngine, "_ensure", ensure)


@pytest.fixture
def song(tmp_path):
    path = tmp_path / "song.wav"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, (44100, 2)), 44100)
    return path


def refused(argv, capsys, code=2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err.strip()


def test_output_problems_are_refused_before_the_model_loads(no_model, song, tmp_path, capsys):
    edit = ["edit", str(song), "--prompt", "x", "--regions", "0.2:0.5", "-o"]
    assert "is a folder: give a file name, such as" in refused(edit + [str(tmp_path)], capsys)
    assert "does not exist: create it first" in refused(edit + [str(tmp_path / "no" / "o.wav")], capsys)
    assert "must end in .wav, .flac or .mp3, got 'o.ogg'" in refused(edit + [str(tmp_path / "o.ogg")], capsys)
    before = song.read_bytes()
    assert f"--output would overwrite {song} (song.wav); the source is never modified" in refused(
        edit + [str(song)], capsys)
    link = tmp_path / "link.wav"
    link.symlink_to(song)
    assert "would overwrite" in refused(edit + [str(link)], capsys)
    os.link(song, tmp_path / "hard.wav")
    assert "would overwrite" in refused(edit + [str(tmp_path / "hard.wav")], capsys)
    assert "would overwrite" in refused(["generate", "x", "--init", str(song), "-o", str(song)], capsys)
    guide = tmp_path / "guide.wav"
    guide.write_bytes(before)
    assert f"would overwrite {guide}" in refused(edit + [str(guide), "--guide", str(guide)], capsys)
    assert song.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_output_folder_is_refused(no_model, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "is not writable" in refused(["generate", "x", "-o", str(locked / "o.wav")], capsys)


def test_sources_and_lengths_are_checked_before_the_model_loads(no_model, song, tmp_path, capsys):
    out = ["-o", str(tmp_path / "o.wav")]
    assert refused(["edit", str(tmp_path), "--prompt", "x", *out], capsys, code=1) == (
        f"error: “{tmp_path}” is a folder: give an audio file (WAV, FLAC, OGG or MP3).")
    assert "“nope.wav” was not found." in refused(["edit", str(tmp_path / "nope.wav"), "--prompt", "x", *out],
                                                  capsys, code=1)
    assert refused(["generate", "x", "--seconds", "500", "--model", "small-music", *out], capsys, code=1) == (
        "error: The length must be from 0.09 to 120 seconds for Small · music, got 500.")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_sentence_before_any_work(no_model, song, tmp_path, capsys):
    err = refused(["edit", str(song), "--prompt", "x", "--device", "cuda", "-o", str(tmp_path / "o.wav")],
                  capsys, code=1)
    assert err.startswith("error: Device 'cuda' needs an NVIDIA GPU, but PyTorch finds none")


@pytest.fixture
def fake_run(monkeypatch):
    """The real engine's generate replaced (no model): ``fake_run(audio or exception)``."""
    from studio.engine import RealEngine

    def install(result):
        def generate(self, req, progress=None):
            if isinstance(result, BaseException):
                raise result
            return Take(result, req, req.seed, req.model, (), 0.1)
        monkeypatch.setattr(RealEngine, "generate", generate)
    return install


def test_a_nan_take_is_refused_and_nothing_written(fake_run, tmp_path, capsys):
    fake_run(np.full((2, 4410), np.nan, np.float32))
    err = refused(["generate", "x", "--seconds", "0.1", "-o", str(tmp_path / "o.flac")], capsys, code=1)
    assert err.startswith("error: The audio holds NaN or infinite samples")
    assert os.listdir(tmp_path) == []


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(fake_run, tmp_path, capsys):
    fake_run(KeyError("plan"))
    argv = ["generate", "x", "--seconds", "1", "-o", str(tmp_path / "o.wav")]
    assert refused(argv, capsys, code=1) == "error: unexpected KeyError: 'plan'; run with --debug for details."
    assert main(argv + ["--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.endswith("error: unexpected KeyError: 'plan'.\n")
    fake_run(EngineError("The model ran out of memory: try fewer seconds."))
    assert refused(argv, capsys, code=1) == "error: The model ran out of memory: try fewer seconds."


def test_seconds_past_a_local_models_longest_clip_is_one_sentence(tiny_checkpoint, tmp_path, capsys):
    """A folder's longest clip is known once its config is read: refused before any sampling."""
    err = refused(["generate", "x", "--seconds", "121", "--model", str(tiny_checkpoint),
                   "-o", str(tmp_path / "o.wav")], capsys, code=1)
    assert err == "error: The length must be from 0.09 to 120 seconds for sa3-small-tiny, got 121."
    assert os.listdir(tmp_path) == []


def test_replay_never_overwrites_its_sidecar_or_the_files_it_names(no_model, song, tmp_path, capsys):
    side = tmp_path / "take.json"
    side.write_text(json.dumps({"source": {"file": str(song), "sha256": "0"}}))
    assert "would overwrite" in refused(["replay", str(side), "-o", str(tmp_path / "take.flac")], capsys)
    assert f"would overwrite {song}" in refused(["replay", str(side), "-o", str(song)], capsys)
