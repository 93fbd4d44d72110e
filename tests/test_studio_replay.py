"""A take made in the studio replays from its exported side-car: the studio's handlers over the real
engine on the tiny checkpoint make two takes, each accepted in turn (the first on the -base variant
with CFG/APG/negative prompt and a LoRA, the second restyled from a guide file with its own strength,
context, crossfade and loudness matching); ``python -m studio replay`` in a fresh process remakes the
exported version sample for sample. A changed or missing source (or a changed LoRA file) is one
sentence, exit status 1."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("gradio")

from studio import recipe, session  # noqa: E402
from studio.engine import RealEngine  # noqa: E402
from studio.painter import read as read_painter  # noqa: E402
from studio.ui import StudioConfig, _Handlers  # noqa: E402
from tests.conftest import GOLDEN  # noqa: E402
from tests.test_cli import run_cli  # noqa: E402

LORA = GOLDEN / "sa3_small_tiny" / "lora_lora.safetensors"


def no_progress(*args, **kwargs):
    pass


def clip(path, seconds, seed):
    audio = 0.2 * np.random.default_rng(seed).standard_normal((int(seconds * 44100), 2))
    sf.write(path, audio, 44100, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def made(tiny_checkpoint, tmp_path_factory):
    """(handlers, session, exported side-car path, folder): two accepted takes, the second exported."""
    tmp = tmp_path_factory.mktemp("studio-replay")
    base = tmp / "tiny-base"  # the -base variant: same weights, sampled with guidance
    shutil.copytree(tiny_checkpoint, base)
    shutil.copy(GOLDEN / "sa3_small_tiny" / "model_config_base.json", base / "model_config.json")
    engine = RealEngine(extra_models=(str(tiny_checkpoint), str(base)))
    h = _Handlers(engine, StudioConfig(sessions=tmp / "sessions", default_model=str(tiny_checkpoint)),
                  {m.name: m for m in engine.models()})
    tab = SimpleNamespace(session_hash="tab", query_params={})
    sid = h.load_file(None, read_painter({"regions": []}), str(clip(tmp / "song.wav", 3.0, seed=1)))[0]

    def take(start, end, model, seed, **kw):
        painter = read_painter({"regions": [{"start": start, "end": end}]})
        out = h.generate(sid, painter, model, "glass", seed, False, 1, 3, kw.pop("strength", 1.0),
                         kw.pop("crossfade", 30.0), request=tab, progress=no_progress, **kw)
        assert "ready" in out[2]["value"], out[2]["value"]
        s = session.open_session(h.cfg.sessions, sid)
        h.accept(sid, painter, s.takes[-1].id)

    take(0.5, 1.2, str(base), 3, cfg=3.0, apg=0.5, negative="noise", lora1=str(LORA), lora1_strength=0.7)
    take(1.6, 2.3, str(tiny_checkpoint), 4, strength=0.6, crossfade=12.0, guide=str(clip(tmp / "guide.wav", 3.0, 2)),
         context="5 s each side", match=True)
    s = session.open_session(h.cfg.sessions, sid)
    _, status = h.export(sid, "wav24", "current")
    exported = next(s.path("exports").glob("*.json"))
    assert exported.with_suffix(".json").name in status["value"]
    return h, s, exported, tmp


def test_the_side_car_holds_the_chain_of_requests(made):
    h, s, side, _ = made
    data = json.loads(side.read_text())
    first, = data["chain"]
    assert data["recipe"] == first["recipe"] == 1 and data["take"] == "t002"
    assert (first["guidance"], first["loras"][0]["strength"], first["seed"], first["steps"]) == (
        {"cfg_scale": 3.0, "apg_scale": 0.5, "negative_prompt": "noise"}, 0.7, 3, 3)
    assert first["model"].endswith("tiny-base") and first["source"]["file"] == str(s.path(s.versions[0].file))
    lora = Path(first["loras"][0]["path"])  # the session's copy: an upload is temporary
    assert lora.parent == s.path("loras") and lora.read_bytes() == LORA.read_bytes()
    assert first["loras"][0]["sha256"] == recipe.file_hash(LORA)
    assert (data["strength"], data["crossfade_ms"], data["context_seconds"], data["match_loudness"]) == (
        0.6, 12.0, 5.0, True)
    assert data["source"] == {"file": None, "sha256": first["output_sha256"], "seconds": 3.0}
    assert data["output_sha256"] == recipe.audio_hash(session.audio(s, "current"))
    assert (data["precision"], data["device"]) == (h.engine.precision.name, h.engine.device)
    assert data["revision"] is None  # a local folder (a model from the hub records its commit)


def test_replay_in_a_fresh_process_remakes_the_export_bit_for_bit(made):
    _, _, side, tmp = made
    out = run_cli(["replay", str(side), "-o", "again.wav"], tmp, tmp / "hf")
    assert out.returncode == 0, out.stderr
    assert "note: the same samples as the take this side-car records." in out.stderr
    again, exported = (sf.read(p, dtype="int32")[0] for p in (tmp / "again.wav", side.with_suffix(".wav")))
    np.testing.assert_array_equal(again, exported)  # both 24-bit from the same float samples
    replayed = json.loads((tmp / "again.json").read_text())
    assert replayed["output_sha256"] == json.loads(side.read_text())["output_sha256"]
    assert len(replayed["chain"]) == 1  # its own side-car replays too


def test_a_changed_or_missing_source_is_one_sentence(made):
    _, _, side, tmp = made
    data = json.loads(side.read_text())
    moved = tmp / "moved.wav"
    shutil.copy(data["chain"][0]["source"]["file"], moved)
    data["chain"][0]["source"]["file"] = str(moved)
    copy = tmp / "copy.json"
    copy.write_text(json.dumps(data))
    audio, sr = sf.read(moved, dtype="float32")
    sf.write(moved, audio * 0.5, sr, subtype="FLOAT")
    changed = run_cli(["replay", str(copy), "-o", "x.wav"], tmp, tmp / "hf")
    moved.unlink()
    missing = run_cli(["replay", str(copy), "-o", "x.wav"], tmp, tmp / "hf")
    data = json.loads(side.read_text())
    adapter = tmp / "adapter.safetensors"
    adapter.write_bytes(LORA.read_bytes() + b" ")
    data["chain"][0]["loras"][0]["path"] = str(adapter)
    copy.write_text(json.dumps(data))
    lora = run_cli(["replay", str(copy), "-o", "x.wav"], tmp, tmp / "hf")
    for out, says in ((changed, "moved.wav has changed since the take was made"),
                      (missing, f"The take was made from {moved}, which is no longer there: put it back"),
                      (lora, "The LoRA adapter.safetensors has changed since the take was made")):
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"error: {says}"), out.stderr
    assert not (tmp / "x.wav").exists()


def test_a_model_from_the_hub_cache_records_its_commit(tiny_checkpoint, tmp_path):
    """huggingface_hub keeps a download under snapshots/<commit>/: that commit is the recipe's revision."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--stabilityai--tiny" / "snapshots" / commit
    shutil.copytree(tiny_checkpoint, snapshot)
    engine = RealEngine()
    engine.prepare(str(snapshot))
    assert engine.made_on(str(snapshot))["revision"] == commit
    assert engine.made_on(str(tiny_checkpoint))["revision"] is None
