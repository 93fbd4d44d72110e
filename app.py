"""SA3 Studio: `python app.py` locally, or app_file of a Hugging Face Space.

    python app.py                      # real engine, model picked for this machine
    python app.py --fake-engine        # no weights: a deterministic stand-in (used by the tests)
    python app.py --host 0.0.0.0 --port 7860 --share --sessions /data/sessions --keep-sessions-days 7
    python app.py --ray                # engines as Ray Serve replicas: one per GPU (or --replicas N)
    python app.py --ray auto           # ... on the Ray cluster already running here (`ray start --head`)
"""
from __future__ import annotations

try:  # Hugging Face ZeroGPU: `spaces` must be imported before torch initialises CUDA
    import spaces
except ImportError:
    spaces = None

import argparse
import atexit
import functools
import importlib.util
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from studio.audio_io import Limits
from studio.fair import PER_CLIENT, PER_SESSION


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--share", action="store_true", help="ask Gradio for a public share link")
    p.add_argument("--fake-engine", action="store_true", help="run over studio.fake_engine (no weights)")
    p.add_argument("--model", default=None, help="model to start with: small-music, small-sfx, medium, "
                   "a Hugging Face repo id or a local checkpoint folder (default: by hardware)")
    p.add_argument("--sessions", default=os.environ.get("SA3_SESSIONS", "sessions"),
                   help="folder of session folders (env SA3_SESSIONS; default ./sessions)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",  # models.precision.CHOICES
                   help="auto: bf16 where the device computes it natively, else fp32")
    p.add_argument("--keep-sessions-days", type=float, default=30.0,
                   help="delete sessions nobody opened or changed for this many days, at start-up and "
                   "every hour (default 30; 0 keeps them forever)")
    p.add_argument("--session-quota-mb", type=float, default=2048.0,
                   help="a session holding more than this takes no new clips or takes (default 2048; 0: no limit)")
    p.add_argument("--max-upload-mb", type=float, default=200.0)
    p.add_argument("--max-seconds", type=float, default=600.0, help="longest clip accepted")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the engines as a Ray Serve deployment: no ADDRESS starts a local cluster, "
                   "'auto' joins the one running on this machine, or give host:port / ray://host:10001")
    p.add_argument("--replicas", type=int, default=None,
                   help="with --ray: engine replicas (default one per GPU of the cluster, else 1)")
    p.add_argument("--hub-token-for-visitors", action="store_true",
                   help="fetch the LoRA files visitors name on Hugging Face with this server's login (HF_TOKEN), "
                   "so they reach what it can (gated, private repos); without it, public files only")
    p.add_argument("--jobs-per-session", type=int, default=PER_SESSION,
                   help="takes one session may have waiting or running (default %(default)s); sessions take turns")
    p.add_argument("--jobs-per-client", type=int, default=PER_CLIENT,
                   help="takes one client address may have waiting or running, whatever its sessions "
                   "(default %(default)s)")
    return p.parse_args(argv)


def detect_hardware() -> tuple[bool, str]:
    """(has CUDA, one line for the header). torch is imported only if installed."""
    if importlib.util.find_spec("torch") is None:
        return False, "Running on CPU."
    import torch
    if torch.cuda.is_available():
        return True, f"Running on {torch.cuda.get_device_name(0)}."
    return False, "Running on CPU: small models with SAME-S."


def make_engine(fake: bool, model: str | None = None, precision: str = "auto", ray: str | None = None,
                replicas: int | None = None):
    """(engine, note). Without --fake-engine, studio.engine.RealEngine; explain if it is missing.
    A ``model`` outside the catalogue (a repo id or a checkpoint folder) is offered too. ``ray``
    (an address, "" for a local cluster): the same engines as Ray Serve replicas (studio.ray_engine)."""
    factory, note = engine_factory(fake, model, precision)
    if ray is None:
        return factory(), note
    return ray_engine(factory, ray, replicas), note


def engine_factory(fake: bool, model: str | None, precision: str):
    """(a picklable callable that makes the engine, note)."""
    if fake:
        from studio.fake_engine import FakeEngine
        return FakeEngine, "Fake engine: regions are filled with test tones, no model is loaded."
    try:
        from studio.engine import RealEngine
    except Exception as e:  # the engine is optional until it lands; say why it is unavailable
        raise SystemExit(f"The SA3 engine could not be imported ({type(e).__name__}: {e}). "
                         "Install the requirements, or run `python app.py --fake-engine` to try the studio.") from None
    from studio.catalog import model_info
    extra = (model,) if model and model_info(model) is None else ()
    return functools.partial(RealEngine, extra_models=extra, precision=precision), ""


def ray_engine(factory, address: str, replicas: int | None):
    """A RayEngine whose replicas run ``factory()``; the page keeps one that loads nothing (it lists
    the models and estimates). Taken down when the studio stops."""
    if spaces is not None:
        raise SystemExit("--ray cannot run on a ZeroGPU Space (ZeroGPU lends its GPU only through spaces.GPU); "
                         "drop --ray there.")
    if replicas is not None and replicas < 1:
        raise SystemExit(f"--replicas must be 1 or more, got {replicas}.")
    try:
        from studio.ray_engine import connect
    except ImportError as e:
        raise SystemExit(f"--ray needs Ray Serve ({e}): pip install 'ray[serve]'.") from None
    engine = connect(address, factory, factory(), replicas)
    atexit.register(engine.close)
    # SIGTERM (a service manager, a terminal closing) exits through atexit, so the deployment and a
    # local cluster are taken down instead of leaving Ray's processes behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return engine


