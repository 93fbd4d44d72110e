"""The engine on Ray Serve: the studio's page in one process, its engines as replicas anywhere.

``RayEngine`` implements the ``Engine`` protocol (studio/api.py) over a Serve deployment of
``EngineReplica``s, each wrapping one local engine (``RealEngine`` on a GPU or CPU worker, or the
``FakeEngine``). The page calls the deployment through a Serve handle; nothing else changes.

* A job streams: the replica's ``run`` is an async generator that yields the local engine's
  progress and previews as they happen and the Take last. The page's Progress callable raising
  Cancelled cancels the stream; the replica then stops its engine at its next progress report
  (within a step).
* Models: Serve's model multiplexing (one model per replica) routes a request to a replica that
  holds its model; the local engine frees the old model before loading a new one.
* Capacity: each replica runs one job at a time (``max_ongoing_requests=1``, so a job never waits
  inside a busy replica while another is free); the page admits ``slots`` (= replicas) jobs at
  once and the rest hear their place in its queue.
* Faults: a job whose replica dies (a lost worker, a GPU error) runs again on another replica
  (the same request and seed make the same take); the Take only arrives whole, so nothing is
  half-stored. After ``ATTEMPTS`` lost replicas the musician gets one sentence.
* Encoded tracks stay in each replica's cache (keyed by model and track, as in ``RealEngine``):
  nothing is shipped back and forth, and a take never depends on which machine encoded its track.
* LoRA files live on the page's disk: their bytes go to the object store once per content
  (SHA-256) and each replica keeps a content-addressed copy.

This is the only module that imports ray; app.py imports it only for ``--ray``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import ray
from ray import serve
from ray.exceptions import RayActorError

from studio.api import (Cancelled, EditRequest, EngineError, Estimate, GenerateRequest, ModelInfo, Progress,
                        PreviewSink, Take, report)
from studio.jobs import JobQueue

log = logging.getLogger(__name__)

APP = "sa3-studio"        # the Serve application (one per cluster: a second page would replace it)
DEPLOYMENT = "EngineReplica"
ATTEMPTS = 3              # replicas a job may lose before the musician is told
RETRY_SECONDS = 0.5       # wait before the n-th retry: n times this (the router learns of the dead replica)
LORA_FILES = 8            # LoRA files the page keeps in the object store (and each replica on disk)
LOST = ("The engine making this take stopped before it was done ({n}: a lost worker or a GPU error), so no "
        "take was made; try again, and if it happens again ask the host to check the Ray cluster.")
ROOT = Path(__file__).resolve().parent.parent
# What a joined cluster's workers need of the checkout (the code, not its tests, venv or sessions).
SHIP_EXCLUDES = [".git", ".venv", "tests", "sessions", "assets", "bench/results", "**/__pycache__"]


class EngineReplica:
    """One Serve replica: a local engine made by ``make_engine()`` (a picklable callable, e.g.
    ``functools.partial(RealEngine, precision="auto")``), one job at a time."""

    def __init__(self, make_engine: Callable[[], object]):
        self.engine = make_engine()
        self.loras = Path(tempfile.gettempdir()) / "sa3-studio-loras"

    @serve.multiplexed(max_num_models_per_replica=1)
    async def _model(self, name: str) -> str:
        """Registers ``name`` as this replica's model, so the router sends its requests here; the
        engine loads it inside the job (streaming "load" progress), freeing the old model first."""
        return name

    async def run(self, method: str, args: tuple, previews: bool, loras: dict):
        """Streams ``engine.<method>(*args)``: ("progress", stage, done, total) and ("preview", Preview)
        events while it runs, then ("done", result, learnt) or ("raise", exception)."""
        yield ("replica", serve.get_replica_context().replica_id.to_full_id_str())
        model = serve.get_multiplexed_model_id()
        if model:
            await self._model(model)
        if loras:
            args = (await self._local_loras(args[0], loras),) + args[1:]
        args = tuple(_writable(a) for a in args)
        call = getattr(self.engine, method)
        async for event in _streamed(lambda progress, preview: call(*args, progress, **(
                {"preview": preview if previews else None} if method in ("edit", "generate") else {}))):
            if event[0] == "done":
                result = event[1]
                if isinstance(result, Take):  # the page has the request (and its source audio): not sent back
                    result = dataclasses.replace(result, request=None)
                made_on = self.engine.made_on(model) if model else {}
                yield ("done", result, {"made_on": made_on, **_learnt(self.engine)})
            else:
                yield event

    async def _local_loras(self, req, loras: dict):
        """``req`` with each shipped LoRA (path -> (sha256, name, ObjectRef)) read from this replica's
        content-addressed copy, fetched from the object store the first time."""
        specs = []
        for spec in req.loras:
            if spec.path not in loras:  # a Hugging Face path: the replica resolves it itself
                specs.append(spec)
                continue
            sha, name, ref = loras[spec.path]
            local = self.loras / sha / name
            if not local.is_file():
                local.parent.mkdir(parents=True, exist_ok=True)
                part = local.with_suffix(f".{os.getpid()}.part")
                part.write_bytes(await ref)
                part.replace(local)  # atomic: a half-written copy is never read
            specs.append(dataclasses.replace(spec, path=str(local)))
        return dataclasses.replace(req, loras=tuple(specs))


async def _streamed(call):
    """Runs ``call(progress, preview)`` in a thread and yields its events as they happen, then
    ("done", result) or ("raise", exception). When the consumer stops (the page cancelled the
    stream), the next progress report inside ``call`` raises Cancelled: its work stops there."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def put(event):
        loop.call_soon_threadsafe(events.put_nowait, event)

    def progress(stage, done, total):
        if stop.is_set():
            raise Cancelled()
        put(("progress", stage, done, total))

    def work():
        try:
            put(("done", call(progress, lambda p: put(("preview", p)))))
        except Exception as e:  # noqa: BLE001 - sent to the page as itself (a sentence, never a traceback)
            put(("raise", e))
    threading.Thread(target=work, name="engine-job", daemon=True).start()
    try:
        while True:
            event = await events.get()
            yield event
            if event[0] in ("done", "raise"):
                return
    finally:
        stop.set()


