"""A visitor of a shared studio is a stranger: tried through the page's own API, as a script would
(gradio_client and plain HTTP against `app.py --fake-engine` on localhost, no browser).

A visitor cannot make the server read its own files through the LoRA panel (a typed path is
refused the same way whether the file exists or not; Gradio refuses a server path handed as an
upload), fetches Hub files without the host's token and never one over the cap (a stand-in Hub
on localhost, reached through HF_ENDPOINT, records every request), gets 128-bit session ids
(old short ids still open), sees no server path in any status, gets one sentence and loses
nothing when the disk is full (a small tmpfs), and cannot starve other visitors by queueing takes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import soundfile as sf

gradio_client = pytest.importorskip("gradio_client")

from studio import fair, hub, session  # noqa: E402
from studio.fake_engine import FakeEngine  # noqa: E402
from studio.ui import StudioConfig, _Handlers, build_ui  # noqa: E402
from tests.browser.helpers import free_port, start_app  # noqa: E402
from tests.conftest import GOLDEN, ROOT  # noqa: E402

ADAPTER = GOLDEN / "sa3_small_tiny" / "lora_lora.safetensors"  # a .safetensors file on the server
PATIENCE = 60.0  # seconds a condition may take before the test fails (a hang guard, not a measurement)
PAINTED = json.dumps({"regions": [{"start": 1.0, "end": 1.5}]})


class StandInHub:
    """A local Hugging Face Hub serving ``files`` (repo/path -> bytes, or an int: a size it only
    claims); records (method, path, Authorization header) of every request."""

    def __init__(self, files: dict):
        self.files, self.requests = files, []
        hub_ = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body: bool):
                hub_.requests.append((self.command, self.path, self.headers.get("authorization")))
                parts = self.path.split("/")  # /owner/repo/resolve/<revision>/<path...>
                data = hub_.files.get("/".join(parts[1:3] + parts[5:])) if parts[3:4] == ["resolve"] else None
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                size = data if isinstance(data, int) else len(data)
                self.send_response(200)
                self.send_header("X-Repo-Commit", "c0ffee" * 6 + "c0ff")
                self.send_header("ETag", f'"{hashlib.sha256(str(data).encode()).hexdigest()}"')
                self.send_header("Content-Length", str(size))
                self.end_headers()
                if body and not isinstance(data, int):
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """The studio over the fake engine, its Hub the stand-in, HF_TOKEN set (the host's login):
    (url, sessions folder, stand-in hub)."""
    stand_in = StandInHub({"owner/repo/small.safetensors": b"\0" * 4096,
                           "owner/repo/huge.safetensors": hub.HUB_FILE_CAP + 2**20})
    sessions = tmp_path_factory.mktemp("sessions")
    proc, url = start_app(sessions, env={"HF_ENDPOINT": stand_in.url, "HF_TOKEN": "hf_host_secret",
                                         "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"})
    yield url, sessions, stand_in
    proc.terminate()
    proc.wait(timeout=30)
    stand_in.close()


def visitor(url: str, address: str | None = None):
    """A new visitor (a gradio_client session); ``address``: the client address it appears from
    (the studio trusts X-Forwarded-For from localhost, as uvicorn does from a local proxy)."""
    return gradio_client.Client(url, verbose=False, headers={"X-Forwarded-For": address} if address else None)


def load_demo(client) -> str:
    """Load a demo clip as this visitor; returns the new session's id."""
    out = client.predict(painter="{}", name="pads-am.wav", api_name="/load_demo")
    assert out[1]["value"].startswith("Loaded")
    return out[4]


def load_clip(client, folder: Path) -> str:
    """Upload a 2 s clip as this visitor (shorter than the demos: each take's views are drawn); its session's id."""
    clip = folder / "clip.wav"
    if not clip.exists():
        sf.write(clip, 0.1 * np.random.default_rng(0).standard_normal((2 * 44100, 2)), 44100, subtype="FLOAT")
    out = client.predict(painter="{}", path=gradio_client.handle_file(str(clip)), api_name="/load_upload")
    assert out[1]["value"].startswith("Loaded")
    return out[4]


def generate_args(**changes) -> dict:
    args = dict(show_previews=False, painter=PAINTED, model="small-music", prompt="pads", seed=1, random_seed=False,
                n_takes=1, steps=4, strength=1.0, crossfade=30, cfg=1.0, apg=1.0, negative="", guide=None,
                context="auto", match=False, lora1=None, lora1_hub="", lora1_strength=1.0, lora2=None, lora2_hub="",
                lora2_strength=1.0)
    return {**args, **changes}


def generate(client, **changes):
    """Generate as this visitor; returns (status text, takes' choices)."""
    out = client.predict(**generate_args(**changes), api_name="/generate")
    return out[1]["value"], tuple(label for label, _ in out[2].get("choices", []))


def call(url: str, api: str, data: list, query: str = "") -> tuple[str, object]:
    """A plain HTTP call of endpoint ``api`` (Gradio's /call route): (event kind, its data)."""
    event = httpx.post(f"{url}gradio_api/call/{api}{query}", json={"data": data}).json()["event_id"]
    text = httpx.get(f"{url}gradio_api/call/{api}/{event}", timeout=PATIENCE).text
    kind, data = re.findall(r"^event: (\w+)\ndata: (.*)$", text, re.M)[-1]
    return kind, json.loads(data)


# ---- the LoRA panel reads no file of the server's ----------------------------------------------------

def test_a_server_path_in_the_lora_field_is_refused_the_same_whether_it_exists_or_not(studio):
    url, sessions, stand_in = studio
    client = visitor(url)
    load_demo(client)
    before = len(stand_in.requests)
    said = {text: generate(client, lora1_hub=text) for text in
            [str(ADAPTER), str(ADAPTER.with_name("missing.safetensors")), "../../tests/fixtures/x.safetensors",
             "~/.cache/huggingface/hub/adapter.safetensors", str(sessions / "hub-cache" / "x.safetensors")]}
    assert set(said.values()) == {("⚠️ " + hub.NOT_A_HUB_FILE, ())}  # identical, and no take was made
    assert len(stand_in.requests) == before  # refused before any request


def test_a_typed_path_reaches_neither_the_disk_nor_the_engine(tmp_path, monkeypatch):
    """The handler itself, the filesystem watched: the typed path is never looked up, nothing reaches the engine."""
    engine = FakeEngine()
    cfg = StudioConfig(sessions=tmp_path, default_model="small-music")
    h = _Handlers(engine, cfg, {m.name: m for m in engine.models()})
    from studio.painter import read
    s = session.set_source(session.create(tmp_path), (0.1 * np.ones((2, 44100 * 3))).astype(np.float32), "src")
    asked, stat = [], os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: asked.append(str(p)) or stat(p, *a, **k))
    monkeypatch.setattr(engine, "edit", lambda *a, **k: pytest.fail("the engine was called"))
    statuses = set()
    for text in (str(ADAPTER), str(ADAPTER.with_name("missing.safetensors"))):
        out = h.generate(s.id, read(PAINTED), "small-music", "pads", 1, False, 1, 4, 1.0, 30.0,
                         lora1_hub=text, request=SimpleNamespace(session_hash="tab"), progress=lambda *a, **k: None)
        statuses.add(out[2]["value"])
    assert statuses == {"⚠️ " + hub.NOT_A_HUB_FILE}
    assert not [p for p in asked if "safetensors" in p]


