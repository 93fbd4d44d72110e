"""The models the studio offers, and the prompt each one is sent.

Plain data, no torch: the UI and both engines (real and fake) read the same catalogue.
"""
from __future__ import annotations

from studio.api import SAMPLE_RATE, ModelInfo

MUSIC = "TrackType: Music, VocalType: Instrumental, "
SFX = "TrackType: SFX, "
# Longest clips: the released configs' sample_size at 44.1 kHz (~120 s and ~380 s).
SMALL_SECONDS = 5292032 / SAMPLE_RATE
MEDIUM_SECONDS = 16777216 / SAMPLE_RATE

LAPTOP = "Runs on a laptop CPU (about 6 GB of memory); a GPU makes it faster."
GPU = "Needs an NVIDIA GPU: about 6 GB of memory in bf16 (RTX 30 series, A100 and newer), 12 GB in fp32."
BASE = " A -base model: slower (50 guided steps) and more varied, steered by CFG and a negative prompt."
# Post-trained models: 8 ping-pong steps, no guidance. -base models: the official UI's defaults,
# 50 Euler steps with CFG 7 (stable_audio_3/interface/diffusion_cond.py).
BASE_STEPS, BASE_CFG = 50, 7.0

CATALOG = (
    ModelInfo("small-music", "Small · music", LAPTOP, SMALL_SECONDS, MUSIC, 8),
    ModelInfo("small-sfx", "Small · sound effects", LAPTOP, SMALL_SECONDS, SFX, 8),
    ModelInfo("medium", "Medium · music and sound", GPU, MEDIUM_SECONDS, MUSIC, 8),
    ModelInfo("small-music-base", "Small · music · base", LAPTOP + BASE, SMALL_SECONDS, MUSIC, BASE_STEPS, BASE_CFG),
    ModelInfo("small-sfx-base", "Small · sound effects · base", LAPTOP + BASE, SMALL_SECONDS, SFX, BASE_STEPS,
              BASE_CFG),
    ModelInfo("medium-base", "Medium · base", GPU + BASE, MEDIUM_SECONDS, MUSIC, BASE_STEPS, BASE_CFG),
)


def model_info(name: str) -> ModelInfo | None:
    return next((m for m in CATALOG if m.name == name), None)


def prompt_for_model(prompt: str, info: ModelInfo) -> str:
    """The prompt with the model's TrackType prefix in front, unless it already names a
    TrackType (the official prompting guide's tags; any case). An empty prompt stays empty:
    it asks for an unconditional generation."""
    if not prompt.strip() or "tracktype:" in prompt.lower():
        return prompt
    return info.prompt_prefix + prompt.lstrip()