class _GiveWay(Cancelled):
    """Encode-ahead stepping aside for a job that waits for a slot."""


def _writable(value):
    """``value`` with its audio arrays writable copies: Ray hands arrays over read-only (zero-copy from
    the object store), which torch.from_numpy warns about."""
    if isinstance(value, np.ndarray):
        return value if value.flags.writeable else value.copy()
    if dataclasses.is_dataclass(value):
        arrays = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        arrays = {k: v.copy() for k, v in arrays.items() if isinstance(v, np.ndarray) and not v.flags.writeable}
        return dataclasses.replace(value, **arrays) if arrays else value
    return value


def _learnt(engine) -> dict:
    """What ``engine`` learnt of its machine's speed, so the page's estimates follow the replicas
    (RealEngine's per-unit costs; the fake's last take)."""
    costs = getattr(engine, "_costs", None)
    if costs is not None:
        return {"costs": dict(costs._per_unit)}
    return {"last_seconds": getattr(engine, "_last_seconds", None)}


def _learn(engine, learnt: dict) -> None:
    if "costs" in learnt and hasattr(engine, "_costs"):
        engine._costs._per_unit.update(learnt["costs"])
    elif learnt.get("last_seconds") is not None:
        engine._last_seconds = learnt["last_seconds"]


class RayEngine:
    """``Engine`` over a Serve deployment of ``EngineReplica``s. ``local`` is an engine of the
    replicas' kind on the page that never loads a model: it lists the models and estimates costs
    (with what the replicas learnt). ``slots``: jobs run at once (the replicas); ``gpus``: whether
    the replicas run on GPUs."""

    def __init__(self, handle, local, slots: int, close: Callable[[], None] = lambda: None, gpus: bool = False):
        self.handle, self.local, self.slots, self.gpus = handle, local, slots, gpus
        self._jobs = JobQueue(slots)
        self._made_on = threading.local()  # per thread: what the replica that made its last take runs
        self._loras: OrderedDict[tuple, tuple] = OrderedDict()  # (path, size, mtime) -> (sha, name, ref)
        self._lock = threading.Lock()
        self._close = close
        self.running: dict[int, str] = {}  # thread id -> actor name of the replica running its job now

    def models(self) -> list[ModelInfo]:
        return self.local.models()

    def estimate(self, model: str, track_seconds: float, spans, steps: int | None = None,
                 context_seconds: float | None = None) -> Estimate:
        return self.local.estimate(model, track_seconds, spans, steps, context_seconds)

    def made_on(self, model: str) -> dict:
        """What the replica that made this thread's last take of ``model`` runs (precision, device...)."""
        return getattr(self._made_on, "by_model", {}).get(model, {"engine": "ray"})

    def prepare(self, name: str, progress: Optional[Progress] = None) -> ModelInfo:
        return self._job("prepare", name, (name,), progress)

    def generate(self, req: GenerateRequest, progress: Optional[Progress] = None,
                 preview: Optional[PreviewSink] = None) -> Take:
        return dataclasses.replace(self._job("generate", req.model, (req,), progress, preview), request=req)

    def edit(self, req: EditRequest, progress: Optional[Progress] = None,
             preview: Optional[PreviewSink] = None) -> Take:
        return dataclasses.replace(self._job("edit", req.model, (req,), progress, preview), request=req)

    def encode_ahead(self, model: str, audio, progress: Optional[Progress] = None) -> bool:
        """The replica holding ``model`` encodes ``audio`` for its own cache; gives way (False) as soon
        as a job waits for a slot here. (Another replica may serve the edit and encode it again.)"""
        def give_way(stage, done, total):
            if self._jobs.waiting():
                raise _GiveWay()
            report(progress, stage, done, total)
        try:
            return self._job("encode_ahead", model, (model, audio), give_way)
        except _GiveWay:
            return False

    def close(self) -> None:
        """Take the deployment down (and the local cluster, if this process started it)."""
        self._close()

    def _job(self, method: str, model: str, args: tuple, progress: Optional[Progress],
             preview: Optional[PreviewSink] = None):
        """``method(*args)`` on a replica holding ``model``, in this page's turn; run again on another
        replica when its replica is lost (at most ATTEMPTS times)."""
        loras = self._ship_loras(args[0]) if method in ("edit", "generate") else {}
        with self._jobs.turn(progress):
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return self._stream(method, model, args, progress, preview, loras)
                except RayActorError as e:  # ActorDiedError, ActorUnavailableError
                    log.warning("replica lost during %s (attempt %d of %d): %s", method, attempt, ATTEMPTS,
                                str(e).splitlines()[0] if str(e) else type(e).__name__)
                    time.sleep(RETRY_SECONDS * attempt)
        raise EngineError(LOST.format(n=f"{ATTEMPTS} replicas in turn"))

    def _stream(self, method, model, args, progress, preview, loras):
        """One attempt: the replica's events handed to ``progress`` and ``preview`` as they come,
        then its result. Leaving early (Cancelled from ``progress``) cancels the replica's work."""
        stream = self.handle.options(stream=True, multiplexed_model_id=model).run.remote(
            method, args, preview is not None, loras)
        finished = False
        try:
            for event in stream:
                kind = event[0]
                if kind == "replica":
                    self.running[threading.get_ident()] = event[1]
                elif kind == "progress":
                    report(progress, *event[1:])
                elif kind == "preview" and preview is not None:
                    preview(event[1])
                elif kind == "raise":
                    finished = True
                    raise event[1]
                elif kind == "done":
                    finished = True
                    self._finish(model, event[2])
                    return event[1]
        finally:
            if not finished:
                stream.cancel()  # the replica's next progress report stops its work
            self.running.pop(threading.get_ident(), None)
        raise EngineError(LOST.format(n="its stream ended early"))

    def _finish(self, model: str, learnt: dict) -> None:
        if not hasattr(self._made_on, "by_model"):
            self._made_on.by_model = {}
        self._made_on.by_model[model] = learnt.pop("made_on")
        with self._lock:
            _learn(self.local, learnt)

    def _ship_loras(self, req) -> dict:
        """{path: (sha256, file name, ObjectRef)} for each LoRA of ``req`` that is a file on this disk:
        its bytes are put in the object store once per content (the replicas keep copies by SHA-256)."""
        shipped = {}
        for spec in req.loras:
            path = Path(spec.path).expanduser()
            if not path.is_file():
                continue  # a Hugging Face path, resolved by the replica (or refused there in one sentence)
            stat = path.stat()
            key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
            with self._lock:
                if key not in self._loras:
                    data = path.read_bytes()
                    self._loras[key] = (hashlib.sha256(data).hexdigest(), path.name, ray.put(data))
                    if len(self._loras) > LORA_FILES:
                        self._loras.popitem(last=False)
                self._loras.move_to_end(key)
                shipped[spec.path] = self._loras[key]
        return shipped