def test_gradio_refuses_a_server_path_handed_as_an_uploaded_file(studio):
    url, sessions, _ = studio
    before = sorted(sessions.iterdir())
    lora = {"path": str(ADAPTER), "meta": {"_type": "gradio.FileData"}}
    source = [False, "{}", "pads", 2, 1, False, "small-music", 4, 1.0, 1.0, ""]
    assert call(url, "generate_source", source + [lora, "", 1.0, None, "", 1.0])[0] == "error"
    assert sorted(sessions.iterdir()) == before  # nothing was generated or stored
    # the same file uploaded is taken: the refusal above was for the path, not the payload's form
    with ADAPTER.open("rb") as f:
        uploaded = httpx.post(f"{url}gradio_api/upload", files={"files": (ADAPTER.name, f)}).json()[0]
    kind, out = call(url, "generate_source", source + [{**lora, "path": uploaded}, "", 1.0, None, "", 1.0])
    assert kind == "complete" and out[2]["value"].startswith("Generated a 2 s source")


# ---- the Hub, for visitors: no host token, sized first ----------------------------------------------

def test_a_hub_adapter_is_fetched_without_the_hosts_token_and_one_over_the_cap_never_downloaded(studio):
    url, _, stand_in = studio
    client = visitor(url)
    load_demo(client)
    stand_in.requests.clear()
    said, takes = generate(client, lora1_hub="owner/repo/small.safetensors", lora1_strength=0.5)
    (take,) = takes
    assert said.startswith("1 take ready") and take.startswith("Take 1 · seed 1 · 0.9–1.6s · seams ≤")
    assert take.endswith(" · LoRA small ×0.5")
    assert {m for m, *_ in stand_in.requests} == {"HEAD", "GET"}
    assert {token for *_, token in stand_in.requests} == {None}  # HF_TOKEN is set on the server: never sent
    stand_in.requests.clear()
    said, takes = generate(client, lora1_hub="owner/repo/huge.safetensors")
    assert said == ("⚠️ owner/repo/huge.safetensors is 257 MB; the studio fetches adapters of up to 256 MB from "
                    "the Hub: pick a smaller adapter, or upload it from your computer.")
    assert [m for m, path, _ in stand_in.requests if "huge" in path] == ["HEAD"] and len(takes) == 1


