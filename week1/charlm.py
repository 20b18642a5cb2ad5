"""The character-level language model task most labs train on: Shakespeare as byte ids,
its settings, batches, validation set and unigram baseline, framework-free.

The training_loop lab teaches the loop on it; regularization, adamw, lr_schedules,
grad_accumulation, mixed_precision, monitoring, profiling, data_parallel, fsdp and the
benchmark train the same model on the same batches, so these pieces live in the core, and
each framework's `lib/charlm.py` holds the model side (build, optimizer, loss, evaluate,
sample).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from week1 import convert
from week1.config import require
from week1.data import shakespeare
from week1.data.batches import window_batch

WEIGHT_MAP = convert.CHAR_MLP  # torch state_dict <-> Flax params, for compare and parity
# The tied model's (Config.tied): no head; the projection to n_embd and the logits' bias instead.
TIED_WEIGHT_MAP = (
    # torch            flax                 transform
    ("wte.weight", "wte.embedding", convert.SAME),  # the input rows and, transposed, the output
    ("fc1.weight", "fc1.kernel", convert.TRANSPOSE),
    ("fc1.bias", "fc1.bias", convert.SAME),
    ("ln.weight", "ln.scale", convert.SAME),
    ("ln.bias", "ln.bias", convert.SAME),
    ("proj.weight", "proj.kernel", convert.TRANSPOSE),  # hidden -> n_embd
    ("proj.bias", "proj.bias", convert.SAME),
    ("head_bias", "head_bias", convert.SAME),  # (V,)
)
# The schedules of week1_jax.lib.schedules / week1_torch.lib.schedules (the lr_schedules lab).
SCHEDULES = ("warmup_cosine", "warmup_linear", "constant_with_warmup", "inverse_sqrt")


@dataclasses.dataclass(frozen=True)
class Config:
    """The char-MLP LM's settings, shared by every lab that trains it."""

    steps: int = 8000
    batch_size: int = 64
    lr: float = 3e-3  # peak learning rate of the schedule
    schedule: str = (
        "warmup_cosine"  # warmup_cosine, warmup_linear, constant_with_warmup, inverse_sqrt
    )
    seed: int = 0
    block_size: int = 8  # characters of context
    n_embd: int = 24  # embedding size per character
    n_hidden: int = 256
    dropout: float = 0.0
    # The output layer is the embedding matrix, transposed, after a hidden -> n_embd projection.
    tied: bool = False  # embedding_tradeoffs' tying part only; the other labs refuse it
    weight_decay: float = 0.01  # on matrices only, never on biases and norm scales
    warmup_steps: int = 100
    final_lr: float = 3e-4
    val_fraction: float = 0.1
    eval_every: int = 500
    eval_batches: int = 20
    checkpoint_every: int = 1000  # 0: the last step only (a run always keeps its last)
    sample_chars: int = 300
    temperature: float = 0.8

    def n_params(self, vocab_size: int) -> int:
        """Parameters of the model: the embedding V C, fc1 T C H + H, the LayerNorm 2 H, then
        the head H V + V, or tied the projection H C + C and the logits' bias V."""
        V, T, C, H = vocab_size, self.block_size, self.n_embd, self.n_hidden
        output = H * C + C + V if self.tied else H * V + V
        return V * C + T * C * H + 3 * H + output

    def memory_bytes(self, vocab_size: int = 256) -> int:
        """About what a run holds at once (float32): parameters, their gradients and two AdamW
        moments, plus one batch's activations; `vocab_size` at most 256 (bytes)."""
        V, T, C, H, B = vocab_size, self.block_size, self.n_embd, self.n_hidden, self.batch_size
        projected = C if self.tied else 0
        # embeddings, hidden, (the projection), logits; ids
        activations = B * (T * C + 4 * H + projected + 3 * V) + B * T
        return 4 * (4 * self.n_params(V) + 2 * activations)

    def check(self) -> None:
        """What ties fields together (each field's own range is week1.config's RANGES)."""
        require(
            self.schedule in SCHEDULES,
            f"schedule={self.schedule!r}: allowed: {', '.join(SCHEDULES)}",
        )
        require(
            self.warmup_steps <= self.steps,
            f"warmup_steps={self.warmup_steps}: must be in [0, steps={self.steps}]",
        )
        require(self.final_lr <= self.lr, f"final_lr={self.final_lr}: must be <= lr={self.lr}")
        require(not self.tied or type(self) is Config, NOT_TIED)


# A lab's Config extends Config, and so has `tied`; only the embedding_tradeoffs lab trains the
# tied model (its own Config sets it), so the labs refuse it rather than ignore it.
NOT_TIED = (
    "tied=True: this lab trains the untied char MLP; tied vs untied embeddings is the "
    "embedding_tradeoffs lab's part: week1 run embedding_tradeoffs --parts=tying"
)


def weight_map(cfg: Config) -> tuple:
    """The torch <-> Flax table of cfg's model: WEIGHT_MAP, or TIED_WEIGHT_MAP when cfg.tied."""
    return TIED_WEIGHT_MAP if cfg.tied else WEIGHT_MAP


@dataclasses.dataclass(frozen=True)
class Data:
    corpus: shakespeare.CharCorpus
    train: np.ndarray  # (N_train,) uint8 ids
    val: np.ndarray  # (N_val,) uint8 ids

    @property
    def vocab_size(self) -> int:
        return self.corpus.vocab_size


def load_data(cfg: Config) -> Data:
    corpus = shakespeare.prepare()
    train, val = corpus.split(cfg.val_fraction)
    return Data(corpus, train, val)


def train_batch(data: Data, cfg: Config, step: int):
    """Training batch `step`: x (B, T) int32, y (B,) int32, the same in both frameworks."""
    return window_batch(data.train, cfg.block_size, cfg.batch_size, cfg.seed, step)


def val_batches(data: Data, cfg: Config) -> list:
    """A fixed set of validation batches (seeded apart from training), so evaluations compare."""
    return [
        window_batch(data.val, cfg.block_size, cfg.batch_size, cfg.seed + 1_000_003, k)
        for k in range(cfg.eval_batches)
    ]


def unigram_baseline(data: Data) -> float:
    """Cross-entropy (nats) of the validation text under the training text's character
    frequencies."""
    counts = np.bincount(data.train, minlength=data.vocab_size).astype(np.float64) + 1.0  # add-one
    log_p = np.log(counts / counts.sum())
    return float(-log_p[data.val].mean())


def prompt_ids(data: Data, cfg: Config) -> np.ndarray:
    """The sampling prompt: the first `block_size` characters of the validation text."""
    return data.val[: cfg.block_size].astype(np.int32)


def prepare(out_dir=None) -> list:
    """`week1 prepare training_loop`: cache the character ids (carry them to a GPU box)."""
    corpus = shakespeare.prepare(out_dir)
    return [
        f"shakespeare_chars.npy: {len(corpus.ids):,} characters, vocabulary {corpus.vocab_size}"
    ]
