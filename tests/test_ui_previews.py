"""studio.ui.with_previews: the generator the Generate buttons run, over a plain handler."""
import inspect

import numpy as np
import pytest

from studio.api import SAMPLE_RATE, Preview
from studio.ui import PREVIEW_COLUMNS, with_previews
from studio.ui_view import N_MELS


def handler(sid, steps, on_preview=None):
    """Stands in for _Handlers.generate: previews at each step, then two outputs."""
    for k in range(1, steps + 1):
        if on_preview is not None:
            on_preview(Preview(k, steps, 1.0, np.full((2, SAMPLE_RATE // 2), 0.1 * k, np.float32)))
    if sid == "boom":
        raise RuntimeError("boom")
    return [sid, steps]


def test_unticked_yields_the_result_once_and_asks_for_no_preview():
    run = with_previews(handler, 2)
    assert list(run(False, "s1", 3)) == [["s1", 3, {"__type__": "update"}]]


def test_ticked_yields_previews_in_order_then_the_result():
    out = list(with_previews(handler, 2)(True, "s1", 3))
    assert out[0][2]["value"] is None and out[0][2]["visible"]  # the last run's preview is cleared
    images = [o[2] for o in out[1:-1]]
    assert 1 <= len(images) <= 3 and images[-1]["label"] == "Step preview · step 3/3 · 1.0–1.5 s"
    assert all(o[:2] == [{"__type__": "update"}] * 2 for o in out[:-1])  # nothing else moves meanwhile
    assert images[-1]["value"].shape == (N_MELS, PREVIEW_COLUMNS, 3) and images[-1]["value"].dtype == np.uint8
    assert out[-1][:2] == ["s1", 3]


def test_an_unexpected_error_in_the_handler_reaches_gradio():
    with pytest.raises(RuntimeError, match="boom"):
        list(with_previews(handler, 2)(True, "boom", 2))


def test_gradio_sees_the_checkbox_then_the_handlers_inputs():
    assert list(inspect.signature(with_previews(handler, 2)).parameters) == ["show_previews", "sid", "steps"]
