"""Serving lab in JAX/Flax: export the char-MLP LM, or a cnn_classifier run's KimCNN, with
jax.export (serialized StableHLO, weights inside), check the export against the eager model;
labs/serving.py serves and loads it.

Read beside week1_torch/serving.py: the same functions in the same order.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import export as jax_export

from labs import serving as spec
from week1 import charlm, loop
from week1_jax.lib import charlm as lm
from week1_jax.lib import checkpoint, devices
from week1_jax.lib.models import CharMLP, KimCNN, dotted, set_weights

STABLEHLO_FILE = "model.stablehlo"


def build_model(cfg: charlm.Config | spec.Classifier) -> CharMLP | KimCNN:
    """The model a run's settings describe: the char-MLP LM, or a classifier's KimCNN (its
    vocabulary and classes from the run's corpus), initialised (a checkpoint's weights go in
    next)."""
    if isinstance(cfg, spec.Classifier):
        corpus = spec.load_labelled(cfg)
        return KimCNN(
            corpus.vocab.size,
            cfg.n_embd,
            cfg.n_maps,
            corpus.num_classes,
            widths=spec.WIDTHS,
            init_range=0.0,  # every weight comes from the checkpoint
            dropout=0.0,
            rngs=nnx.Rngs(0),
        )
    return lm.build_model(cfg, spec.load_corpus().vocab_size)


def restore_run(run_dir) -> tuple[CharMLP | KimCNN, spec.Source]:
    """The model of a training_loop or cnn_classifier run folder's newest intact checkpoint
    (its parameters only: serving needs no optimizer state) and where it comes from."""
    cfg, framework = spec.read_run(run_dir)
    model = build_model(cfg)
    mngr = checkpoint.manager(pathlib.Path(run_dir) / "checkpoints")
    step, restored = checkpoint.load_state(mngr, None)  # the saved tree as it is, as arrays
    leaves = jax.tree_util.tree_flatten_with_path(restored["model"])[0]
    set_weights(model, {dotted(path): np.asarray(leaf) for path, leaf in leaves})
    return model, spec.Source(cfg, pathlib.Path(run_dir).name, framework, step)


def train_model(cfg: spec.Config, run) -> tuple[CharMLP, spec.Source]:
    """cfg.steps of the char LM through the library's one loop (lib/charlm.py): checkpointed in
    the run folder, resumable, stopped cleanly by a signal."""
    model, history = lm.train(cfg, charlm.load_data(cfg), ctx=loop.Context.of_run(run))
    step = history.steps[-1] if history.steps else 0
    return model, spec.Source(cfg, run.dir.name, "jax", step)


def eager_logits(model: CharMLP | KimCNN, *inputs: np.ndarray) -> np.ndarray:
    """The eager model's logits: the LM's x (B, T) ids -> (B, V) next-character logits, the
    classifier's ids (B, T), lengths (B,) -> (B, C) class logits; float32."""
    model.eval()
    return np.asarray(model(*(jnp.asarray(a, jnp.int32) for a in inputs)))


def export(model: CharMLP | KimCNN, folder, source: spec.Source) -> pathlib.Path:
    """jax.export the jitted forward pass, weights closed over (constants in the module), with a
    symbolic batch dimension "b" (and for the classifier a symbolic text length "t", at least
    MIN_WORDS); serialize it (StableHLO in a flatbuffer) for the server."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    graphdef, params = nnx.split(model)

    def forward(*inputs):  # x (B, T), or ids (B, T) and lengths (B,): int32 -> (B, V or C)
        return nnx.merge(graphdef, params)(*inputs)

    if source.kind == spec.CLASSIFIER:
        batch, length = jax_export.symbolic_shape("b, t", constraints=(f"t >= {spec.MIN_WORDS}",))
        examples = (
            jax.ShapeDtypeStruct((batch, length), jnp.int32),  # ids (B, T)
            jax.ShapeDtypeStruct((batch,), jnp.int32),  # lengths (B,)
        )
    else:
        (batch,) = jax_export.symbolic_shape("b")
        examples = (jax.ShapeDtypeStruct((batch, source.cfg.block_size), jnp.int32),)  # (B, T)
    exported = jax_export.export(jax.jit(forward))(*examples)
    (folder / STABLEHLO_FILE).write_bytes(exported.serialize())
    exporter = f"jax {jax.__version__}: jax.export, serialized"
    spec.write_manifest(folder, spec.manifest("stablehlo", STABLEHLO_FILE, source, exporter))
    return folder


def reload(folder) -> dict:
    """The export reloaded from `folder` with jax.export.deserialize (as the server loads it),
    taking the eager model's inputs (eager_logits) to its logits."""
    blob = bytearray((pathlib.Path(folder) / STABLEHLO_FILE).read_bytes())
    call = jax.jit(jax_export.deserialize(blob).call)
    return {
        "StableHLO": lambda *inputs: np.asarray(call(*(jnp.asarray(a, jnp.int32) for a in inputs)))
    }


def export_run(run_dir, folder) -> pathlib.Path:
    """`week1 serve RUN_DIR`: the run's newest checkpoint, exported into `folder` and checked
    (labs/serving.py)."""
    return spec.export_run(sys.modules[__name__], run_dir, folder)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run serving --framework jax`: a model (trained here, or cfg.run_dir's), exported
    and checked, then served and loaded at every batching setting (labs/serving.py)."""
    return spec.run(cfg, run, sys.modules[__name__])


def bench(cfg: spec.Config) -> dict:
    """`week1 bench serving`: the forward pass a server runs, jitted and exported, on 1 and on
    32 windows (an initialised model: the speed does not depend on the weights)."""
    model = lm.build_model(cfg, spec.load_corpus().vocab_size)
    with tempfile.TemporaryDirectory() as tmp:
        exported = reload(export(model, tmp, spec.Source(cfg, "bench", "jax", 0)))
    graphdef, params = nnx.split(model)
    jitted = jax.jit(lambda params, x: nnx.merge(graphdef, params)(x))
    forwards = {"jax jit": lambda x: np.asarray(jitted(params, jnp.asarray(x))), **exported}
    return spec.time_forwards(forwards, cfg.block_size, devices.sync)
