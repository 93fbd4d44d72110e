"""studio.fit: each take's seam at its borders and the drift of its beats from the track's grid, on
takes stored in a real session and built to have a known jump and a known drift; the takes list
shows both and sorts by them, and the order is kept with the session."""
from __future__ import annotations

import math

import numpy as np
import pytest

from studio import fit, seams, session
from studio.api import SAMPLE_RATE as SR
from studio.api import EditRequest, Region, Take
from studio.meter import Grid
from tests.test_tempo import drums
from tests.test_tempo import librosa_only as librosa_only  # noqa: F401 - autouse: the default tracker

SECONDS = 16.0
REGION = Region(4.0, 10.0)
GRID = Grid(120.0, 4, 4, 0.0)


def track(late: float = 0.0) -> np.ndarray:
    """16 s of drums at 120 BPM over a quiet noise bed, bar 1 at ``late`` s: the region's borders
    lie on kicks, so the original itself jumps there."""
    bed = 0.02 * np.random.default_rng(5).standard_normal((2, int(SECONDS * SR)))
    return (drums(120, 4, late, seconds=SECONDS) + bed).astype(np.float32)


def take_of(source: np.ndarray, region_audio: np.ndarray) -> np.ndarray:
    """``source`` with REGION replaced by the same span of ``region_audio``."""
    a, b = int(REGION.start * SR), int(REGION.end * SR)
    out = source.copy()
    out[:, a:b] = region_audio[:, a:b]
    return out


# Takes with known faults: the region as it was (a take that changed nothing audible), 12 dB louder
# (a loudness jump of +12 dB at its start, -12 dB at its end), and its drums 40 ms late.
KINDS = {"same": lambda src: src * 1.0001, "loud": lambda src: src * 4.0, "late": lambda src: track(0.040)}
LOUD_DB = 20 * np.log10(4.0)


@pytest.fixture()
def studio(tmp_path):
    """A session on the drums with the grid set and one take of each KIND, in that order."""
    src = track()
    s = session.set_grid(session.set_source(session.create(tmp_path), src, "drums"), GRID)
    ids = {}
    for seed, (kind, make) in enumerate(KINDS.items()):
        req = EditRequest(model="small-music", source=src, regions=(REGION,), prompt=kind, seed=seed)
        s, rec = session.add_take(s, Take(take_of(src, make(src)), req, seed, "small-music", (REGION,)), kind, {})
        ids[kind] = rec.id
    return s, ids


def test_a_loud_take_shows_its_jump_at_both_borders_and_a_quiet_one_none(studio):
    s, ids = studio
    same, loud = (fit.of_take(s, ids[k], GRID) for k in ("same", "loud"))
    assert [b.border.sample for b in loud.borders] == [int(REGION.start * SR), int(REGION.end * SR)]
    assert all(b.seam.spectral > 3 for b in same.borders)  # on a kick: the take alone jumps as much as
    assert [b.excess for b in same.borders] == pytest.approx([1.0, 1.0], abs=0.02)  # ...the original does
    assert [b.step_db for b in same.borders] == pytest.approx([0.0, 0.0], abs=0.05)
    start, end = loud.borders
    assert start.step_db == pytest.approx(LOUD_DB, abs=0.3) and end.step_db == pytest.approx(-LOUD_DB, abs=0.3)
    assert start.excess > 1.5 and loud.seam > 1.5 and loud.step_db == pytest.approx(LOUD_DB, abs=0.3)
    assert same.seam < 1.05 and same.step_db < 0.1
    assert start.choice().endswith(f"jump {start.excess:.1f}× the original's, +{start.step_db:.1f} dB")


def test_drift_reads_a_takes_late_beats_and_none_for_on_grid_ones(studio):
    s, ids = studio
    late, same = fit.of_take(s, ids["late"], GRID), fit.of_take(s, ids["same"], GRID)
    assert late.drift_ms == pytest.approx(40, abs=2) and same.drift_ms < 2
    assert late.text().endswith(f"drift {late.drift_ms:.0f} ms")
    assert math.isnan(fit.of_take(s, ids["late"], None).drift_ms)  # no grid: no drift, only seams
    assert "drift" not in fit.of_take(s, ids["late"], None).text()


def test_takes_sort_by_seams_or_drift_and_unmeasured_go_last():
    a, b, c = (fit.Fit((), tempo_drift(ms)) for ms in (30.0, 5.0, math.nan))
    assert fit.ordered([a, b, c], "drift") == [b, a, c]
    assert fit.ordered([a, b, c], "made") == [a, b, c]
    assert fit.ordered([a, b, c], "seams") == [a, b, c]  # none measured: as made
    named = fit.ordered([("a", a), ("b", b)], "drift", fit_of=lambda row: row[1])
    assert [name for name, _ in named] == ["b", "a"]


def tempo_drift(ms):
    from studio import tempo
    return tempo.Drift(ms, ms, ())


def test_a_border_too_near_the_takes_end_is_listed_unmeasured():
    audio = track()
    border = seams.Border("Region 1 end", audio.shape[1] - 100)
    found = fit.measure(audio, [border], [Region(15.0, SECONDS)], None)
    assert found.borders[0].seam is None and math.isnan(found.seam) and found.text() == ""


def test_the_takes_list_shows_each_fit_sorts_by_it_and_a_reload_keeps_the_order(studio, tmp_path):
    from studio.fake_engine import FakeEngine
    from studio.ui import StudioConfig, _Handlers, takes_update
    s, ids = studio
    engine = FakeEngine()
    h = _Handlers(engine, StudioConfig(sessions=tmp_path, default_model="small-music"),
                  {m.name: m for m in engine.models()})
    listed = takes_update(session.reload(s))["choices"]
    assert [tid for _, tid in listed] == [ids[k] for k in KINDS]  # as made
    labels = dict((tid, label) for label, tid in listed)
    assert "seams ≤" in labels[ids["loud"]] and "drift" in labels[ids["late"]] and "bars 3–5" in labels[ids["same"]]

    by_seams = h.order_takes(s.id, "seams", ids["late"])
    assert by_seams["choices"][-1][1] == ids["loud"] and by_seams["value"] == ids["late"]
    by_drift = h.order_takes(s.id, "drift", None)
    assert by_drift["choices"][-1][1] == ids["late"]
    assert session.reload(s).last["take_order"] == "drift"

    class Request:  # a fresh tab on ?session=
        query_params = {"session": s.id}
    opened = h.open(None, Request())
    assert opened[-1] == "drift" and [tid for _, tid in opened[3]["choices"]] == [t for _, t in by_drift["choices"]]
