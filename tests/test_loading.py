import shutil

import pytest
import torch
from torch import nn

from models import loading
from models.loading import CheckpointError, load_weights, read_tensors, resolve
from tests.conftest import GOLDEN


@pytest.fixture
def full_checkpoint(tmp_path):
    """A full SA3 checkpoint folder in the released layout (tiny random weights)."""
    folder = tmp_path / "sa3-small"
    folder.mkdir()
    shutil.copy(GOLDEN / "sa3_small_tiny" / "model_config.json", folder)
    shutil.copy(GOLDEN / "sa3_small_tiny" / "model.safetensors", folder)
    shutil.copytree(GOLDEN / "t5gemma-b-b-ul2", folder / "t5gemma-b-b-ul2")
    return folder


def test_resolve_local_folder(full_checkpoint):
    ckpt = resolve(str(full_checkpoint))
    assert ckpt.folder == full_checkpoint
    assert ckpt.text_encoder_folder.is_dir()


def test_resolve_incomplete_folder_names_the_missing_file(full_checkpoint):
    (full_checkpoint / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        resolve(str(full_checkpoint))


def test_resolve_unknown_name():
    with pytest.raises(CheckpointError, match="Unknown model 'tiny-disco'.*short name"):
        resolve("tiny-disco")


def test_resolve_offline_without_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        resolve("small-music", local_only=True)


@pytest.mark.parametrize("error, message", [
    ("GatedRepoError", "gated model: accept its licence"),
    ("RepositoryNotFoundError", "was not found on Hugging Face"),
    ("LocalEntryNotFoundError", "cannot be downloaded"),
])
def test_hub_errors_become_one_actionable_sentence(monkeypatch, error, message):
    import huggingface_hub
    from huggingface_hub import errors

    def fail(*args, **kwargs):
        cls = getattr(errors, error)
        if error == "LocalEntryNotFoundError":
            raise cls("offline")
        raise cls("nope", response=_FakeResponse())

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(CheckpointError, match=message):
        resolve("stabilityai/stable-audio-3-medium")


class _FakeResponse:
    status_code = 403
    headers = {}
    url = "https://huggingface.co"
    request = None

    def json(self):
        return {}


def test_short_names_map_to_repos(monkeypatch, full_checkpoint):
    seen = {}

    def fake_download(repo_id, **kwargs):
        seen.update(repo_id=repo_id, **kwargs)
        return str(full_checkpoint)

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    ckpt = resolve("small-sfx", revision="abc", token="t", local_only=False)
    assert ckpt.folder == full_checkpoint
    assert seen["repo_id"] == "stabilityai/stable-audio-3-small-sfx"
    assert seen["revision"] == "abc" and seen["token"] == "t"
    assert "t5gemma-b-b-ul2/*" in seen["allow_patterns"]


def test_read_tensors_selects_by_prefix_and_casts(full_checkpoint):
    path = full_checkpoint / "model.safetensors"
    same = read_tensors(path, loading.SAME_PREFIX, dtype=torch.bfloat16)
    assert same and not any(k.startswith("pretransform.") for k in same)
    assert all(t.dtype == torch.bfloat16 for t in same.values() if t.is_floating_point())
    names = loading.tensor_names(path)
    assert len(same) == sum(n.startswith(loading.SAME_PREFIX) for n in names)


def test_read_tensors_refuses_a_non_safetensors_file(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x80\x04pickle")
    with pytest.raises(CheckpointError, match="Cannot read"):
        read_tensors(bad)


def test_load_weights_is_strict_and_names_every_problem():
    module = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    good = {k: torch.randn_like(v) for k, v in module.state_dict().items()}
    load_weights(module, good, "test checkpoint")
    assert torch.equal(module[0].weight, good["0.weight"])

    bad = dict(good)
    del bad["1.bias"]
    bad["2.weight"] = torch.zeros(1)
    bad["0.weight"] = torch.zeros(5, 3)
    with pytest.raises(CheckpointError) as e:
        load_weights(module, bad, "test checkpoint")
    text = str(e.value)
    assert "missing 1.bias" in text
    assert "unexpected 2.weight" in text
    assert "wrong shape 0.weight (5, 3) (expected (4, 3))" in text


def test_load_weights_onto_meta_module_assigns():
    with torch.device("meta"):
        module = nn.Linear(3, 4)
    tensors = {"weight": torch.randn(4, 3), "bias": torch.randn(4)}
    load_weights(module, tensors, "x")
    assert not module.weight.is_meta and torch.equal(module.bias, tensors["bias"])


@pytest.mark.parametrize("folder, prefix", [("same_s_tiny", ""), ("sa3_small_tiny", "pretransform.model.")])
def test_load_same_from_standalone_and_full_checkpoints(folder, prefix):
    from models.sa3 import load_same

    same = load_same(resolve(str(GOLDEN / folder)))
    stored = read_tensors(GOLDEN / folder / "model.safetensors", prefix)
    assert set(same.state_dict()) <= set(stored)
    assert torch.equal(same.bottleneck.scaling_factor, stored["bottleneck.scaling_factor"])


def test_full_model_load_names_a_corrupt_tensor(full_checkpoint):
    from safetensors.torch import save_file

    from models.sa3 import StableAudio3

    path = full_checkpoint / "model.safetensors"
    tensors = read_tensors(path)
    tensors["model.model.transformer.project_in.weight"] = torch.zeros(3, 3)
    del tensors["pretransform.model.bottleneck.bias"]
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=r"wrong shape project_in\.weight|transformer\.project_in\.weight"):
        StableAudio3.from_checkpoint(resolve(str(full_checkpoint)))


def test_download_progress_reaches_the_callback(monkeypatch, full_checkpoint):
    import huggingface_hub

    def fake_download(repo_id, tqdm_class=None, **kwargs):
        bar = tqdm_class(total=1000, unit="B", disable=True)
        for _ in range(4):
            bar.update(250)
        bar.close()
        return str(full_checkpoint)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    seen = []
    resolve("medium", local_only=False, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (1000, 1000) and len(seen) == 4


# --------------------------------------------------------------------------- bad checkpoints, one sentence each


def _rewrite_weights(folder, change):
    from safetensors.torch import save_file

    path = folder / "model.safetensors"
    tensors = read_tensors(path)
    change(tensors)
    save_file(tensors, str(path))


def test_an_integer_tensor_where_a_float_belongs_is_named(full_checkpoint):
    from models.sa3 import StableAudio3

    name = "model.model.transformer.project_in.weight"
    _rewrite_weights(full_checkpoint, lambda t: t.update({name: t[name].long()}))
    with pytest.raises(CheckpointError, match=r"wrong dtype transformer\.project_in\.weight torch\.int64 "
                                              r"\(expected torch\.float32\)"):
        StableAudio3.from_checkpoint(resolve(str(full_checkpoint)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_weights_are_refused_at_load(full_checkpoint, bad):
    from models.sa3 import StableAudio3

    name = "pretransform.model.bottleneck.bias"

    def poison(tensors):
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[0] = bad

    _rewrite_weights(full_checkpoint, poison)
    with pytest.raises(CheckpointError, match=r"NaN or infinite values in bottleneck\.bias: .*download it again"):
        StableAudio3.from_checkpoint(resolve(str(full_checkpoint)))


def test_no_network_is_one_sentence(monkeypatch):
    import httpx
    import huggingface_hub

    def fail(*args, **kwargs):
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution\nmore lines")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(CheckpointError) as e:
        resolve("small-music", local_only=False)
    assert str(e.value) == ("Downloading stabilityai/stable-audio-3-small-music failed (ConnectError: [Errno -3] "
                            "Temporary failure in name resolution): check your network connection and retry, "
                            "or pass a local folder.")


def test_resolve_works_without_anything_importing_the_hub_first(tmp_path):
    """huggingface_hub loads its submodules lazily: `huggingface_hub.constants` did not exist in a
    fresh process (gradio imports it in the app), so every hub model failed with AttributeError."""
    import subprocess
    import sys

    code = ("import sys; from models.loading import resolve, CheckpointError\n"
            "try:\n    resolve('small-music')\nexcept CheckpointError as e:\n    print(e)\n"
            "assert 'huggingface_hub.constants' in sys.modules and 'gradio' not in sys.modules")
    env = {"PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=GOLDEN.parents[2], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "is not in the local Hugging Face cache" in out.stdout


# --------------------------------------------------------------------------- the engine maps them to EngineError


def test_engine_load_maps_every_loading_failure_to_one_sentence(full_checkpoint, monkeypatch):
    from models.sa3 import StableAudio3
    from studio.api import EngineError
    from studio.engine import RealEngine

    for error in (RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB"), ZeroDivisionError("division by zero"),
                  AttributeError("No huggingface_hub attribute constants")):
        def fail(*args, **kwargs):
            raise error
        monkeypatch.setattr(StableAudio3, "from_checkpoint", fail)
        with pytest.raises(EngineError) as e:
            RealEngine(device="cpu").prepare(str(full_checkpoint))
        text = str(e.value)
        assert text.startswith(f"The model {str(full_checkpoint)!r} could not be loaded ({type(error).__name__}: ")
        assert "\n" not in text and text.endswith("download it again.")


def test_engine_load_names_a_bad_config_value(full_checkpoint):
    import json

    from studio.api import EngineError
    from studio.engine import RealEngine

    cfg = json.loads((full_checkpoint / "model_config.json").read_text())
    cfg["sample_rate"] = 0
    (full_checkpoint / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(EngineError, match=r"\$\.sample_rate: must be a positive integer, got 0; "
                                          r"correct model_config.json"):
        RealEngine(device="cpu").prepare(str(full_checkpoint))
    cfg["sample_rate"] = 48000
    (full_checkpoint / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(EngineError, match="works at 48000 Hz .* the studio needs 44100 Hz"):
        RealEngine(device="cpu").prepare(str(full_checkpoint))


@pytest.mark.parametrize("device, message", [
    ("cuda", "needs an NVIDIA GPU, but PyTorch finds none"),
    ("cuda:7", "needs an NVIDIA GPU, but PyTorch finds none"),
    ("tpu", "Unknown device 'tpu'"),
    ("meta", "Device 'meta' is not supported"),
])
def test_a_device_this_machine_lacks_is_refused_before_any_work(device, message):
    from studio.api import EngineError
    from studio.engine import RealEngine

    if device.startswith("cuda") and torch.cuda.is_available():
        message = "does not exist" if device == "cuda:7" and torch.cuda.device_count() < 8 else None
        if message is None:
            pytest.skip("this machine has the GPU")
    with pytest.raises(EngineError, match=message):
        RealEngine(device=device)
