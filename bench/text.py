"""Speed of the T5Gemma text encoder at full size (seeded random weights, no download).

    python -m bench.text --tokens 8 32 96 256

Builds the released encoder (../shared/reference/manifests/t5gemma-b-b-ul2.json,
``config_used``) and prints one JSON line per (prompt length, dtype): seconds for the
official path (all 256 positions, padding masked) and for ours (the real tokens only),
and for a repeated prompt (our per-prompt cache). bf16 runs only where the CPU has native
bf16 (avx512_bf16 / amx_bf16) or on CUDA, unless --force-bf16.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from models import text
from models.text import TextEncoder

ROOT = Path(__file__).resolve().parent.parent  # the checkout, where the fixtures are

MANIFEST = ROOT / "tests" / "fixtures" / "reference" / "manifests" / "t5gemma-b-b-ul2.json"


class _Ids:
    """A stand-in tokenizer: prompts are strings of token ids, "5 17 42"."""

    def __call__(self, prompt, truncation=False, max_length=None, **_):
        ids = [2] + [int(t) for t in prompt.split()]
        return {"input_ids": ids[:max_length] if truncation else ids}


def build_encoder(config_path: Path, dtype: torch.dtype, device: str) -> TextEncoder:
    from transformers.models.t5gemma.configuration_t5gemma import T5GemmaModuleConfig
    from transformers.models.t5gemma.modeling_t5gemma import T5GemmaEncoder

    data = json.loads(config_path.read_text())
    config = T5GemmaModuleConfig(**data["config_used"]["encoder"])
    config._attn_implementation = "eager"
    with torch.device("meta"):
        enc = T5GemmaEncoder(config)
    enc = enc.to_empty(device=device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    enc.rotary_emb = type(enc.rotary_emb)(config).to(device)
    return TextEncoder(_Ids(), enc.to(dtype))


def seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def bench(encoder: TextEncoder, n_tokens: int, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(n_tokens)
    prompt = " ".join(str(int(t)) for t in torch.randint(5, 1000, (n_tokens - 1,), generator=gen))
    ids = torch.zeros(1, encoder.max_length, dtype=torch.long)
    ids[0, :n_tokens] = encoder.token_ids(prompt)
    mask = ids != 0
    dev = encoder.device

    def official():
        with torch.no_grad():
            encoder.encoder(input_ids=ids.to(dev), attention_mask=mask.to(dev))

    def ours():
        encoder._cache.clear()
        encoder.encode(prompt)

    return {"tokens": n_tokens, "dtype": str(encoder.dtype).removeprefix("torch."),
            "padded_256_s": round(seconds(official, repeats), 4),
            "real_tokens_s": round(seconds(ours, repeats), 4),
            "cached_s": round(seconds(lambda: encoder.encode(prompt), repeats), 6)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--tokens", type=int, nargs="+", default=[8, 32, 96, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--force-bf16", action="store_true")
    args = parser.parse_args()
    dtypes = [torch.float32]
    if args.force_bf16 or text.default_dtype(args.device) == torch.bfloat16:
        dtypes.append(torch.bfloat16)
    for dtype in dtypes:
        encoder = build_encoder(args.manifest, dtype, args.device)
        for n in args.tokens:
            print(json.dumps({"threads": torch.get_num_threads(), **bench(encoder, n, args.repeats)}), flush=True)


if __name__ == "__main__":
    main()
