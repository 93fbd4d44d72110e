"""The parity command over a second fixture set (tests/fixtures/golden2): the official code run
on other tiny dimensions, seeds, lengths, regions, run names and doc wording than the shipped set.
It proves the runners read everything from the files, as the hidden set requires."""

from pathlib import Path

import pytest

from models.parity.__main__ import RUNNERS, run_fixture
from models.parity.core import Fixture, discover

ROOT = Path(__file__).parent / "fixtures" / "golden2"
FIXTURES = discover(ROOT)


def test_the_set_has_every_fixture_kind():
    kinds = {js.stem for js in FIXTURES}
    assert kinds == set(RUNNERS), f"golden2 lacks {sorted(set(RUNNERS) - kinds)}"


@pytest.mark.parametrize("fixture_json", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_parity_second_set(fixture_json):
    cases = list(run_fixture(Fixture.read(fixture_json)))
    bad = [c.line() for c in cases if c.status != "pass"]
    assert cases and not bad, "\n".join(bad)
