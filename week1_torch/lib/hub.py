"""The labs' torch models as Hugging Face Hub folders, through `PyTorchModelHubMixin`.

Mixing `PyTorchModelHubMixin` into a model class gives it `save_pretrained` (weights to
model.safetensors, the constructor's arguments to config.json), `from_pretrained` (the
reverse, from a folder or a Hub repo id) and `push_to_hub`. The mixin records the arguments
the model was built with, so a class needs nothing else; week1/hub.py describes the folder.
Read beside week1_jax/lib/hub.py, which writes and reads the same folder for Flax models.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from huggingface_hub import PyTorchModelHubMixin

from week1 import hub
from week1_torch.lib import devices
from week1_torch.lib.models import CharMLP, set_weights


class CharMLPHub(
    CharMLP,
    PyTorchModelHubMixin,
    library_name="week1",
    tags=["week1", "character-level", "language-model"],
):
    """The training_loop lab's CharMLP with save_pretrained / from_pretrained / push_to_hub."""


HUB_CLASSES = {"CharMLP": CharMLPHub}


def save_pretrained(weights: dict[str, np.ndarray], folder, config: dict) -> None:
    """Write `weights` (state_dict names) with `config` (week1.hub.model_config) as a model
    folder, through the mixin: model.safetensors and config.json (and the mixin's default card,
    which week1 export replaces)."""
    architecture = config["architectures"][0]
    model = HUB_CLASSES[architecture](**hub.init_args(architecture, config))  # CPU: a file write
    set_weights(model, weights)
    model.save_pretrained(folder, config=config)


def from_pretrained(folder) -> CharMLP:
    """The model of a folder (any framework wrote it), on the default device, in eval mode."""
    architecture, _ = hub.read_config(folder)
    with contextlib.redirect_stdout(io.StringIO()):  # the mixin prints "Loading weights from..."
        model = HUB_CLASSES[architecture].from_pretrained(folder, strict=True)
    return devices.place(model)
