"""What every panel of the page shares: the status line, the problems it turns into sentences, an
engine Progress that drives Gradio's bar, and the URLs of a session's files.

``studio.ui`` builds the page; its panels (``ui_tempo``, ``ui_loops``) and it import this module,
and this module imports none of them.
"""
from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import gradio as gr

from studio import session
from studio.api import Cancelled, EngineError
from studio.audio_io import AudioError

PROBLEMS = (AudioError, EngineError, ValueError, KeyError)  # session.SessionError, hub.HubError are ValueErrors
MEDIA_ROUTE = "/session-file"  # /session-file/<session id>/<file in it>: a session's audio and views


def file_url(path: Path) -> str:
    """The page's URL of a file stored in a session: keyed by the session's id (the key a visitor
    already holds), never by the server's path, which no visitor sees."""
    sid, rel = session.in_session(path)
    return f"{MEDIA_ROUTE}/{sid}/{urllib.parse.quote(rel)}"


def media_routes(root: Path) -> list:
    """The Starlette route serving ``file_url``'s URLs from the sessions folder ``root`` (with
    range requests, for seeking); an unknown id or file is 404, whether or not it exists."""
    from starlette.responses import FileResponse, PlainTextResponse
    from starlette.routing import Route

    def serve(request):
        try:
            path = session.served_file(root, request.path_params["sid"], request.path_params["rel"])
        except (OSError, ValueError):
            return PlainTextResponse("Not found.", status_code=404)
        return FileResponse(path, headers={"Cache-Control": "no-store"})
    return [Route(MEDIA_ROUTE + "/{sid}/{rel:path}", serve, methods=["GET", "HEAD"])]


def engine_progress(progress, flag: Path, k: int, n: int, encoded: list | None = None):
    """An engine Progress for take ``k`` of ``n`` that drives gr.Progress and raises Cancelled once
    the flag file exists; ``encoded`` collects the frames of encoding work the engine reports
    (none: already encoded)."""
    weights = {"load": 0.0, "encode": 0.05, "steps": 0.1, "decode": 0.95}

    def report(stage: str, done: int, total: int) -> None:
        if flag.exists():
            raise Cancelled()
        if stage == "queue":
            progress(0.0, desc=f"Waiting for the engine: {done} job{'s' if done > 1 else ''} ahead")
            return
        if stage == "encode" and done < total and encoded is not None:
            encoded.append(total)
        span = 0.85 if stage == "steps" else 0.05
        frac = (k + weights.get(stage, 0) + span * done / max(total, 1)) / n
        progress(min(frac, 1.0), desc=f"Take {k + 1}/{n} · {stage} {done}/{total}")
    return report


def status(msg):
    """The status line's update: an exception becomes its sentence styled as an error (class
    `error`, see app.STUDIO_CSS), a string a plain message (class `ok`); gr.update() passes."""
    if isinstance(msg, dict):
        return msg
    if isinstance(msg, BaseException):
        return gr.update(value=f"⚠️ {sentence(msg)}", elem_classes=["error"])
    return gr.update(value=msg, elem_classes=["ok"])


# An absolute path in an error's text (an OSError's, a library's), not a URL's: shown by its last part only
_SERVER_PATH = re.compile(r"(?<![\w.:/])(?:/[^/\s'\"“”]+)+/([^/\s'\"“”]+)")


def sentence(err) -> str:
    """An error as the status line says it: one sentence, with no path of the server's in it."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    text = _SERVER_PATH.sub(r"\1", text)
    return text if text.endswith((".", "!", "?")) else text + "."
