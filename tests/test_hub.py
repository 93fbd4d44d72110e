"""studio.hub: what a visitor types in the LoRA panel's Hugging Face field is read as text only;
a Hub file is sized before it is downloaded, fetched without the host's token, kept in a bounded
cache. huggingface_hub's two network calls are replaced here (there is no network); the tests
of the page (tests/test_visitors.py) run the real calls against a local stand-in Hub."""
from __future__ import annotations

import builtins
import os
import time
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
from huggingface_hub import constants, errors

from studio import hub
from tests.conftest import GOLDEN

ADAPTER = GOLDEN / "sa3_small_tiny" / "lora_lora.safetensors"  # a real .safetensors file on this machine

PATH_LIKE = [str(ADAPTER), str(ADAPTER.with_name("missing.safetensors")), "/etc/passwd", "~/adapter.safetensors",
             "./adapter.safetensors", "../sessions/0123456789ab/loras/x.safetensors", "owner/repo/../x.safetensors",
             "owner\\repo\\x.safetensors", "C:/Users/me/x.safetensors", "owner/x.safetensors", "adapter.safetensors",
             "owner/repo/adapter.ckpt", "https://huggingface.co/owner/repo/blob/main/x.safetensors",
             "owner/repo/ x.safetensors", "owner/repo//x.safetensors", "owner/repo/x.safetensors@../main"]


@pytest.fixture
def no_disk(monkeypatch):
    """Any filesystem look-up fails the test (a refusal must not depend on what the disk holds)."""
    def forbidden(*args, **kwargs):
        pytest.fail(f"the filesystem was asked about {args[:1]}")
    for name in ("stat", "lstat", "access", "listdir", "scandir"):
        monkeypatch.setattr(os, name, forbidden)
    monkeypatch.setattr(builtins, "open", forbidden)


@pytest.mark.parametrize("text", PATH_LIKE)
def test_anything_but_a_hub_file_is_refused_with_one_sentence_and_no_disk_look_up(text, no_disk):
    with pytest.raises(hub.HubError) as refused:
        hub.parse(text)
    assert str(refused.value) == hub.NOT_A_HUB_FILE  # the same words whatever the server holds


@pytest.mark.parametrize("text, repo, path, revision", [
    ("owner/repo/adapter.safetensors", "owner/repo", "adapter.safetensors", None),
    (" me/my-loras/v2/drums_90bpm.safetensors ", "me/my-loras", "v2/drums_90bpm.safetensors", None),
    ("me/my.loras/a b.safetensors@refs/pr/3", "me/my.loras", "a b.safetensors", "refs/pr/3"),
])
def test_a_hub_file_is_read_from_the_text_alone(text, repo, path, revision, no_disk):
    assert hub.parse(text) == hub.HubFile(repo, path, revision)


class StandInHub:
    """huggingface_hub's metadata and download calls over files held in memory; records every call."""

    def __init__(self, monkeypatch, files: dict[str, int]):
        self.files, self.calls = files, []
        monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", self.metadata)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", self.download)

    def metadata(self, url, token=None, **kwargs):
        self.calls.append(("size", url, token))
        name = url.split("/resolve/")[0].rsplit("/", 2)[-2:] + url.split("/resolve/")[1].split("/")[1:]
        size = self.files.get("/".join(name))
        if size is None:
            raise errors.RemoteEntryNotFoundError("404 Client Error: Entry not found for url " + url,
                                                  response=SimpleNamespace(headers={}, status_code=404, request=None))
        return SimpleNamespace(size=size, commit_hash="c0ffee" * 6 + "c0ff")

    def download(self, repo_id, filename, revision=None, token=None, local_dir=None, **kwargs):
        self.calls.append(("download", f"{repo_id}/{filename}@{revision}", token))
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"\0" * self.files[f"{repo_id}/{filename}"])
        return str(out)


def test_a_file_over_the_cap_is_refused_before_any_download(tmp_path, monkeypatch):
    stand_in = StandInHub(monkeypatch, {"owner/repo/huge.safetensors": hub.HUB_FILE_CAP + 1})
    with pytest.raises(hub.HubError, match=r"owner/repo/huge.safetensors is 257 MB; the studio fetches adapters of "
                                           r"up to 256 MB from the Hub: pick a smaller adapter"):
        hub.HubFiles(tmp_path).fetch(hub.parse("owner/repo/huge.safetensors"))
    assert [kind for kind, *_ in stand_in.calls] == ["size"] and not any(tmp_path.iterdir())