# ---- session ids ---------------------------------------------------------------------------------------

def test_new_session_ids_carry_128_bits_and_old_short_ids_still_open(studio):
    url, sessions, _ = studio
    sid = load_demo(visitor(url))
    assert re.fullmatch(r"[0-9a-f]{32}", sid) and (sessions / sid).is_dir()
    old = sessions / "00c0ffee00ab"  # a session made before, with a 12-hex-digit id
    shutil.copytree(sessions / sid, old)
    (old / "session.json").write_text((old / "session.json").read_text().replace(sid, old.name))
    kind, out = call(url, "open", ["{}"], f"?session={old.name}")
    assert kind == "complete" and out[2]["value"] == f"Welcome back: session {old.name} restored."
    assert out[4].startswith("**Version 1 of 1**")
    kind, out = call(url, "open", ["{}"], "?session=../../etc")
    assert "is not a session id" in out[2]["value"]


# ---- no server path in anything a visitor reads ---------------------------------------------------

def test_no_status_names_a_server_path(studio, tmp_path):
    url, sessions, _ = studio
    client = visitor(url)
    shown = []
    (tmp_path / "broken.wav").write_bytes(b"not audio" * 100)
    shown += client.predict(painter="{}", path=gradio_client.handle_file(str(tmp_path / "broken.wav")),
                            api_name="/load_upload")
    load_demo(client)
    for changes in [{}, {"prompt": "[fail:gated] pads"}, {"prompt": "[fail:nan] pads"}, {"lora1_hub": "/etc/x"},
                    {"painter": json.dumps({"regions": [{"start": 9.9, "end": 30}]})},
                    {"lora1_hub": "owner/repo/missing.safetensors"}, {"n_takes": 2}]:
        shown += client.predict(**generate_args(**changes), api_name="/generate")
    shown += client.predict(painter="{}", take_id="t001", api_name="/accept")
    shown += client.predict(painter="{}", take_id="t001", api_name="/undo")
    shown += client.predict(take_id="t002", api_name="/seam_borders")
    shown += client.predict(fmt="wav24", what="t002", api_name="/export_1")
    painters = [x for x in shown if isinstance(x, str) and x.startswith('{"track"')]
    files = [x for x in shown if isinstance(x, str) and Path(x).is_file()]  # the exported file, as Gradio hands it
    text = json.dumps([x for x in shown if x not in files], ensure_ascii=False)  # the painters' media URLs too
    for secret in {str(sessions), str(sessions.resolve()), str(ROOT), "/tmp/"}:
        assert secret not in text
    assert "could not be read as audio" in text and "HF_TOKEN" in text and "has no file missing.safetensors" in text
    assert "Exported" in text and "this page's address opens it" in text  # the flow did reach every status
    assert painters and all('"/session-file/' in p for p in painters)


# ---- a full disk -------------------------------------------------------------------------------------

