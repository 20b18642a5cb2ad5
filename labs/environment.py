"""Lab: a reproducible environment, and the Hugging Face tools in use (Hub, Accelerate, PEFT).

What it teaches
---------------
A result is only as good as the environment that can rebuild it. This lab installs the
project three ways from one pyproject.toml, builds it into two container images, asks the
machine what is wrong with it (`week1 env`), then uses the Hugging Face libraries on the
labs' own models: the Hub's folder format to move a trained model between frameworks,
Accelerate for the data-parallel step the data_parallel lab wrote by hand, and PEFT's LoRA
on the MiniLM encoder of the pretrained_embeddings lab, written out again in Flax nnx.

1. Three installs, one set of versions
--------------------------------------
pip (what CI runs):

    scripts/setup.sh        # .venv, pip install -c constraints.txt -e '.[all,test]', data pkgs

constraints.txt pins every version. On Linux, PyPI's torch wheel is the CUDA build; the CPU
build of the same version (2.13.0+cpu) comes from PyTorch's index
(`--extra-index-url https://download.pytorch.org/whl/cpu`) or, on these machines, from the
wheel pip's configuration points at (find-links).

uv, from the committed lock:

    uv sync --locked --all-extras    # .venv exactly as uv.lock says (fails if the lock is stale)
    uv lock                          # after editing pyproject.toml: re-resolve, rewrite uv.lock
    uv venv && uv pip install -c constraints.txt -e '.[all,test]' \
        --extra-index-url https://download.pytorch.org/whl/cpu        # uv as a faster pip

`uv lock` reads no constraints file, so pyproject.toml's [tool.uv] constraint-dependencies
repeats constraints.txt's pins; tests/test_lockfiles.py checks, offline, that the two lists
and uv.lock agree and that uv.lock was made from this pyproject.toml. The lock is universal
(every platform, Python 3.11 to 3.14) and was resolved against PyPI: there torch 2.13.0 is the
CUDA 13 build on Linux x86_64 (with its nvidia-* wheels, a few GB) and the CPU build on macOS.
A CPU-only lock for Linux needs PyTorch's CPU index in the resolution ([[tool.uv.index]]
name = "pytorch-cpu", explicit = true, and [tool.uv.sources] torch = { index = "pytorch-cpu" }),
which the machine that made this lock could not reach; `uv sync` on a CPU box therefore
installs the CUDA wheels, which run on the CPU too, or use the `uv pip` line above.

Poetry 2 reads the same [project] table (PEP 621):

    poetry check                             # the metadata is valid
    poetry install --dry-run --all-extras    # resolves and lists what it would install
    poetry install --all-extras              # installs, writing poetry.lock

Poetry resolves for itself, within the same version ranges; its poetry.lock is not committed
(uv.lock is the lock of record). Two things in pyproject.toml are there for Poetry: the `all`
extra lists its packages instead of "week1[jax,torch]" (Poetry refuses a package that depends
on itself), and PyPI is named through its simple index, the one API the mirror of this
machine serves (Poetry's default lookups use PyPI's JSON API).

2. Containers
-------------
One Dockerfile, two targets. The CPU image is built in two stages: the first has pip, the
compilers' leftovers and the download caches, the second copies the finished virtual
environment and data and runs as an unprivileged user (uid 10001), so a process that escapes
the labs owns nothing. Its base is a full version tag, python:3.11.14-slim-bookworm (the
Dockerfile says why a tag and how to pin the digest). .dockerignore keeps .venv, .git, runs/
and caches out of the build context. Without a Docker engine the tests still lint the file
(hadolint) and check that every path it copies exists.

    docker build --target cpu -t week1:cpu .
    docker run --rm week1:cpu env
    docker run --rm -v "$PWD/runs:/work/runs" week1:cpu run training_loop --framework jax
    docker build -t week1 .                                  # the GPU image (default target)
    docker run --rm --gpus all week1 env
    docker run --rm --gpus all -v "$PWD/runs:/work/runs" week1 compare training_loop

3. `week1 env`, a doctor
------------------------
It prints the facts (versions; each framework's devices; CUDA, cuDNN and NCCL versions where
there is a GPU; bf16, TF32 and torch.compile support; threads, load, XLA_FLAGS; the data
packages found), then each problem it detects with the one line that fixes it: a CPU-only
torch on a machine with an NVIDIA GPU, jax without its CUDA plugin, OpenMP oversubscription
(more threads than cores, or every core claimed on a busy machine), no C++ compiler for
torch.compile, a missing data package, and, with --parity (or inside `week1 parity`), an
environment variable that forces TF32 on behind the parity tests' settings. `--json` prints
one document for machines (facts and problems).

4. The Hub format
-----------------
    week1 export runs/<training_loop run> hub/char-mlp [--parity parity.json]
    week1 push hub/char-mlp --repo-id you/char-mlp

The folder holds model.safetensors (torch state_dict names, float32), config.json (the
constructor's arguments, the vocabulary, where the model came from) and a model card
(README.md, written with huggingface_hub's ModelCard: metrics, config, framework, the lab's
parity rows from a `week1 parity --json` document, and the command that trained it). torch
writes it through PyTorchModelHubMixin (`CharMLPHub.from_pretrained(folder)` in
week1_torch/lib/hub.py reads it); the Flax side writes the same bytes itself and reads it
with week1_jax.lib.hub.from_pretrained. A folder from a JAX run loads in torch and gives the
same logits (week1 parity environment). `push` creates the repo and uploads the folder; with
no token (HF_TOKEN or `hf auth login`) or no network it stops in one line, sending nothing.

5. Accelerate, against what the labs wrote by hand
--------------------------------------------------
`--framework torch` starts 2 processes with torchrun (gloo on a CPU). Each trains the
data_parallel lab's model twice from the same weights on the same global batches: first the
hand-written DDP loop (week1_torch/lib/parallel.py), then the same step with Accelerate's
Accelerator, in `accumulate` micro-batches; the losses agree to float32 rounding. What the
Accelerator hides:

    labs (by hand)                                Accelerate
    torchrun, parallel.process_group()            `accelerate launch` (torchrun underneath,
                                                  --multi_gpu; --cpu starts ONE process unless
                                                  MPI is there); Accelerator() joins the group
    devices.place(model, device)                  prepare() moves the model to accelerator.device
    DistributedDataParallel(model)                prepare() wraps it
    each rank takes its rows of the global batch  a prepared DataLoader shards it (here the rows
                                                  are cut by hand, spec.micro_batches)
    grad_accumulation: losses / k, no_sync        accumulate(model): no_sync on all but the last
    until the last micro-batch                    micro-batch, backward() divides by k,
                                                  optimizer.step() is a no-op in between
    scheduler.step() once per optimizer step      a prepared scheduler steps once per process per
                                                  step unless split_batches=True ("the batch is
                                                  the global one"), which this lab sets
    mixed_precision lab: autocast, GradScaler     mixed_precision="bf16" wraps forward in
                                                  autocast (fp16 adds the scaler)
    dist.all_reduce(loss) / N for logging         accelerator.reduce(loss, "mean")

The same workers run under `accelerate launch --multi_gpu --num_processes=2 -m
week1_torch.environment --out=DIR` (a slow test compares the two launchers).

6. LoRA with PEFT, and written out in Flax
------------------------------------------
LoRA (Hu et al. 2021) freezes a pretrained Linear W and learns a low-rank update:
y = xW + b + (alpha/r) x A B with A (in, r), B (r, out), B starting at 0. Here r = 8 on the
query and value projections of MiniLM's 6 layers, plus a new linear head on the sentence
embedding, for the polarity task (week1.data.labelled: Rotten Tomatoes snippets, fresh or
rotten). torch uses PEFT's LoraConfig and get_peft_model on transformers' BertModel; JAX
writes the same module in Flax nnx (week1_jax/lib/lora.py) on the from-scratch encoder. From
the same adapter initialisation their gradients agree at F32 and F64, and the adapter one
trains saves in PEFT's format (adapter_config.json, adapter_model.safetensors) and loads into
the other with the same predictions.

Both frameworks train LoRA and full fine-tuning side by side on the same batches, then fit the
frozen-encoder baseline (scikit-learn's logistic regression on the encoder's sentence
embeddings, C chosen on the validation sentences). The table gives each method's trainable
parameters, their share of the encoder's and test accuracy (each method's time per step is
`week1 compare environment`'s: there each trains alone). To stay within
minutes on a 2-core CPU the default run is small and says so: the first 1,280 training
sentences (one epoch of 80 steps of 16), 32 tokens per sentence (longer snippets are cut),
300 validation and 500 test sentences. What to look for: LoRA trains a third of a percent of
the parameters full fine-tuning does, each of its steps costs less (no optimizer state for
the encoder, no weight gradients for the frozen matrices, though the backward pass still
runs through every layer), and the two end close in accuracy; the frozen encoder with a
linear classifier is the bar both must clear to justify fine-tuning at all. With so few
steps and sentences the ranking can move with --seed: compare several before concluding.

For serving, the torch run folds the adapter into the weights it wraps, W' = W + (alpha/r) B A
(week1_torch/lib/lora.py: merged_weight, written out; PEFT's merge_and_unload is the
reference): the summary's "LoRA merged by hand vs PEFT" should be 0 or float32 rounding, and
"merged model max |dlogits|" near rounding too. The merged model is the pretrained
architecture again, with no adapter left to run: this is why LoRA adds no inference latency.

Run it
------
    week1 run environment --framework jax          # hub, lora (accelerate is torch only)
    week1 run environment --framework torch        # hub, accelerate, lora
    week1 run environment --framework torch --parts=accelerate --mixed_precision=bf16
    week1 run environment --framework jax --steps=300 --train_sentences=4800  # longer
    week1 parity environment
    week1 compare environment [--quick]                 # LoRA, full: JAX vs torch, curves
    week1 env; week1 env --json; week1 env --parity

The run folder holds hub/ (the exported char MLP), char_mlp/ (its checkpoint), accelerate/
(both loops' losses), adapter/ (PEFT format), results.md (the table) and curves.png (loss and
validation accuracy of both fine-tunings).

`week1 compare environment` fine-tunes each method alone in JAX, torch and torch.compile from
the same pretrained file, adapters and head, on the same batches (no dropout): per method a
table and lora.png / full.png, whose loss curves lie on each other (the difference panel
near float32 rounding) and whose validation accuracies agree; the speeds are the same run's.

History: docs/history.md#hu-2021, #devlin-2019, #frameworks-2016
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from week1 import charlm, convert, loop, report
from week1.comparison import Case, Curves
from week1.config import AT_LEAST_1, POSITIVE, Range, require
from week1.data import labelled, minilm
from week1.exercises import Exercise, Part
from week1.tolerances import TRAJECTORY

PARTS = ("hub", "accelerate", "lora")
TARGETS = ("query", "key", "value")  # the attention projections LoRA may adapt
PRECISIONS = ("no", "bf16")  # Accelerator(mixed_precision=...) on a CPU
N_LAYERS = convert.MINILM_LAYERS
PEFT_PREFIX = "base_model.model."  # PEFT's names: the wrapped model's, under this prefix
ADAPTER_DIR = "adapter"  # in the run folder: the trained LoRA adapter, PEFT's format
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"


@dataclasses.dataclass(frozen=True)
class Config:
    parts: str = "hub,accelerate,lora"  # comma-separated; accelerate is torch only
    seed: int = 0
    # hub: the training_loop lab's char MLP, trained briefly, exported, loaded back
    hub_steps: int = 300
    # accelerate (torch): the data_parallel step with Accelerator against hand-written DDP
    processes: int = 2
    accel_steps: int = 20
    accel_batch_size: int = 64  # global batch, split over processes and micro-batches
    accumulate: int = 2  # micro-batches per optimizer step (Accelerator.accumulate)
    mixed_precision: str = "no"  # no or bf16 (Accelerator's autocast)
    # lora: MiniLM fine-tuned for polarity, LoRA and full fine-tuning side by side
    steps: int = 80  # fine-tuning steps (both methods, the same batches)
    batch_size: int = 16
    lr: float = 4e-3  # LoRA's adapters, and the classifier head of both methods
    full_lr: float = 5e-5  # the encoder's under full fine-tuning
    warmup_steps: int = 8
    weight_decay: float = 0.01  # on matrices only
    lora_rank: int = 8
    lora_alpha: float = 16.0  # the adapter's output is scaled by lora_alpha / lora_rank
    lora_targets: str = "query,value"  # comma-separated, of query, key, value
    max_length: int = 32  # WordPiece tokens per sentence, [CLS] and [SEP] included; cut after
    train_sentences: int = 1280  # the first of polarity's shuffled training split: one epoch
    val_sentences: int = 300  # picks the logistic regression's C; curves.png
    test_sentences: int = 500
    eval_every: int = 40
    eval_batch_size: int = 100
    checkpoint_every: int = 0  # 0: a checkpoint only where a run is stopped

    RANGES = {
        "hub_steps": AT_LEAST_1,
        "processes": Range(1, 8),
        "accel_steps": AT_LEAST_1,
        "accel_batch_size": AT_LEAST_1,
        "accumulate": Range(1, 64),
        "full_lr": POSITIVE,
        "lora_rank": Range(1, 384),
        "lora_alpha": POSITIVE,
        "max_length": Range(8, 512),
        "train_sentences": Range(10, 10_000),
        "val_sentences": Range(10, 1_200),
        "test_sentences": Range(10, 1_200),
        "eval_batch_size": AT_LEAST_1,
    }

    def check(self) -> None:
        unknown = set(self.part_list) - set(PARTS)
        require(
            self.part_list and not unknown,
            f"parts={self.parts!r}: a comma-separated choice of {', '.join(PARTS)}",
        )
        require(
            self.mixed_precision in PRECISIONS,
            f"mixed_precision={self.mixed_precision!r}: allowed: {', '.join(PRECISIONS)}",
        )
        share = self.processes * self.accumulate
        require(
            self.accel_batch_size % share == 0,
            f"accel_batch_size={self.accel_batch_size}: must split over processes={self.processes}"
            f" x accumulate={self.accumulate} (a multiple of {share})",
        )
        targets = self.target_list
        require(
            targets and set(targets) <= set(TARGETS) and len(set(targets)) == len(targets),
            f"lora_targets={self.lora_targets!r}: a comma-separated choice of {', '.join(TARGETS)}",
        )
        require(
            self.warmup_steps <= self.steps,
            f"warmup_steps={self.warmup_steps}: must be in [0, steps={self.steps}]",
        )
        require(
            self.batch_size <= self.train_sentences,
            f"batch_size={self.batch_size}: must be <= train_sentences={self.train_sentences}",
        )

    @property
    def part_list(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.parts.split(",") if p.strip())

    @property
    def target_list(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.lora_targets.split(",") if t.strip())


# --- the Hub part: the training_loop lab's model, exported --------------------------------


def char_mlp_config(cfg: Config) -> charlm.Config:
    """The training_loop config of the char MLP this lab trains and exports: hub_steps steps,
    a checkpoint at the end (what `week1 export` reads), evaluated once."""
    return charlm.Config(
        steps=cfg.hub_steps,
        seed=cfg.seed,
        warmup_steps=min(100, cfg.hub_steps // 10),
        eval_every=cfg.hub_steps,
        checkpoint_every=cfg.hub_steps,
    )


# --- the Accelerate part ------------------------------------------------------------------


def accelerate_config(cfg: Config) -> charlm.Config:
    """The training_loop model, data and optimizer the Accelerate and DDP loops share (dropout
    off: per-process dropout masks would differ from one process's)."""
    return charlm.Config(
        steps=cfg.accel_steps,
        batch_size=cfg.accel_batch_size,
        seed=cfg.seed,
        warmup_steps=min(20, cfg.accel_steps),
        dropout=0.0,
    )


def micro_batches(x: np.ndarray, y: np.ndarray, rank: int, processes: int, accumulate: int):
    """This process's rows of a global batch (B, ...), cut into `accumulate` micro-batches of
    B / (processes * accumulate) rows each: rank r holds rows [r B/N, (r+1) B/N)."""
    rows = x.shape[0] // processes
    x, y = x[rank * rows : (rank + 1) * rows], y[rank * rows : (rank + 1) * rows]
    size = rows // accumulate
    return [(x[k * size : (k + 1) * size], y[k * size : (k + 1) * size]) for k in range(accumulate)]


# --- the LoRA part: data ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Split:
    """Sentences as fixed-length MiniLM token ids (one shape: one compiled step)."""

    ids: np.ndarray  # (N, T) int32, [PAD] = 0 after each sentence
    mask: np.ndarray  # (N, T) int32, 1 on real tokens
    labels: np.ndarray  # (N,) int32
    texts: tuple[str, ...]

    def rows(self, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ids, type_ids, mask, labels) of `rows`; type ids are 0 (single sentences)."""
        ids = self.ids[rows]
        return ids, np.zeros_like(ids), self.mask[rows], self.labels[rows]


@dataclasses.dataclass(frozen=True)
class Data:
    config: minilm.BertConfig
    weights: dict  # the packaged checkpoint, state_dict names
    train: Split
    val: Split
    test: Split
    label_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


def encode_split(tokenizer, texts, labels, max_length: int) -> Split:
    batch = minilm.batch(tokenizer, list(texts), max_length, length=max_length)
    return Split(batch.ids, batch.mask, np.asarray(labels, np.int32), tuple(texts))


def load_data(cfg: Config) -> Data:
    """Polarity (week1.data.labelled: Rotten Tomatoes snippets, a stratified seeded split) cut
    to the first train/val/test_sentences of each split, tokenised by MiniLM's WordPiece."""
    corpus = labelled.prepare("polarity")
    tokenizer = minilm.load_tokenizer(cfg.max_length)
    sizes = {"train": cfg.train_sentences, "validation": cfg.val_sentences}
    sizes["test"] = cfg.test_sentences
    splits = {}
    for name, n in sizes.items():
        part = corpus.splits[name][:n]
        splits[name] = encode_split(tokenizer, part["text"], part["label"], cfg.max_length)
    weights = minilm.load_weights()
    return Data(
        minilm.load_config(),
        weights,
        splits["train"],
        splits["validation"],
        splits["test"],
        corpus.label_names,
    )


def train_batch(data: Data, cfg: Config, step: int):
    """Training batch `step` (from 1): (ids, type_ids, mask, labels), the same in both
    frameworks; every epoch sees every training sentence once (labelled.train_rows)."""
    return data.train.rows(
        labelled.train_rows(len(data.train.labels), cfg.batch_size, cfg.seed, step)
    )


def eval_batches(split: Split, batch_size: int):
    """Every row of `split` once, in order."""
    n = len(split.labels)
    return [split.rows(np.arange(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]


# --- the LoRA part: weights -----------------------------------------------------------------


def lora_map(targets: tuple[str, ...]) -> tuple:
    """PEFT adapter file names <-> Flax paths of week1_jax's LoRA classifier.

    PEFT stores lora_A as (r, in) and lora_B as (out, r), torch Linear layouts; the Flax
    factors are A (in, r) and B (r, out), so both transpose. The classifier head (PEFT's
    modules_to_save) is saved beside them.
    """
    rows = []
    for i in range(N_LAYERS):
        for t in targets:
            torch_name = f"{PEFT_PREFIX}bert.encoder.layer.{i}.attention.self.{t}"
            flax_name = f"bert.encoder.layer.{i}.attention.self.{t}"
            rows.append((f"{torch_name}.lora_A.weight", f"{flax_name}.lora_a", convert.TRANSPOSE))
            rows.append((f"{torch_name}.lora_B.weight", f"{flax_name}.lora_b", convert.TRANSPOSE))
    rows.append((f"{PEFT_PREFIX}head.weight", "head.kernel", convert.TRANSPOSE))
    rows.append((f"{PEFT_PREFIX}head.bias", "head.bias", convert.SAME))
    return tuple(rows)


def encoder_map() -> tuple:
    """The classifier's encoder (no pooler: the head reads mean-pooled tokens) and head under
    full fine-tuning: transformers' names under `bert.` <-> the Flax classifier's paths."""
    rows = [
        (f"bert.{torch}", f"bert.{flax}", how)
        for torch, flax, how in convert.MINILM
        if not torch.startswith("pooler.")
    ]
    rows.append(("head.weight", "head.kernel", convert.TRANSPOSE))
    rows.append(("head.bias", "head.bias", convert.SAME))
    return tuple(rows)


def adapter_init(cfg: Config, config: minilm.BertConfig, num_classes: int) -> dict:
    """The adapters' and head's starting values, PEFT names, from cfg.seed: what both
    frameworks load, so they start from the same numbers.

    As PEFT initialises them (Hu et al. 2021): A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform
    with a = sqrt(5)), B = 0, so the adapted model starts as the pretrained one; the head as
    torch.nn.Linear: U(-1/sqrt(C), 1/sqrt(C)).
    """
    rng = np.random.default_rng([cfg.seed, 13])
    C, r = config.hidden_size, cfg.lora_rank
    init = {}
    for torch_name, _, _ in lora_map(cfg.target_list):
        if torch_name.endswith("lora_A.weight"):
            init[torch_name] = rng.uniform(-(C**-0.5), C**-0.5, (r, C)).astype(np.float32)
        elif torch_name.endswith("lora_B.weight"):
            init[torch_name] = np.zeros((C, r), np.float32)
    bound = C**-0.5
    init[f"{PEFT_PREFIX}head.weight"] = rng.uniform(-bound, bound, (num_classes, C)).astype(
        np.float32
    )
    init[f"{PEFT_PREFIX}head.bias"] = rng.uniform(-bound, bound, num_classes).astype(np.float32)
    return init


def head_init(init: dict) -> dict:
    """The head's starting values under plain (full fine-tuning) names."""
    head = f"{PEFT_PREFIX}head."
    return {k.removeprefix(PEFT_PREFIX): v for k, v in init.items() if k.startswith(head)}


def adapter_config(cfg: Config) -> dict:
    """adapter_config.json's fields that say what the adapter is (PEFT fills the rest with its
    defaults when it reads the file)."""
    return {
        "peft_type": "LORA",
        "task_type": None,
        "r": cfg.lora_rank,
        "lora_alpha": cfg.lora_alpha,
        "lora_dropout": 0.0,
        "target_modules": list(cfg.target_list),
        "modules_to_save": ["head"],
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "base_model_name_or_path": minilm.PIP_NAME,
    }


def read_adapter_config(folder) -> dict:
    """The fields week1's LoRA implements, from a PEFT adapter folder; a ValueError for an
    adapter it does not (DoRA, rsLoRA, biases, other layers)."""
    raw = json.loads((folder / "adapter_config.json").read_text())
    unsupported = {
        "peft_type": raw.get("peft_type") != "LORA",
        "use_dora": raw.get("use_dora", False),
        "use_rslora": raw.get("use_rslora", False),
        "bias": raw.get("bias", "none") != "none",
        "target_modules": not set(raw.get("target_modules") or ()) <= set(TARGETS),
    }
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise ValueError(f"{folder}: adapter settings not implemented here: {', '.join(bad)}")
    return {
        "r": int(raw["r"]),
        "lora_alpha": float(raw["lora_alpha"]),
        "targets": tuple(sorted(raw["target_modules"], key=TARGETS.index)),
    }


def count(shapes) -> int:
    """Numbers in a collection of arrays (or shapes)."""
    return int(sum(math.prod(getattr(s, "shape", s)) for s in shapes))


# --- the LoRA part: results -----------------------------------------------------------------


def accuracy(labels, preds) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(preds)))


def val_accuracies(models: dict, predict, data: Data, cfg: Config) -> dict:
    """{"<method>_val_accuracy": ...}: train()'s evaluation, each model's accuracy on the
    validation split (`predict(model, split, batch_size)` -> logits, numpy)."""
    return {
        f"{m}_val_accuracy": accuracy(
            data.val.labels, predict(model, data.val, cfg.eval_batch_size).argmax(-1)
        )
        for m, model in models.items()
    }


def logistic_regression(features: dict, labels: dict) -> dict:
    """The frozen-encoder baseline: scikit-learn's logistic regression on sentence embeddings
    (mean of MiniLM's last layer, L2-normalised), C picked on the validation split.

    features, labels: {"train"|"validation"|"test": (N, C) / (N,)}. Returns test accuracy,
    the C picked, and the parameter count (C weights per class, one bias: binary is one row).
    """
    from sklearn.linear_model import LogisticRegression

    best = None
    for c in (0.1, 1.0, 10.0, 100.0):
        model = LogisticRegression(C=c, max_iter=2000)
        model.fit(features["train"], labels["train"])
        val = accuracy(labels["validation"], model.predict(features["validation"]))
        if best is None or val > best[0]:
            best = (val, c, model)
    _, c, model = best
    return {
        "test_accuracy": accuracy(labels["test"], model.predict(features["test"])),
        "C": c,
        "params": int(model.coef_.size + model.intercept_.size),
    }


def method_curves(history, method: str) -> Curves:
    """One fine-tuning method's run as `week1 compare` plots it, from the History that
    train() filled: its own loss per step and its validation accuracy per evaluation."""
    return Curves(
        steps=list(history.steps),
        train_loss=list(history.per_step[f"{method}_loss"]),
        eval_steps=list(history.eval_steps),
        evals=list(history.evals[f"{method}_val_accuracy"]),
        first_step_s=history.first_step_s,
        steps_per_s=history.steps_per_s,
    )


def results_rows(counts: dict, accuracies: dict, baseline: dict, encoder_params: int) -> list:
    """The table: method, trainable parameters, share of the encoder's, test accuracy."""
    rows = [
        (name, counts[m], f"{100 * counts[m] / encoder_params:.3g}%", accuracies[m])
        for m, name in (("lora", "LoRA (PEFT format)"), ("full", "full fine-tuning"))
    ]
    rows.append(
        (
            f"frozen encoder + logistic regression (C={baseline['C']:g})",
            baseline["params"],
            f"{100 * baseline['params'] / encoder_params:.3g}%",
            baseline["test_accuracy"],
        )
    )
    return rows


RESULT_COLUMNS = ["method", "trainable params", "of encoder", "test accuracy"]


def report_lora(run, cfg: Config, data: Data, rows: list, history, framework: str):
    """Print the table, write results.md and curves.png into the run folder."""
    title = (
        f"polarity, {len(data.train.labels)} training sentences, {cfg.steps} steps, "
        f"{cfg.max_length} tokens ({framework})"
    )
    report.table(title, RESULT_COLUMNS, rows)
    lines = [f"# {title}", "", "| " + " | ".join(RESULT_COLUMNS) + " |"]
    lines.append("|" + "---|" * len(RESULT_COLUMNS))
    lines += ["| " + " | ".join(f"{c:.4g}" if isinstance(c, float) else str(c) for c in row) + " |"
              for row in rows]  # fmt: skip
    run.path("results.md").write_text("\n".join(lines) + "\n")
    report.plot_panels(
        run.path("curves.png"),
        [
            report.Panel(
                {m: (history.steps, history.per_step[f"{m}_loss"]) for m in METHODS},
                "loss",
            ),
            report.Panel(
                {m: (history.eval_steps, history.evals[f"{m}_val_accuracy"]) for m in METHODS},
                "validation accuracy",
                styles={"lora": "o-", "full": "o-"},
            ),
        ],
        title=f"LoRA vs full fine-tuning ({framework})",
        xlabel="step",
    )


def lora_part(cfg: Config, run, framework: str, lab, compile: bool = False, extra=None) -> dict:
    """The LoRA part with the framework's module `lab`: fine-tune (LoRA and full, side by side),
    save the adapter in PEFT's format and load it back, fit the frozen-encoder baseline; the
    table in the run folder (results.md). `extra(lora_model, data, cfg, its test logits)` ->
    more of the summary (torch: its merge for serving). compile: torch only."""
    data = load_data(cfg)
    models, history = lab.train(cfg, data, ctx=loop.Context.of_run(run, compile))
    if run.should_stop():
        return {}
    batch_size = cfg.eval_batch_size
    logits = {m: lab.predict(models[m], data.test, batch_size) for m in models}
    accuracies = {m: accuracy(data.test.labels, logits[m].argmax(-1)) for m in models}
    lab.save_adapter(models["lora"], run.path(ADAPTER_DIR), cfg)
    reloaded = lab.predict(lab.load_adapter(run.path(ADAPTER_DIR), data), data.test, batch_size)
    frozen = lab.build_classifier(data, adapter_init(cfg, data.config, data.num_classes), "full")
    splits = {"train": data.train, "validation": data.val, "test": data.test}
    features = {
        s: lab.sentence_embeddings(frozen, split, batch_size) for s, split in splits.items()
    }
    baseline = logistic_regression(features, {s: split.labels for s, split in splits.items()})
    counts, head = lab.parameter_counts(models)
    rows = results_rows(counts, accuracies, baseline, counts["full"] - head)
    report_lora(run, cfg, data, rows, history, framework)
    summary = {
        "LoRA test accuracy": accuracies["lora"],
        "full fine-tuning test accuracy": accuracies["full"],
        "logistic regression test accuracy": baseline["test_accuracy"],
        "adapter reload max |dlogits|": float(np.abs(reloaded - logits["lora"]).max()),
    }
    if extra is not None:
        summary |= extra(models["lora"], data, cfg, logits["lora"])
    return summary


# --- `week1 compare environment`: each fine-tuning in JAX and torch from the same start ------

METHODS = ("lora", "full")
COMPARE_QUICK = {"steps": 24, "batch_size": 16, "max_length": 16, "warmup_steps": 3,
                 "train_sentences": 384, "val_sentences": 64, "eval_every": 8}  # fmt: skip
COMPARE_TEST = {"steps": 3, "batch_size": 4, "max_length": 16, "warmup_steps": 1,
                "train_sentences": 16, "val_sentences": 16, "eval_every": 3}  # fmt: skip


def compare_cases(cfg: Config) -> list[Case]:
    """LoRA and full fine-tuning, each from the same pretrained file and the same adapters and
    head (start_weights), on the same batches, no dropout: F32 losses over many AdamW steps of
    two different encoders' code (transformers' and the from-scratch Flax one): TRAJECTORY."""
    return [Case(method, "val accuracy", TRAJECTORY) for method in METHODS]


def start_weights(cfg: Config, data: Data, method: str) -> dict:
    """What a method starts from besides the pretrained encoder, PEFT's names, numpy: LoRA
    its adapters and the head (adapter_init), full fine-tuning the head alone."""
    init = adapter_init(cfg, data.config, data.num_classes)
    if method == "lora":
        return init
    return {k: v for k, v in init.items() if k.startswith(f"{PEFT_PREFIX}head.")}


def prepare(out_dir=None) -> list:
    """`week1 prepare environment`: the char-MLP data and the polarity corpus, cached."""
    lines = charlm.prepare(out_dir)
    corpus = labelled.prepare("polarity", root=out_dir)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in corpus.splits.items())
    return [*lines, f"polarity: {sizes} sentences in {corpus.cache}"]


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "lora_linear",
        hints=(
            (
                "LoRA (Hu et al. 2021): the frozen layer's output plus a low-rank update, y = x W +"
                " b + (alpha / r) * x A B."
            ),
            (
                "B starts at zero, so the model starts as the pretrained one; only A and B "
                "(LoRAParam) are trained. peft's layout: A (in, r), B (r, out) in this module's "
                "convention; read __init__."
            ),
        ),
        jax=Part(
            "week1_jax/lib/lora.py::LoRALinear.__call__",
            (
                "test_environment.py::test_lora_starts_as_the_pretrained_model",
                "test_environment.py::test_lora_gradients_match_at_f32",
            ),
        ),
    ),
    Exercise(
        "lora_merge",
        hints=(
            (
                "For serving, fold the adapter into the frozen weight: x W'^T must equal x W^T +"
                " s (x A^T) B^T for every x, with s = alpha / r."
            ),
            "torch's layouts: W (out, in), A (r, in), B (out, r); so W' = W + s * (B @ A).",
        ),
        torch=Part(
            "week1_torch/lib/lora.py::merged_weight",
            ("test_environment.py::test_merged_lora_equals_peft_merge_and_unload",),
        ),
    ),
)
