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


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster shared by the session's Ray tests: 2 CPUs, a small object store,
    advertised on loopback, no dashboard; Serve runs without its HTTP proxy (the tests call handles)."""
    ray = pytest.importorskip("ray", reason="ray[serve] is not installed (pip install 'ray[serve]')")
    from ray import serve
    ray.init(address="local", num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False,
             _node_ip_address="127.0.0.1")
    serve.start(proxy_location="Disabled")
    yield ray
    serve.shutdown()
    ray.shutdown()