@pytest.fixture
def tmpfs(tmp_path):
    """A 4 MB tmpfs (the sessions folder of a studio on a nearly full disk); unmounted after the test."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({mounted.stderr.decode().strip()})")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_one_sentence_and_loses_nothing(tmpfs, tmp_path):
    proc, url = start_app(tmpfs, env={"HF_HUB_OFFLINE": "1"})
    try:
        client = visitor(url)
        sid = load_clip(client, tmp_path)
        assert generate(client)[0].startswith("1 take ready")
        stat = os.statvfs(tmpfs)
        filler = tmpfs / "filler"  # the disk fills up: room for a session.json, not for a take
        filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 64 * 1024))
        said, takes = generate(client, seed=2)
        assert said == "⚠️ " + session.DISK_FULL and len(takes) == 1
        assert not [p for p in tmpfs.rglob("*") if p.name.startswith(".tmp-")]  # nothing half-written
        filler.unlink()
        kind, out = call(url, "open", ["{}"], f"?session={sid}")
        assert out[2]["value"] == f"Welcome back: session {sid} restored."
        said, takes = generate(client, seed=3)
        assert said.startswith("1 take ready") and [t.split(" · ")[:2] for t in takes] == [["Take 1", "seed 1"],
                                                                                          ["Take 2", "seed 3"]]
        s = session.open_session(tmpfs, sid)
        assert [t.seed for t in s.takes] == [1, 3] and session.audio(s, "t001").shape == (2, 2 * 44100)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---- fair sharing ------------------------------------------------------------------------------------

class HeldEngine(FakeEngine):
    """The fake engine, logging each take's prompt as it starts; the take prompted "hold" runs until released."""

    def __init__(self):
        super().__init__()
        self.started, self.release = [], threading.Event()

    def edit(self, req, progress=None, preview=None):
        self.started.append(req.prompt)
        if req.prompt == "hold":
            assert self.release.wait(PATIENCE)
        return super().edit(req, progress, preview)


def until(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


@pytest.fixture
def shared(tmp_path):
    """A studio in this process over HeldEngine (so the test sees the gate and the engine): (url, engine, gate)."""
    engine = HeldEngine()
    gates = set(fair._QUEUES)
    demo = build_ui(engine, StudioConfig(sessions=tmp_path, default_model="small-music"))
    gate = next(q for q in fair._QUEUES if q not in gates)
    demo.queue(default_concurrency_limit=4).launch(server_port=free_port(), prevent_thread_lock=True,
                                                   allowed_paths=[str(tmp_path)], quiet=True)
    yield demo.local_url, engine, gate
    engine.release.set()
    demo.close()


def test_one_sessions_twenty_takes_do_not_delay_another_sessions_take_past_its_turn(shared, tmp_path):
    url, engine, gate = shared
    a, a2, a3, b = (visitor(url, "10.0.0.1"), visitor(url, "10.0.0.1"), visitor(url, "10.0.0.1"),
                    visitor(url, "10.0.0.2"))
    sid_a, sid_a2, sid_a3, sid_b = (load_clip(v, tmp_path) for v in (a, a2, a3, b))
    running = a.submit(**generate_args(prompt="hold"), api_name="/generate")
    until(lambda: engine.started == ["hold"], "the first take runs")
    script = [a.submit(**generate_args(prompt=f"a{k}"), api_name="/generate") for k in range(1, 20)]
    until(lambda: sum(j.done() for j in script) == 16 and gate.held()[sid_a] == 4, "A's surplus is refused")
    refused = {j.result()[1]["value"] for j in script if j.done()}
    assert refused == {"⚠️ This session already has 4 takes waiting or running, the most one session may queue "
                       "so that every visitor gets a turn; wait for one to finish."}
    lone = b.submit(**generate_args(prompt="b"), api_name="/generate")
    until(lambda: gate.held()[sid_b] == 1, "B's take waits at the gate")
    until(lambda: "waiting for its turn: 1 take ahead (1 of other visitors)" in _progress(lone), "B hears why")
    other = [a2.submit(**generate_args(prompt=f"c{k}"), api_name="/generate") for k in range(4)]
    until(lambda: gate.held()[sid_a2] == 4, "another session from A's address queues its share")
    said = generate(a3, prompt="d")[0]  # a third session from that address: over the client's cap
    assert said.startswith("⚠️ Your address already has 8 takes waiting or running")
    engine.release.set()
    for job in [running, lone, *other, *script]:
        job.result(timeout=PATIENCE)
    # B's take starts right after the one running when it arrived; then the sessions take turns (A2, a
    # newcomer, before A, which was served last)
    assert [prompt[0] for prompt in engine.started] == ["h", "b", "c", "a", "c", "a", "c", "a", "c"]
    assert lone.result()[1]["value"].startswith("1 take ready") and sid_a3 not in gate.held()


def _progress(job) -> str:
    data = job.status().progress_data or []
    return " ".join(unit.desc or "" for unit in data)
