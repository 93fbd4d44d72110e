import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = FIXTURES / "golden"
REFERENCE = FIXTURES / "reference"


@pytest.fixture
def golden() -> Path:
    return GOLDEN


@pytest.fixture
def reference() -> Path:
    return REFERENCE
