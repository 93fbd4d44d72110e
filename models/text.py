"""The text conditioner: T5Gemma's encoder, 256 tokens, learned padding.

The official ``T5GemmaConditioner`` (``models/conditioners.py``) tokenizes each prompt to
exactly ``max_length`` tokens (truncating longer prompts, padding shorter ones), runs
transformers' T5Gemma encoder over all of them with eager attention (which applies the
attention-logit softcap), and then replaces every padded row by the checkpoint's learned
``padding_embedding``.

Padded rows never influence real rows (the encoder masks them out as keys) and are
overwritten afterwards, so we run the encoder on the real tokens only and cache the
result per prompt: the same numbers at a fraction of the cost (``encode_padded`` keeps the
plain path; tests prove the two agree).

The encoder lives in the ``t5gemma-b-b-ul2/`` folder of a released repo: ``config.json``
(the full encoder-decoder config), tokenizer files and ``model.safetensors``, of which we
read only the ``model.encoder.*`` tensors.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from models.loading import CheckpointError, WEIGHTS_FILE, load_weights, read_tensors
from models.precision import choose_precision

ENCODER_PREFIX = "model.encoder."
CACHE_SIZE = 32  # prompts whose encodings are kept (a session edits with few prompts)


def default_dtype(device: Union[str, torch.device]) -> torch.dtype:
    """The encoder's dtype under automatic precision (models.precision): bf16 where the hardware
    computes it natively, else fp32 (a CPU without bf16 runs the encoder ~8x slower in bf16)."""
    return choose_precision(device).text


# --------------------------------------------------------------------------- encoder


class TextEncoder:
    """T5Gemma's tokenizer and encoder, frozen; ``encode(prompt) -> (n_tokens, D)``.

    Not an ``nn.Module`` on purpose: its weights live in their own folder, not in the
    SA3 checkpoint's state dict (as in the official code).
    """

    def __init__(self, tokenizer, encoder: nn.Module, max_length: int = 256):
        self.tokenizer = tokenizer
        self.encoder = encoder.eval().requires_grad_(False)
        self.max_length = max_length
        self.dim = encoder.config.hidden_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    @property
    def device(self) -> torch.device:
        return self.encoder.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.embed_tokens.weight.dtype

    def to(self, dtype: torch.dtype) -> "TextEncoder":
        """Cast the encoder's weights (cached encodings, made in the old dtype, are dropped)."""
        self.encoder.to(dtype)
        self._cache.clear()
        return self

    def token_ids(self, prompt: str, truncate: bool = True) -> Tensor:
        """(n,) int64 token ids (bos first, no eos), cut to ``max_length`` if ``truncate``."""
        kwargs = dict(truncation=True, max_length=self.max_length) if truncate else {}
        return torch.tensor(self.tokenizer(prompt, **kwargs)["input_ids"], dtype=torch.long)

    def tokenize(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """The official padded batch: ids (B, max_length) int64, mask (B, max_length) bool."""
        enc = self.tokenizer(list(prompts), truncation=True, max_length=self.max_length,
                             padding="max_length", return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"].bool()

    @torch.no_grad()
    def encode(self, prompt: str) -> Tensor:
        """(n_tokens, D) last hidden state of the prompt's real tokens (cached, read-only)."""
        if prompt in self._cache:
            self._cache.move_to_end(prompt)
            return self._cache[prompt]
        ids = self.token_ids(prompt).to(self.device)[None]  # (1, n)
        hidden = self.encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
        self._cache[prompt] = hidden
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return hidden

    @torch.no_grad()
    def encode_padded(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """The official path: the encoder over all ``max_length`` positions, padding masked.
        Returns hidden (B, max_length, D) and mask (B, max_length) bool. For tests."""
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        return self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask


def load_text_encoder(folder: Union[str, Path], device: Union[str, torch.device] = "cpu",
                      dtype: Optional[torch.dtype] = None, max_length: int = 256) -> TextEncoder:
    """The T5Gemma encoder and tokenizer of a ``t5gemma-b-b-ul2/`` folder.

    Only the ``model.encoder.*`` tensors are read, straight to ``device`` and ``dtype``
    (default: ``default_dtype(device)``), and loaded strictly. Attention is eager: it
    applies T5Gemma's attention-logit softcap, which sdpa would skip.
    """
    from transformers import AutoTokenizer, T5GemmaConfig
    from transformers.models.t5gemma.modeling_t5gemma import T5GemmaEncoder

    folder = Path(folder)
    for name in ("config.json", WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder} is not a T5Gemma folder: {name} is missing.")
    dtype = dtype or default_dtype(device)
    config = T5GemmaConfig.from_pretrained(folder).encoder
    config._attn_implementation = "eager"
    with torch.device("meta"):
        encoder = T5GemmaEncoder(config)
    tensors = read_tensors(folder / WEIGHTS_FILE, ENCODER_PREFIX, device=device, dtype=dtype)
    load_weights(encoder, tensors, f"{folder / WEIGHTS_FILE} (T5Gemma encoder)")
    # Rotary frequencies are buffers computed at construction, not weights: build them for real.
    encoder.rotary_emb = type(encoder.rotary_emb)(config).to(device)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return TextEncoder(tokenizer, encoder, max_length)


class TextConditioner(nn.Module):
    """Prompts -> (B, max_length, D) conditioning rows and their (B, max_length) bool mask.

    Rows past the prompt's tokens hold ``padding_embedding``, the checkpoint's
    ``conditioner.conditioners.prompt.padding_embedding``. ``encoder`` may be attached later
    (``cond.encoder = ...``); it is not a submodule: its weights are not in our state dict.
    """

    def __init__(self, encoder: Optional[TextEncoder], dim: int, max_length: int = 256):
        super().__init__()
        self.dim, self.max_length = dim, max_length
        self.encoder = encoder  # a plain object, so not a submodule
        self.padding_embedding = nn.Parameter(torch.zeros(dim))

    def forward(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        enc = self.encoder
        if enc is None:
            raise RuntimeError("no text encoder attached to the prompt conditioner")
        if (enc.dim, enc.max_length) != (self.dim, self.max_length):
            raise ValueError(f"text encoder gives {enc.max_length} rows of width {enc.dim}; "
                             f"this conditioner needs {self.max_length} of width {self.dim}")
        pad = self.padding_embedding
        rows = pad.expand(len(prompts), self.max_length, self.dim).clone()  # (B, n, D)
        mask = torch.zeros(len(prompts), self.max_length, dtype=torch.bool, device=pad.device)
        for b, prompt in enumerate(prompts):
            hidden = enc.encode(prompt)  # (n_b, D)
            rows[b, : hidden.shape[0]] = hidden.to(rows)
            mask[b, : hidden.shape[0]] = True
        return rows, mask
