import pytest

from studio.catalog import CATALOG, MUSIC, SFX, model_info, prompt_for_model


@pytest.mark.parametrize("name, prompt, expected", [
    ("small-music", "lofi house", MUSIC + "lofi house"),
    ("small-sfx", "  door slam", SFX + "door slam"),
    ("medium", "tracktype: sfx, rain", "tracktype: sfx, rain"),  # the user's own tag wins
    ("small-music", "", ""),  # unconditional stays unconditional
    ("small-music", "   ", "   "),
])
def test_prompt_for_model(name, prompt, expected):
    assert prompt_for_model(prompt, model_info(name)) == expected


def test_catalog_matches_the_released_configs():
    import json

    from tests.conftest import REFERENCE
    for info in CATALOG:
        cfg = json.loads((REFERENCE / "configs" / f"stable-audio-3-{info.name}.json").read_text())
        assert info.max_seconds == pytest.approx(cfg["sample_size"] / cfg["sample_rate"], abs=0.01)
    assert model_info("nope") is None
