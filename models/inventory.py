"""``python -m models.inventory CONFIG.json``: the checkpoint layout our modules expect.

Builds every component of the config on the meta device (no memory, no weights) and prints
``{tensor name: [shape...]}`` as JSON, with the released checkpoint's prefixes. For every
released config it must equal ../shared/reference/manifests exactly: that is how we know the
unchanged ``model.safetensors`` loads into our modules with a strict check.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from models.config import load_model_config
from models.sa3 import build_components


def inventory(config_path) -> dict[str, list[int]]:
    cfg = load_model_config(config_path)
    with torch.device("meta"):
        components = build_components(cfg)
    return {prefix + name: list(t.shape)
            for prefix, module in components.items()
            for name, t in module.state_dict().items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.inventory", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a model_config.json (full SA3 model or standalone SAME)")
    args = parser.parse_args(argv)
    json.dump(inventory(args.config), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
