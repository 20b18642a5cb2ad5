"""Serving lab in PyTorch: export the char-MLP LM, or a cnn_classifier run's KimCNN, with
torch.export (an ExportedProgram, and ONNX from it for onnxruntime), check the exports against
the eager model; labs/serving.py serves and loads them.

Read beside week1_jax/serving.py: the same functions in the same order.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

import numpy as np
import torch

from labs import serving as spec
from week1 import charlm, loop
from week1_torch.lib import charlm as lm
from week1_torch.lib import checkpoint, devices
from week1_torch.lib.models import CharMLP, KimCNN

ONNX_FILE, PROGRAM_FILE = "model.onnx", "model.pt2"
CPU = torch.device("cpu")


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
        )
    return lm.build_model(cfg, spec.load_corpus().vocab_size)


def restore_run(run_dir) -> tuple[CharMLP | KimCNN, spec.Source]:
    """The model of a training_loop or cnn_classifier run folder's newest intact checkpoint
    (its weights only: serving needs no optimizer state) and where it comes from."""
    cfg, framework = spec.read_run(run_dir)
    model = build_model(cfg)
    step, state = checkpoint.load_state(pathlib.Path(run_dir) / "checkpoints")
    model.load_state_dict(state["model"])
    return model, spec.Source(cfg, pathlib.Path(run_dir).name, framework, step)


def train_model(cfg: spec.Config, run) -> tuple[CharMLP, spec.Source]:
    """cfg.steps of the char LM through the library's one loop (lib/charlm.py): checkpointed in
    the run folder, resumable, stopped cleanly by a signal."""
    model, history = lm.train(cfg, charlm.load_data(cfg), ctx=loop.Context.of_run(run))
    step = history.steps[-1] if history.steps else 0
    return model, spec.Source(cfg, run.dir.name, "torch", step)


@torch.no_grad()
def eager_logits(model: CharMLP | KimCNN, *inputs: np.ndarray) -> np.ndarray:
    """The eager model's logits: the LM's x (B, T) ids -> (B, V) next-character logits, the
    classifier's ids (B, T), lengths (B,) -> (B, C) class logits; float32. The inputs go where
    the model is (export leaves it on the CPU)."""
    model.eval()
    device = next(model.parameters()).device
    return model(*devices.to_device(*inputs, dtype=torch.long, device=device)).cpu().numpy()


def export(model: CharMLP | KimCNN, folder, source: spec.Source) -> pathlib.Path:
    """torch.export the forward pass with a symbolic batch dimension (and for the classifier a
    symbolic text length, at least MIN_WORDS); save the ExportedProgram (torch.export.save) and
    the ONNX file made from it (torch.onnx.export, dynamo=True), which the server runs on
    onnxruntime; serving.json names the ONNX file."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = devices.place(model.eval(), CPU)
    batch = torch.export.Dim("batch", min=1, max=4096)
    if source.kind == spec.CLASSIFIER:
        T = spec.MIN_WORDS
        length = torch.export.Dim("length", min=T, max=max(source.cfg.max_length, T))
        examples = (
            torch.zeros((2, T), dtype=torch.long),  # ids (B, T)
            torch.full((2,), T, dtype=torch.long),  # lengths (B,)
        )
        dynamic = {"ids": {0: batch, 1: length}, "lengths": {0: batch}}
        names = ["ids", "lengths"]
    else:
        examples = (torch.zeros((2, source.cfg.block_size), dtype=torch.long),)  # (B, T)
        dynamic, names = {"x": {0: batch}}, ["ids"]
    program = torch.export.export(model, examples, dynamic_shapes=dynamic)
    torch.export.save(program, folder / PROGRAM_FILE)
    torch.onnx.export(
        program,
        examples,
        folder / ONNX_FILE,
        dynamo=True,
        input_names=names,
        output_names=["logits"],
        external_data=False,  # one self-contained file (the LM's weights are 0.3 MB)
        verbose=False,
    )
    exporter = f"torch {torch.__version__}: torch.export + torch.onnx.export(dynamo=True)"
    spec.write_manifest(folder, spec.manifest("onnx", ONNX_FILE, source, exporter))
    return folder


def reload(folder) -> dict:
    """The exports reloaded from `folder`, each taking the eager model's inputs (eager_logits)
    to its logits: the ONNX file on onnxruntime (as the server runs it) and the ExportedProgram
    from torch.export.load."""
    import onnxruntime as ort

    folder = pathlib.Path(folder)
    session = ort.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    program = torch.export.load(folder / PROGRAM_FILE).module()

    def from_onnx(*inputs):
        feed = {n: np.asarray(a, np.int64) for n, a in zip(names, inputs, strict=True)}
        return session.run(None, feed)[0]

    @torch.no_grad()
    def from_program(*inputs):
        return program(*(torch.from_numpy(np.asarray(a, np.int64)) for a in inputs)).numpy()

    return {"ONNX on onnxruntime": from_onnx, "ExportedProgram": from_program}


def export_run(run_dir, folder) -> pathlib.Path:
    """`week1 serve RUN_DIR`: the run's newest checkpoint, exported into `folder` and checked
    (labs/serving.py)."""
    return spec.export_run(sys.modules[__name__], run_dir, folder)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run serving --framework torch`: a model (trained here, or cfg.run_dir's), exported
    and checked, then served and loaded at every batching setting (labs/serving.py)."""
    return spec.run(cfg, run, sys.modules[__name__])


def bench(cfg: spec.Config) -> dict:
    """`week1 bench serving`: the forward pass a server runs, eager and exported, on 1 and on
    32 windows (an initialised model: the speed does not depend on the weights)."""
    model = lm.build_model(cfg, spec.load_corpus().vocab_size)
    with tempfile.TemporaryDirectory() as tmp:
        exported = reload(export(model, tmp, spec.Source(cfg, "bench", "torch", 0)))
    model = devices.place(model)
    forwards = {"torch eager": lambda x: eager_logits(model, x), **exported}
    return spec.time_forwards(forwards, cfg.block_size, devices.sync)