def gpu_decorator():
    """(fn, seconds) -> fn wrapped in spaces.GPU with a duration sized by ``seconds`` (a callable of
    the handler's arguments) on Hugging Face ZeroGPU Spaces; identity without `spaces`."""
    if spaces is None:
        return lambda fn, seconds: fn
    return lambda fn, seconds: spaces.GPU(duration=seconds)(fn)


def preload(engine, name: str) -> None:
    """Load the starting model before the first request. On a Space (``spaces`` present) this
    happens now, in the main process: ZeroGPU runs each GPU call in a worker forked from it, so
    a model loaded there would be loaded again by every call and die with it (and a download
    inside a GPU call counts against its duration). Elsewhere it loads in the background while
    the page opens; a Generate meanwhile waits its turn in the engine's queue."""
    def load():
        try:
            engine.prepare(name)
        except Exception as e:  # noqa: BLE001 - the first request reports it again, as a sentence
            logging.getLogger("studio").warning("could not preload %s: %s", name, e)
    if spaces is not None:
        load()
    else:
        threading.Thread(target=load, name="preload", daemon=True).start()


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own requests, one line each
    from studio.ui import StudioConfig, build_ui
    from studio.ui_common import media_routes
    engine, note = make_engine(args.fake_engine, args.model, args.precision, args.ray, args.replicas)
    cuda, hardware = detect_hardware()
    if args.ray is not None:
        cuda = engine.gpus
        hardware = f"Engines: {engine.slots} Ray Serve replica{'s' * (engine.slots > 1)} on " \
                   f"{'GPUs' if cuda else 'CPUs'}."
    names = [m.name for m in engine.models()]
    default = args.model or ("medium" if cuda and "medium" in names else "small-music")
    if default not in names:
        raise SystemExit(f"--model must be one of {', '.join(names)}; got {default!r}.")
    sessions = Path(args.sessions).resolve()
    sessions.mkdir(parents=True, exist_ok=True)
    keep_sessions(sessions, args.keep_sessions_days)
    cfg = StudioConfig(sessions=sessions, default_model=default, hardware=f"{hardware} {note}".strip(),
                       limits=Limits(int(args.max_upload_mb * 2**20), args.max_seconds),
                       session_quota_mb=args.session_quota_mb, gpu=gpu_decorator(), encode_ahead=spaces is None,
                       hub_token_for_visitors=args.hub_token_for_visitors, jobs_per_session=args.jobs_per_session,
                       jobs_per_client=args.jobs_per_client)
    preload(engine, default)
    demo = build_ui(engine, cfg)
    # Gradio refuses bigger uploads itself (before they reach the disk); smaller ones reach
    # load_audio, which applies the other limits and says why a file is refused. show_error=False:
    # an unexpected exception's text (it may name the server's files) stays in the server's log.
    # At least one event per engine slot (a RayEngine's replicas), so every replica can be busy.
    demo.queue(default_concurrency_limit=max(4, getattr(engine, "slots", 1))).launch(
        server_name=args.host, server_port=args.port, share=args.share, allowed_paths=[str(sessions)],
        max_file_size=cfg.limits.max_bytes, theme=studio_theme(), css=STUDIO_CSS, js=DARK_JS, show_error=False,
        app_kwargs={"routes": media_routes(sessions)})


def keep_sessions(root: Path, days: float, every_s: float = 3600.0) -> None:
    """Sweep the sessions folder now (old sessions, debris of killed writes), then hourly in the background."""
    from studio import session
    log = logging.getLogger("studio")
    gone = session.sweep(root, days)
    if gone:
        log.info("deleted %d session(s) unused for %g days", len(gone), days)

    def again():
        while True:
            time.sleep(every_s)
            try:
                session.sweep(root, days)
            except OSError as e:  # a folder vanishing under the sweep; the next one retries
                log.warning("session clean-up skipped: %s", e)
    threading.Thread(target=again, name="sweep-sessions", daemon=True).start()


def studio_theme():
    import gradio as gr
    return gr.themes.Soft(primary_hue="amber", secondary_hue="cyan", neutral_hue="slate").set(
        body_background_fill_dark="#0b0d12", block_background_fill_dark="#12151d",
        block_label_background_fill_dark="transparent", block_label_text_color_dark="#aeb6c6",
        block_label_border_width_dark="0px", block_border_color_dark="#232838",
        input_background_fill_dark="#0f1218", button_secondary_background_fill_dark="#1d2230",
        button_secondary_background_fill_hover_dark="#262c3d", checkbox_label_background_fill_dark="#1a1f2b")


DARK_JS = "() => { document.body.classList.add('dark'); }"

STUDIO_CSS = """
#header h2 { margin-bottom: 0; letter-spacing: .01em; }
#header .sub { color: var(--body-text-color-subdued); }
#status { min-height: 1.6em; padding: 2px 8px; border-left: 3px solid transparent; border-radius: 4px; }
#status.error { border-left-color: #f87171; background: #f871711f; color: #fecaca; }
#session-info { opacity: .7; font-size: 12px; }
/* File fields (source, guide, LoRA): Gradio centres its drop text, sized for a tall box, so in our short
   boxes the upload icon rose over the field's label. Below the label, on one line: */
.upload-container.boundedheight { padding-top: 30px !important; box-sizing: border-box; }
.upload-container.boundedheight .wrap { min-height: 0 !important; height: auto !important; padding: 0 !important;
  flex-direction: row !important; flex-wrap: wrap; justify-content: center; column-gap: 6px; line-height: 1.3 !important; }
.upload-container.boundedheight .wrap .icon-wrap { margin: 0 !important; height: 1.3em; width: 1.3em; }
"""

if __name__ == "__main__":
    main()