def test_a_file_is_fetched_at_the_sized_commit_without_the_hosts_token(tmp_path, monkeypatch):
    stand_in = StandInHub(monkeypatch, {"owner/repo/dir/drums.safetensors": 1000})
    file = hub.HubFiles(tmp_path).fetch(hub.parse("owner/repo/dir/drums.safetensors@v2"))
    assert file.name == "drums.safetensors" and file.stat().st_size == 1000 and file.parent.parent == tmp_path
    (kind, url, token), (kind2, what, token2) = stand_in.calls
    assert "/owner/repo/resolve/v2/dir/drums.safetensors" in url and what.endswith("@" + "c0ffee" * 6 + "c0ff")
    assert token is False and token2 is False  # never the host's login
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([file.parent.name, file.name])  # no staging left
    assert hub.HubFiles(tmp_path).fetch(hub.parse("owner/repo/dir/drums.safetensors@v2")) == file
    assert [kind for kind, *_ in stand_in.calls].count("download") == 1  # the second time from the cache


def test_the_host_may_lend_its_login_to_visitors(tmp_path, monkeypatch):
    stand_in = StandInHub(monkeypatch, {"owner/gated/a.safetensors": 10})
    hub.HubFiles(tmp_path, token=None).fetch(hub.parse("owner/gated/a.safetensors"))
    assert {token for *_, token in stand_in.calls} == {None}  # None: huggingface_hub sends HF_TOKEN


def test_the_cache_keeps_the_recently_used_files_within_its_bytes(tmp_path, monkeypatch):
    StandInHub(monkeypatch, {f"owner/repo/{k}.safetensors": 400 for k in "abcd"})
    files = hub.HubFiles(tmp_path, keep_bytes=1000)
    a = files.fetch(hub.parse("owner/repo/a.safetensors"))
    b = files.fetch(hub.parse("owner/repo/b.safetensors"))
    past = time.time() - 60
    os.utime(a, (past, a.stat().st_mtime))
    os.utime(b, (past - 60, b.stat().st_mtime))  # b is the least recently used
    mtime = a.stat().st_mtime_ns
    assert files.fetch(hub.parse("owner/repo/a.safetensors")) == a and a.stat().st_mtime_ns == mtime  # the engine
    # knows a file by path, size and mtime: reusing it must not make the engine read it again
    c = files.fetch(hub.parse("owner/repo/c.safetensors"))
    assert a.exists() and c.exists() and not b.exists() and not b.parent.exists()
    assert sum(p.stat().st_size for p in tmp_path.rglob("*.safetensors")) <= 1000


@pytest.mark.parametrize("error, said", [
    (errors.GatedRepoError, "is not a public repository on Hugging Face (it does not exist, is private or is gated)"),
    (errors.RepositoryNotFoundError, "is not a public repository"),
    (errors.RevisionNotFoundError, "has no revision"),
    (errors.RemoteEntryNotFoundError, "has no file x.safetensors"),
])
def test_hub_refusals_are_one_sentence(tmp_path, monkeypatch, error, said):
    def fail(url, token=None, **kwargs):
        raise error("401 Client Error for url https://huggingface.co/owner/repo/resolve/main/x.safetensors",
                    response=SimpleNamespace(headers={}, status_code=401, request=None))
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", fail)
    with pytest.raises(hub.HubError) as refused:
        hub.HubFiles(tmp_path).fetch(hub.parse("owner/repo/x.safetensors"))
    text = str(refused.value)
    assert said in text and text.count(". ") == 0 and text.endswith(".")


def test_offline_the_real_calls_say_so_in_one_sentence_and_send_nothing(tmp_path, monkeypatch):
    """No stand-in: huggingface_hub's own calls, with its offline switch (no request leaves)."""
    monkeypatch.setenv("HF_TOKEN", "hf_host_secret")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(hub.HubError) as refused:
        hub.HubFiles(tmp_path).fetch(hub.parse("owner/repo/x.safetensors"))
    assert str(refused.value) == ("owner/repo/x.safetensors cannot be fetched: this studio does not reach "
                                  "Hugging Face; upload the file instead.")
    assert not any(tmp_path.iterdir())
