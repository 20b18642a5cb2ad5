"""The labs' Flax models as Hugging Face Hub folders, the same folder torch's
`PyTorchModelHubMixin` writes (week1/hub.py describes it).

The weights file holds torch state_dict names: a Flax model's parameters go through the
architecture's literal table (week1.hub.MODELS, week1/convert.py) on the way out and back,
so one folder loads in either framework. Read beside week1_torch/lib/hub.py.
"""

from __future__ import annotations

import pathlib

import numpy as np
from flax import nnx
from safetensors.numpy import load_file, save_file

from week1 import convert, hub
from week1_jax.lib.models import CharMLP, set_weights

CLASSES = {"CharMLP": CharMLP}


def save_pretrained(weights: dict[str, np.ndarray], folder, config: dict) -> None:
    """Write `weights` (Flax paths) with `config` (week1.hub.model_config) as a model folder:
    model.safetensors under torch names, float32, and config.json."""
    table = hub.MODELS[config["architectures"][0]]["table"]
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch_named = {
        k: np.ascontiguousarray(v, np.float32)
        for k, v in convert.flax_to_torch(weights, table).items()
    }
    save_file(torch_named, folder / hub.WEIGHTS)  # no metadata: as the mixin's save_model
    hub.write_config(folder, config)


def from_pretrained(folder, seed: int = 0) -> CharMLP:
    """The model of a folder (any framework wrote it): built from config.json (the random init
    from `seed` is overwritten), weights from model.safetensors through the table."""
    architecture, config = hub.read_config(folder)
    model = CLASSES[architecture](**hub.init_args(architecture, config), rngs=nnx.Rngs(seed))
    weights = load_file(pathlib.Path(folder) / hub.WEIGHTS)
    set_weights(model, convert.torch_to_flax(weights, hub.MODELS[architecture]["table"]))
    model.eval()
    return model
