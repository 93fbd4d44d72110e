"""Finding and reading released SA3 checkpoints.

A released repo (``stabilityai/stable-audio-3-small-music``...) holds ``model_config.json``,
``model.safetensors`` and the text encoder in ``t5gemma-b-b-ul2/``. Inside the root file:

    model.model.*               the DiT
    pretransform.model.*        SAME
    conditioner.conditioners.*  learned padding + seconds embedder

A standalone SAME repo (``stabilityai/SAME-S``) stores SAME's keys with no prefix.

We read tensors with safetensors only (never pickle), only the ones a component needs,
straight to the target device and dtype, and load them strictly: a missing, unexpected or
mis-shaped tensor is an error that names it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

CONFIG_FILE = "model_config.json"
WEIGHTS_FILE = "model.safetensors"
TEXT_ENCODER_FOLDER = "t5gemma-b-b-ul2"

# Prefixes of the components inside a full checkpoint.
DIT_PREFIX = "model.model."
SAME_PREFIX = "pretransform.model."
CONDITIONER_PREFIX = "conditioner.conditioners."

# Short names a user may type instead of a repo id.
REPOS = {
    "small-music": "stabilityai/stable-audio-3-small-music",
    "small-sfx": "stabilityai/stable-audio-3-small-sfx",
    "medium": "stabilityai/stable-audio-3-medium",
    "small-music-base": "stabilityai/stable-audio-3-small-music-base",
    "small-sfx-base": "stabilityai/stable-audio-3-small-sfx-base",
    "medium-base": "stabilityai/stable-audio-3-medium-base",
    "same-s": "stabilityai/SAME-S",
    "same-l": "stabilityai/SAME-L",
}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be found, fetched or loaded; the message says what to do."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder on disk, in the released layout."""

    folder: Path

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG_FILE

    @property
    def weights_path(self) -> Path:
        return self.folder / WEIGHTS_FILE

    @property
    def text_encoder_folder(self) -> Path:
        return self.folder / TEXT_ENCODER_FOLDER


# --------------------------------------------------------------------------- finding


def resolve(name_or_path: str, *, revision: str | None = None, token: str | bool | None = None,
            text_encoder: bool = True, local_only: bool | None = None,
            progress: Callable[[int, int], None] | None = None) -> Checkpoint:
    """A short name, a Hugging Face repo id or a local folder -> a local checkpoint folder.

    Downloads through huggingface_hub (its cache, ``revision``, ``token``, its progress bars);
    ``local_only`` (default: ``HF_HUB_OFFLINE``) uses the cache alone. ``progress(done, total)``
    hears the downloaded bytes too.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _check_folder(Checkpoint(path))
    if path.suffix == ".json" or os.sep in name_or_path and not _looks_like_repo_id(name_or_path):
        raise CheckpointError(f"No checkpoint folder at {name_or_path!r}: the folder does not exist.")
    repo_id = REPOS.get(name_or_path.lower(), name_or_path)
    if not _looks_like_repo_id(repo_id):
        raise CheckpointError(
            f"Unknown model {name_or_path!r}: use a short name ({', '.join(REPOS)}), "
            "a Hugging Face repo id like 'stabilityai/stable-audio-3-small-music', or a local folder.")
    patterns = [CONFIG_FILE, WEIGHTS_FILE]
    if text_encoder:
        patterns.append(f"{TEXT_ENCODER_FOLDER}/*")
    folder = _download(repo_id, patterns, revision=revision, token=token, local_only=local_only,
                       progress=progress)
    return _check_folder(Checkpoint(Path(folder)))


def resolve_file(path_or_hub: str, *, revision: str | None = None, token: str | bool | None = None) -> Path:
    """A local file, or ``owner/repo/path/in/repo`` fetched from the Hugging Face Hub (cached once)."""
    path = Path(path_or_hub).expanduser()
    if path.is_file():
        return path
    parts = path_or_hub.split("/")
    if len(parts) >= 3 and all(parts) and not path_or_hub.startswith((".", "/", "~")):
        repo_id, inside = "/".join(parts[:2]), "/".join(parts[2:])
        file = Path(_download(repo_id, [inside], revision=revision, token=token, local_only=None)) / inside
        if file.is_file():
            return file
        raise CheckpointError(f"{repo_id} has no file {inside}: check the path on its Hugging Face page.")
    raise CheckpointError(f"{path_or_hub} was not found: give a local file, or owner/repo/file on Hugging Face.")


def _looks_like_repo_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))


def _download(repo_id, patterns, *, revision, token, local_only, progress=None) -> str:
    import huggingface_hub
    # Submodules imported by name: huggingface_hub loads them lazily, and `huggingface_hub.constants`
    # only exists once something (gradio, in the app) has imported it.
    from huggingface_hub import constants, errors

    if local_only is None:
        local_only = constants.HF_HUB_OFFLINE
    bar = {} if progress is None else {"tqdm_class": _reporting_bar(progress)}
    try:
        return huggingface_hub.snapshot_download(repo_id, revision=revision, token=token,
                                                 allow_patterns=patterns, local_files_only=local_only, **bar)
    except errors.GatedRepoError as e:
        raise CheckpointError(
            f"{repo_id} is a gated model: accept its licence on https://huggingface.co/{repo_id} "
            "and log in with `hf auth login` (or set HF_TOKEN).") from e
    except errors.RepositoryNotFoundError as e:
        raise CheckpointError(
            f"{repo_id} was not found on Hugging Face (or it is private and no token was given): "
            "check the name, or log in with `hf auth login`.") from e
    except errors.RevisionNotFoundError as e:
        raise CheckpointError(f"{repo_id} has no revision {revision!r}.") from e
    except errors.LocalEntryNotFoundError as e:
        raise CheckpointError(
            f"{repo_id} is not in the local Hugging Face cache and cannot be downloaded "
            "(no network, or offline mode is on): connect and retry, or pass a local folder.") from e
    except Exception as e:  # OSError, HfHubHTTPError, httpx's connection errors...
        raise CheckpointError(f"Downloading {repo_id} failed ({type(e).__name__}: {first_line(e)}): "
                              "check your network connection and retry, or pass a local folder.") from e


def first_line(e: BaseException) -> str:
    """The first line of an exception's text (torch and httpx messages run over many lines)."""
    text = str(e).strip().splitlines()
    return text[0].rstrip(".") if text else type(e).__name__


