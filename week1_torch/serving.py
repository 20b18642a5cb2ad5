"""Serving lab in PyTorch: export the char-MLP LM with torch.export (an ExportedProgram, and ONNX
from it for onnxruntime), check the exports against the eager model; labs/serving.py serves
and loads them.

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
from week1.timing import time_calls
from week1_torch.lib import charlm as lm
from week1_torch.lib import checkpoint, devices
from week1_torch.lib.models import CharMLP

ONNX_FILE, PROGRAM_FILE = "model.onnx", "model.pt2"
CPU = torch.device("cpu")


def restore_run(run_dir) -> tuple[CharMLP, spec.Source]:
    """The model of a training_loop run folder's newest intact checkpoint (its weights only:
    serving needs no optimizer state) and where it comes from."""
    cfg, framework = spec.read_run(run_dir)
    model = lm.build_model(cfg, spec.load_corpus().vocab_size)
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
def eager_logits(model: CharMLP, x: np.ndarray) -> np.ndarray:
    """The eager model's next-character logits: x (B, T) ids -> (B, V) float32."""
    model.eval()
    return model(devices.to_device(x, dtype=torch.long)[0]).cpu().numpy()


def export(model: CharMLP, folder, source: spec.Source) -> pathlib.Path:
    """torch.export the forward pass with a symbolic batch dimension; save the ExportedProgram
    (torch.export.save) and the ONNX file made from it (torch.onnx.export, dynamo=True), which
    the server runs on onnxruntime; serving.json names the ONNX file."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = devices.place(model.eval(), CPU)
    example = torch.zeros((2, source.cfg.block_size), dtype=torch.long)  # (B, T)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, folder / PROGRAM_FILE)
    torch.onnx.export(
        program,
        (example,),
        folder / ONNX_FILE,
        dynamo=True,
        input_names=["ids"],
        output_names=["logits"],
        external_data=False,  # one self-contained file (the weights are 0.3 MB)
        verbose=False,
    )
    exporter = f"torch {torch.__version__}: torch.export + torch.onnx.export(dynamo=True)"
    spec.write_manifest(folder, spec.manifest("onnx", ONNX_FILE, source, exporter))
    return folder


def reload(folder) -> dict:
    """The exports reloaded from `folder`, each as x (B, T) ids -> (B, V) logits: the ONNX file
    on onnxruntime (as the server runs it) and the ExportedProgram from torch.export.load."""
    import onnxruntime as ort

    folder = pathlib.Path(folder)
    session = ort.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    program = torch.export.load(folder / PROGRAM_FILE).module()

    @torch.no_grad()
    def from_program(x):
        return program(torch.from_numpy(np.asarray(x, np.int64))).numpy()

    return {
        "ONNX on onnxruntime": lambda x: session.run(None, {"ids": np.asarray(x, np.int64)})[0],
        "ExportedProgram": from_program,
    }


def export_run(run_dir, folder) -> pathlib.Path:
    """`week1 serve RUN_DIR`: the run's newest checkpoint, exported into `folder`."""
    model, source = restore_run(run_dir)
    return export(model, folder, source)


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
    return {
        f"{name}, batch {len(x)}": time_calls(lambda: forward(x), devices.sync)
        for x in spec.bench_batches(cfg.block_size)
        for name, forward in forwards.items()
    }