def deploy(make_engine: Callable[[], object], replicas: int, gpus: bool, cpus: float = 1.0):
    """A handle to ``replicas`` EngineReplicas of ``make_engine`` on the connected cluster: one GPU
    each when ``gpus``, else ``cpus`` CPUs each. Serve restarts a replica that dies."""
    options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": cpus}
    deployment = serve.deployment(EngineReplica, name=DEPLOYMENT).options(
        num_replicas=replicas, max_ongoing_requests=1, ray_actor_options=options,
        health_check_period_s=2, graceful_shutdown_timeout_s=5)
    serve.start(proxy_location="Disabled")  # the page calls the handle; no Serve HTTP is needed
    return serve.run(deployment.bind(make_engine), name=APP, route_prefix=None)


def connect(address: Optional[str], make_engine: Callable[[], object], local, replicas: Optional[int] = None,
            **init) -> RayEngine:
    """A RayEngine on the cluster at ``address`` ("auto": the one running on this machine; "host:port";
    "" or None: a new local cluster, advertised on loopback, shut down by ``close``). ``replicas``:
    default one per GPU of the cluster, else 1. ``init``: more ``ray.init`` arguments."""
    joined = bool(address)
    if joined:  # workers elsewhere need this checkout's code
        init.setdefault("runtime_env", {"working_dir": str(ROOT), "excludes": SHIP_EXCLUDES})
    else:
        init.setdefault("_node_ip_address", "127.0.0.1")
    ray.init(address=address if joined else "local", include_dashboard=False, **init)
    return start(make_engine, local, replicas, shutdown=not joined)


