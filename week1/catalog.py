"""The lab table of docs/labs.md: id, day, title and the topic each lab covers.

A lab counts as implemented when its four files exist: labs/<id>.py,
week1_jax/<id>.py, week1_torch/<id>.py and parity_tests/test_<id>.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib

from week1 import parallel
from week1.config import UsageError, did_you_mean

ROOT = pathlib.Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Lab:
    id: str
    day: int
    title: str
    topic: str

    @property
    def implemented(self) -> bool:
        files = (
            f"labs/{self.id}.py",
            f"week1_jax/{self.id}.py",
            f"week1_torch/{self.id}.py",
            f"parity_tests/test_{self.id}.py",
        )
        return all((ROOT / f).exists() for f in files)


LABS = (
    Lab(
        "environment",
        1,
        "Reproducible environment, Hub",
        "versions, devices, export a model as a Hub-style folder",
    ),
    Lab(
        "serving",
        1,
        "Serving: the production mindset",
        "export (ONNX, StableHLO), week1 serve: batching, metrics, graceful stop; load test",
    ),
    Lab(
        "training_loop",
        2,
        "Training loops",
        "explicit loop for a character-level MLP LM: eval, sampling, checkpoint/resume",
    ),
    Lab(
        "backprop",
        2,
        "Backpropagation by hand",
        "the char-MLP's backward pass written out, against autograd and finite differences",
    ),
    Lab(
        "adamw", 2, "AdamW from scratch", "AdamW written from scratch against optax and torch.optim"
    ),
    Lab(
        "regularization",
        2,
        "Dropout, layer norm, weight decay",
        "ablation grid of regularisers on the LM",
    ),
    Lab(
        "bpe",
        3,
        "BPE from scratch",
        "byte-level BPE trainer and encoder, merge-identical to HF tokenizers",
    ),
    Lab(
        "tokenizers_compare",
        3,
        "BPE vs WordPiece vs Unigram",
        "compression, fertility, unknown rate on English, code, multilingual",
    ),
    Lab(
        "vocabulary",
        3,
        "Vocabulary size and management",
        "BPE size sweep, word-level OOV, adding tokens, the char LM per unit (bits/char)",
    ),
    Lab(
        "special_tokens",
        3,
        "Special tokens, padding, masks",
        "templates, padding/truncation, attention masks, masked loss",
    ),
    Lab(
        "word2vec",
        4,
        "Word2Vec",
        "skip-gram with negative sampling and CBOW; similarity and analogy evaluation",
    ),
    Lab(
        "embedding_viz", 4, "t-SNE visualisation", "t-SNE and PCA of trained and pretrained vectors"
    ),
    Lab(
        "pretrained_embeddings",
        4,
        "Pretrained and contextual embeddings",
        "word2vec subset; MiniLM encoder in Flax and torch",
    ),
    Lab(
        "elmo",
        4,
        "ELMo: contextual embeddings from a biLM",
        "biLSTM LM on the from-scratch LSTM; scalar mix; sense and sentiment probes",
    ),
    Lab(
        "embedding_tradeoffs",
        4,
        "Embedding dimensions and trade-offs",
        "word2vec dimension sweep; Matryoshka head on MiniLM; int8/binary quantisation",
    ),
    Lab("rnn", 5, "RNN, LSTM, GRU", "cells from scratch plus each framework's built-in"),
    Lab(
        "cnn_classifier",
        5,
        "CNNs for text classification",
        "Kim-style CNN sentiment/topic classifier",
    ),
    Lab(
        "long_range",
        5,
        "Limits that led to Transformers",
        "copy/recall accuracy vs distance; gradient norm vs time step",
    ),
    Lab(
        "lr_schedules",
        6,
        "Warmup, cosine decay",
        "warmup+cosine, linear, constant-with-warmup, inverse-sqrt",
    ),
    Lab(
        "grad_accumulation",
        6,
        "Gradient accumulation",
        "k micro-batches == one k-times batch, token-count normalisation",
    ),
    Lab(
        "mixed_precision",
        6,
        "AMP, bf16/fp16",
        "bf16 policy, autocast, loss scaling, number formats",
    ),
    Lab(
        "monitoring",
        6,
        "Stability, monitoring, debugging",
        "grad norms, update ratio, clipping, NaN detection",
    ),
    Lab("profiling", 6, "Profiling", "jax.profiler and torch.profiler traces; step breakdown"),
    Lab(
        "gpu_basics",
        7,
        "GPU architecture, number formats",
        "matmul throughput vs size and dtype (roofline)",
    ),
    Lab(
        "gpu_kernels",
        7,
        "CUDA programming model",
        "vector add, fused softmax, tiled matmul, fused loss in Triton and Pallas",
    ),
    Lab("data_parallel", 7, "Data parallelism", "pmap, jit + NamedSharding, shard_map; torch DDP"),
    Lab("fsdp", 7, "FSDP", "torch FSDP2; JAX parameter sharding over an fsdp mesh axis"),
    Lab(
        "model_parallel",
        7,
        "Tensor and pipeline parallelism",
        "Megatron TP (NamedSharding, shard_map, DTensor, hand-written); GPipe and 1F1B pipelines",
    ),
    Lab(
        "benchmark",
        7,
        "Performance benchmarking",
        "every workload in JAX jit, torch eager and torch.compile",
    ),
)
FRAMEWORKS = ("jax", "torch")


def get(lab_id: str) -> Lab:
    """The catalogue entry for `lab_id`, or a UsageError naming the ids that exist."""
    for lab in LABS:
        if lab.id == lab_id:
            return lab
    ids = [entry.id for entry in LABS]
    raise UsageError(f"unknown lab {lab_id!r}{did_you_mean(lab_id, ids)}; labs: {', '.join(ids)}")


def require_implemented(lab_id: str) -> Lab:
    lab = get(lab_id)
    if not lab.implemented:
        done = ", ".join(entry.id for entry in LABS if entry.implemented)
        raise UsageError(f"lab {lab_id!r} is not implemented yet; implemented: {done}")
    return lab


def spec(lab_id: str):
    """The lab's framework-free module, labs/<id>.py (its docstring is the handout)."""
    return importlib.import_module(f"labs.{require_implemented(lab_id).id}")


def framework_module(lab_id: str, framework: str):
    """week1_jax.<id> or week1_torch.<id>, imported on demand (the CLI never imports both up
    front)."""
    if framework not in FRAMEWORKS:
        raise UsageError(f"unknown framework {framework!r}; allowed: {', '.join(FRAMEWORKS)}")
    lab = require_implemented(lab_id)
    if framework == "jax" and getattr(spec(lab_id), "MULTI_DEVICE", False):
        parallel.use_host_devices()  # before jax starts: 8 simulated devices on a CPU
    package = f"week1_{framework}"
    try:
        return importlib.import_module(f"{package}.{lab.id}")
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] in (
            "jax",
            "flax",
            "optax",
            "orbax",
            "chex",
            "torch",
        ):
            raise UsageError(
                f"framework {framework!r} needs {err.name!r}, which is not installed; pip "
                f"install 'week1[{framework}]'"
            ) from None
        raise
