import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = FIXTURES / "golden"
REFERENCE = FIXTURES / "reference"


@pytest.fixture
def golden() -> Path:
    return GOLDEN


@pytest.fixture
def reference() -> Path:
    return REFERENCE


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "sa3-small-tiny"
    folder.mkdir()
    for name in ("model_config.json", "model.safetensors"):
        shutil.copy(GOLDEN / "sa3_small_tiny" / name, folder)
    shutil.copytree(GOLDEN / "t5gemma-b-b-ul2", folder / "t5gemma-b-b-ul2")
    return folder
