"""The region painter as one Gradio component: a gr.HTML whose view lives beside this file
(painter.html, painter.css, painter.js) and whose value is the JSON contract of README.md.

Python owns the facts the painter draws with: the latent grid and the snapping tolerance
(studio.edit, from studio.api's sample rate and latent hop) and the longest continuation a drag
asks for travel as props, so the painter shows exactly the edges studio.edit.snap_regions keeps.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import edit

HERE = Path(__file__).parent


class Painter(gr.HTML):
    """The painter. Its value is the contract's JSON string (studio.ui.painter_value writes it,
    studio.edit.parse_painter reads the regions back)."""

    def __init__(self, **kwargs):
        super().__init__(value="", html_template=(HERE / "painter.html").read_text(),
                         css_template=(HERE / "painter.css").read_text(),
                         js_on_load=(HERE / "painter.js").read_text(), apply_default_css=False,
                         grid=edit.GRID_SECONDS, snap_tolerance=edit.SNAP_TOLERANCE,
                         max_continue=edit.MAX_CONTINUE_SECONDS, **kwargs)
