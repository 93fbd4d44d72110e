"""The bar grid: bar positions <-> seconds, typed ranges, loop lengths, prompt tempos."""
import pytest

from studio.api import SAMPLE_RATE
from studio.meter import Grid, prompt_bpm, with_bpm


def test_bar_and_beat_lengths_count_quarter_notes_like_a_daw():
    assert Grid(120).bar_seconds == pytest.approx(2.0)
    assert Grid(120, 3, 4).bar_seconds == pytest.approx(1.5)
    six_eight = Grid(120, 6, 8)
    assert six_eight.beat_seconds == pytest.approx(0.25)  # an eighth
    assert six_eight.bar_seconds == pytest.approx(1.5)    # three quarters


def test_time_and_position_are_inverse_around_the_first_downbeat():
    g = Grid(96, 4, 4, downbeat=0.3)
    assert g.time(1) == pytest.approx(0.3)
    assert g.time(9, 3) == pytest.approx(0.3 + 8 * 2.5 + 2 * 0.625)
    for bar in (-1, 0, 1, 9, 40):
        for beat in (1, 2, 4):
            assert g.position(g.time(bar, beat))[:2] == (bar, beat)
    assert g.position(0.0)[:2] == (0, 4)  # a pickup before the first downbeat lies in bar 0


@pytest.mark.parametrize("text, first, last", [
    ("9-12", (9, 1), (13, 1)), ("9–12", (9, 1), (13, 1)), ("9:12", (9, 1), (13, 1)),
    ("9.3-10", (9, 3), (11, 1)), ("9 - 9.2", (9, 1), (9, 3)), ("1-1", (1, 1), (2, 1)),
])
def test_typed_ranges_include_both_ends(text, first, last):
    g = Grid(120, downbeat=0.5)
    assert g.parse_range(text) == pytest.approx((g.time(*first), g.time(*last)))


@pytest.mark.parametrize("text, says", [
    ("nine to twelve", "Write bars as first–last"), ("12-9", "end before they start"),
    ("9.5-10", "beat 5"), ("", "Write bars"),
])
def test_bad_ranges_are_one_sentence(text, says):
    with pytest.raises(ValueError, match=says):
        Grid(120).parse_range(text)


def test_labels_name_bars_as_they_are_typed():
    g = Grid(120, downbeat=0.25)
    start, end = g.parse_range("9-12")
    assert g.span_label(start, end) == "bars 9–12"
    start, end = g.parse_range("9.3-10")
    assert g.span_label(start, end) == "bars 9.3–10"
    assert g.label(g.time(5, 2) + 0.1) == "5.2+"
    assert g.label(g.time(5) - 1e-4) == "5"  # display rounding lands on the bar line


def test_grid_lines_cover_the_clip():
    g = Grid(120, 3, 4, downbeat=0.5)
    assert g.lines(5.0) == pytest.approx([0.5, 2.0, 3.5, 5.0])
    beats = g.lines(2.0, "beat")
    assert beats == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


def test_loop_lengths_are_exact_or_rounded_to_the_nearest_sample():
    assert Grid(120).loop_samples(4) == 8 * SAMPLE_RATE
    assert Grid(128).loop_samples(4) == int(7.5 * SAMPLE_RATE)
    n = Grid(97).loop_samples(4)
    assert abs(n - 4 * 4 * 60 / 97 * SAMPLE_RATE) <= 0.5
    for bpm in range(30, 301):
        exact = 16 * 60 / bpm * SAMPLE_RATE
        assert abs(Grid(bpm).loop_samples(4) - exact) <= 0.5
    with pytest.raises(ValueError, match="whole bars"):
        Grid(120).loop_samples(0)


@pytest.mark.parametrize("bad", [0, float("nan"), float("inf"), 1000, True])
def test_bad_tempos_are_refused(bad):
    with pytest.raises(ValueError, match="tempo"):
        Grid(bad)


def test_meters_parse_and_bad_ones_are_refused():
    assert Grid.parse_meter("6/8") == (6, 8)
    with pytest.raises(ValueError, match="meter"):
        Grid.parse_meter("six-eight")
    with pytest.raises(ValueError, match="meter"):
        Grid(120, 4, 3)


def test_prompt_tempo_is_read_and_written():
    assert prompt_bpm("lofi house loop, 90 BPM, warm bass") == 90.0
    assert prompt_bpm("a 4-bar loop") is None
    assert with_bpm("lofi house, 90 bpm, warm bass", 120) == "lofi house, warm bass, 120 BPM"
    assert prompt_bpm(with_bpm("techno", 132.5)) == 132.5
