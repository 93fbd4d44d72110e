"""``python -m models.inventory`` equals the real checkpoints' tensor manifests, for every released config."""

import json
import subprocess
import sys

import pytest

from models.inventory import inventory
from tests.conftest import REFERENCE, ROOT

# -base and -sfx checkpoints have the layout of the model they derive from (same config but
# for the objective / the text encoder's repo id); the manifests list one per layout.
MANIFEST = {
    "SAME-S": "SAME-S", "SAME-L": "SAME-L",
    "stable-audio-3-small-music": "stable-audio-3-small-music",
    "stable-audio-3-small-music-base": "stable-audio-3-small-music",
    "stable-audio-3-small-sfx": "stable-audio-3-small-music",
    "stable-audio-3-small-sfx-base": "stable-audio-3-small-music",
    "stable-audio-3-medium": "stable-audio-3-medium",
    "stable-audio-3-medium-base": "stable-audio-3-medium",
}


def _manifest(name):
    data = json.loads((REFERENCE / "manifests" / f"{name}.json").read_text())
    return {e["key"]: e["shape"] for e in data["state_dict"]}


@pytest.mark.parametrize("config", sorted(MANIFEST))
def test_inventory_equals_the_manifest(config):
    assert inventory(REFERENCE / "configs" / f"{config}.json") == _manifest(MANIFEST[config])


def test_every_released_config_is_covered():
    assert {p.stem for p in (REFERENCE / "configs").glob("*.json")} == set(MANIFEST)


def test_command_prints_json():
    out = subprocess.run([sys.executable, "-m", "models.inventory", str(REFERENCE / "configs" / "SAME-S.json")],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == _manifest("SAME-S")