def _reporting_bar(progress: Callable[[int, int], None]):
    """A tqdm class for huggingface_hub that also tells ``progress`` about byte bars."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class ReportingBar(hf_tqdm):
        def __init__(self, *args, **kwargs):
            self._bytes, self._done = kwargs.get("unit") == "B", kwargs.get("initial") or 0
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            self._done += n or 0  # counted here: a disabled tqdm counts nothing
            if self._bytes and self.total:
                progress(int(self._done), int(self.total))
            return super().update(n)

    return ReportingBar


def _check_folder(ckpt: Checkpoint) -> Checkpoint:
    for f in (ckpt.config_path, ckpt.weights_path):
        if not f.is_file():
            raise CheckpointError(f"{ckpt.folder} is not a complete checkpoint: {f.name} is missing.")
    return ckpt


# --------------------------------------------------------------------------- reading


def tensor_names(path: str | Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def read_tensors(path: str | Path, prefix: str = "", device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file whose names start with ``prefix``, prefix stripped.

    Only those tensors are read, straight to ``device``; floating tensors are cast to ``dtype``.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            out = {}
            for name in f.keys():
                if name.startswith(prefix):
                    t = f.get_tensor(name)
                    if dtype is not None and t.is_floating_point():
                        t = t.to(dtype)
                    out[name[len(prefix):]] = t
            return out
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"Cannot read {path}: {e} (is it a safetensors file?)") from e


def load_weights(module: nn.Module, tensors: dict[str, torch.Tensor], what: str) -> nn.Module:
    """Copy ``tensors`` into ``module`` strictly; errors name every problem tensor (missing,
    unexpected, mis-shaped, integer where a float belongs, NaN or infinite values).

    Works for modules built on the meta device too (``assign=True`` then takes the tensors).
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshaped = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    problems = []
    if missing:
        problems.append(f"missing {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listing(unexpected)}")
    if misshaped:
        problems.append("wrong shape " + _listing(
            [f"{k} {tuple(tensors[k].shape)} (expected {tuple(expected[k].shape)})" for k in misshaped]))
    common = sorted(set(expected) & set(tensors))
    mistyped = [k for k in common if expected[k].is_floating_point() != tensors[k].is_floating_point()]
    if mistyped:
        problems.append("wrong dtype " + _listing(
            [f"{k} {tensors[k].dtype} (expected {expected[k].dtype})" for k in mistyped]))
    if problems:
        raise CheckpointError(f"{what} does not match this model: " + "; ".join(problems) + ".")
    # NaN weights would otherwise surface only as broken takes after minutes of sampling. A sum
    # (in float32: an fp16 sum may overflow) is NaN/inf exactly when a value is, and costs one read.
    broken = [k for k in common if tensors[k].is_floating_point()
              and not bool(tensors[k].sum(dtype=torch.float32).isfinite())]
    if broken:
        raise CheckpointError(f"{what} holds NaN or infinite values in {_listing(broken)}: "
                              "the file is damaged; download it again.")
    on_meta = any(t.is_meta for t in expected.values())
    module.load_state_dict(tensors, strict=True, assign=on_meta)
    return module


def _listing(names: list[str], limit: int = 8) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