def start(make_engine: Callable[[], object], local, replicas: Optional[int] = None, cpus: Optional[float] = None,
          shutdown: bool = False) -> RayEngine:
    """A RayEngine over a new deployment of ``make_engine`` on the cluster this process is connected
    to: ``replicas`` of them (default one per GPU, else 1), one GPU each, or else ``cpus`` CPUs each
    (default: the cluster's CPUs shared among them). Its ``close`` deletes the deployment (and, with
    ``shutdown``, disconnects from Ray, which ends a local cluster this process started)."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    replicas = replicas or max(1, gpus)
    if gpus and replicas > gpus:
        raise SystemExit(f"--replicas {replicas} asks for more replicas than the cluster has GPUs ({gpus}); "
                         f"use --replicas {gpus} or fewer, or add GPU workers.")
    cpus = cpus or max(0.1, resources.get("CPU", 1) / replicas)
    handle = deploy(make_engine, replicas, gpus > 0, cpus)

    def close():
        serve.delete(APP)
        if shutdown:
            ray.shutdown()
    return RayEngine(handle, local, replicas, close, gpus > 0)


def healthy_replicas() -> int:
    """Engine replicas that are up and serving now (Serve starts a new one for each that dies)."""
    app = serve.status().applications.get(APP)
    states = app.deployments[DEPLOYMENT].replica_states if app and DEPLOYMENT in app.deployments else {}
    return states.get("RUNNING", 0)


def replica_actors() -> list[str]:
    """Names of the engine replicas' actors alive now (to find one by its actor, e.g. to kill it)."""
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and f"{APP}#{DEPLOYMENT}#" in a["name"]]
