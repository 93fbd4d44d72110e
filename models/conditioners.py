"""Conditioning of the SA3 DiT: prompt rows, the duration embedding, and their assembly.

The checkpoint keys under ``conditioner.conditioners.`` are

    prompt.padding_embedding                        (D,)     learned padding rows
    seconds_total.embedder.embedding.1.{weight,bias} (D, 256) Linear after Fourier features

and the attribute names below follow them. The official ``MultiConditioner`` runs each
conditioner, then ``ConditionedDiffusionModelWrapper.get_conditioning_inputs``
concatenates the ``cross_attention_cond_ids`` outputs along the sequence (prompt rows,
then the seconds token) and the ``global_cond_ids`` outputs along channels (AdaLN input).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from models.config import DiffusionModelConfig, NumberConditionerConfig
from models.dit import ExpoFourierFeatures  # the DiT's timestep features: the same official block
from models.loading import load_weights
from models.text import TextConditioner, TextEncoder

FOURIER_DIM = 256  # NumberEmbedder's Fourier features (official default)


class NumberEmbedder(nn.Module):
    """x (B,) in [0, 1] -> (B, dim): Fourier features, then Linear."""

    def __init__(self, dim: int, fourier_dim: int = FOURIER_DIM):
        super().__init__()
        self.embedding = nn.Sequential(ExpoFourierFeatures(fourier_dim), nn.Linear(fourier_dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        """x (B,) -> (B, dim) in the Linear's dtype; the Fourier features from fp32 x (in bf16,
        x would be rounded by up to 0.002 before features whose arguments reach ~6e4 radians)."""
        features, linear = self.embedding
        return linear(features(x.float()).to(linear.weight.dtype))


class NumberConditioner(nn.Module):
    """Numbers (seconds) -> one conditioning token each: (B, 1, D) and a (B, 1) bool mask.

    Values are clamped to [min_val, max_val] and normalised to [0, 1] first
    (official ``NumberConditioner``).
    """

    def __init__(self, dim: int, config: NumberConditionerConfig):
        super().__init__()
        self.min_val, self.max_val = config.min_val, config.max_val
        self.embedder = NumberEmbedder(dim)

    def forward(self, values: Union[Sequence[float], Tensor]) -> tuple[Tensor, Tensor]:
        weight = self.embedder.embedding[1].weight
        x = torch.tensor([float(v) for v in values], device=weight.device)  # (B,) fp32
        x = (x.clamp(self.min_val, self.max_val) - self.min_val) / (self.max_val - self.min_val)
        emb = self.embedder(x).unsqueeze(1)  # (B, 1, D)
        return emb, torch.ones(emb.shape[0], 1, dtype=torch.bool, device=emb.device)


@dataclass(frozen=True)
class Conditioning:
    """What the DiT reads besides x and t, for a batch of B items.

    cross_attn_cond: (B, S, D) prompt rows then the seconds token (S = max_length + 1)
    cross_attn_mask: (B, S) bool, True where a key is real (the learned-padding rows are
        False; the official code hands the DiT this mask as float 1/0)
    global_cond: (B, D) the seconds embedding, the AdaLN input
    """

    cross_attn_cond: Tensor
    cross_attn_mask: Tensor
    global_cond: Tensor


class Conditioner(nn.Module):
    """(prompts, seconds) -> ``Conditioning``, as ``MultiConditioner`` + the wrapper's
    ``get_conditioning_inputs`` build it. Load with the ``conditioner.conditioners.`` keys.

    ``encoder`` may be None to build the weights' layout alone (set
    ``conditioner.prompt.encoder`` before encoding prompts)."""

    def __init__(self, config: DiffusionModelConfig, encoder: Optional[TextEncoder]):
        super().__init__()
        conditioning, diffusion = config.conditioning, config.diffusion
        kinds = sorted((c.id, c.type) for c in conditioning.configs)
        if kinds != [("prompt", "t5gemma"), ("seconds_total", "number")]:
            raise ValueError(f"conditioners {kinds}: SA3 checkpoints have a t5gemma 'prompt' "
                             "and a number 'seconds_total'")
        self.cross_attention_ids = diffusion.cross_attention_cond_ids
        self.global_ids = diffusion.global_cond_ids
        if self.global_ids != ("seconds_total",):
            raise ValueError(f"global_cond_ids {self.global_ids}: SA3 checkpoints use ('seconds_total',)")
        text = conditioning.by_id("prompt").config
        if text.padding_mode != "learned":
            raise ValueError(f"prompt padding_mode {text.padding_mode!r}: SA3 checkpoints use 'learned'")
        self.prompt = TextConditioner(encoder, conditioning.cond_dim, text.max_length)
        self.seconds_total = NumberConditioner(conditioning.cond_dim, conditioning.by_id("seconds_total").config)

    def load(self, tensors: dict[str, Tensor]) -> "Conditioner":
        """Strict load of the ``conditioner.conditioners.*`` tensors (prefix stripped)."""
        load_weights(self, tensors, "conditioner.conditioners")
        return self

    @torch.no_grad()
    def forward(self, prompts: Sequence[str], seconds: Sequence[float]) -> Conditioning:
        if len(prompts) != len(seconds):
            raise ValueError(f"{len(prompts)} prompts but {len(seconds)} durations")
        outputs = {"prompt": self.prompt(prompts), "seconds_total": self.seconds_total(seconds)}
        cross = [outputs[k] for k in self.cross_attention_ids]
        return Conditioning(
            cross_attn_cond=torch.cat([emb for emb, _ in cross], dim=1),  # (B, S, D)
            cross_attn_mask=torch.cat([mask for _, mask in cross], dim=1),  # (B, S)
            global_cond=outputs["seconds_total"][0].squeeze(1),  # (B, D)
        )
