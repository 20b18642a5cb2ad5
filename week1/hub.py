"""The Hugging Face Hub folder format of the labs' models, framework-free.

A model folder, the same whichever framework trained or wrote it:

    model.safetensors   the weights under torch state_dict names, float32 (a Flax model's
                        weights are converted through the model's literal table, MODELS below)
    config.json         the model's constructor arguments (what PyTorchModelHubMixin's
                        from_pretrained passes back to __init__), "architectures", and a
                        "week1" entry: lab, framework that trained it, step, vocabulary, run
    README.md           the model card (huggingface_hub.ModelCard): YAML metadata, then the
                        metrics, config, parity numbers and the command that trained it

torch writes it with `PyTorchModelHubMixin.save_pretrained` (week1_torch/lib/hub.py); the
Flax side writes the same three files itself (week1_jax/lib/hub.py), byte for byte the same
weights file for the same numbers. `week1 export` and `week1 push` are
week1/export.py.
"""

from __future__ import annotations

import json
import pathlib

from week1 import convert
from week1.config import UsageError

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
# Each exportable architecture: its constructor arguments (config.json keys) and the literal
# table between its torch state_dict names and its Flax paths (week1/convert.py).
MODELS = {
    "CharMLP": {
        "init": ("vocab_size", "block_size", "n_embd", "n_hidden", "dropout"),
        "table": convert.CHAR_MLP,
    },
}


def model_config(architecture: str, init: dict, **week1: object) -> dict:
    """config.json's content: the constructor arguments, the architecture, week1's metadata."""
    spec = MODELS[architecture]
    if set(init) != set(spec["init"]):
        raise ValueError(f"{architecture} takes {spec['init']}, got {sorted(init)}")
    return {"architectures": [architecture], **init, "week1": dict(week1)}


def write_config(folder, config: dict) -> pathlib.Path:
    """config.json as PyTorchModelHubMixin writes it (sorted keys, indent 2)."""
    path = pathlib.Path(folder) / CONFIG
    path.write_text(json.dumps(config, sort_keys=True, indent=2))
    return path


def read_config(folder) -> tuple[str, dict]:
    """(architecture, config) of a model folder; a UsageError saying what is missing."""
    folder = pathlib.Path(folder)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise UsageError(f"{str(folder)!r} is not a model folder: no {name}")
    try:
        config = json.loads((folder / CONFIG).read_text())
        architecture = config["architectures"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        raise UsageError(f"{folder / CONFIG}: not a week1 model config") from None
    if architecture not in MODELS:
        raise UsageError(
            f"{folder / CONFIG}: architecture {architecture!r}; known: {', '.join(MODELS)}"
        )
    return architecture, config


def init_args(architecture: str, config: dict) -> dict:
    """The constructor arguments stored in `config`."""
    return {name: config[name] for name in MODELS[architecture]["init"]}
