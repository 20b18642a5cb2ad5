"""Lab: RNN, LSTM and GRU written from scratch, against each framework's built-in.

What it teaches
---------------
How a recurrent layer works, by writing one: the Elman RNN, the LSTM and the
GRU cells (their maths and references are in week1_jax/lib/recurrent.py and
week1_torch/lib/recurrent.py), stacked in layers, run in both directions, on
padded batches of sequences of different lengths. The layers have torch.nn's
interface and parameters exactly:

    from week1_torch.rnn import LSTM        # or RNN, GRU
    ours = LSTM(16, 32, num_layers=2, bidirectional=True)        # batch_first=True
    ours.load_state_dict(torch.nn.LSTM(16, 32, 2, bidirectional=True).state_dict())
    output, (h_n, c_n) = ours(x, lengths)   # x (B, T, 16) -> (B, T, 64), (4, B, 32) x 2

    from week1_jax.rnn import LSTM, load_torch_state_dict
    ours = LSTM(16, 32, 2, True, rngs=nnx.Rngs(0))
    load_torch_state_dict(ours, {k: v.numpy() for k, v in torch_lstm.state_dict().items()})
    output, (h_n, c_n) = ours(x, lengths)

With `lengths`, the result is what torch.nn computes on a packed sequence
(`pack_padded_sequence(..., enforce_sorted=False)`, then `pad_packed_sequence`):
zeros at padded steps, final states at each sequence's last real step, and the
reverse direction starting at each sequence's own end. The JAX recurrence is a
`lax.scan`; in both frameworks the input projection of every step is one matmul
before the loop, and only h_{t-1} W_hh runs inside it.

Two tasks (`--task`):

- `lm`: a character LSTM language model on Shakespeare (the training_loop lab's
  text and split), trained with the same from-scratch AdamW, warmup-cosine and
  gradient clipping; beside it the training_loop MLP is trained for the same
  number of steps on the same text, and their validation losses share a plot
  (rnn_lm.png); a sample of generated text ends the run.
- `sentiment`: a bidirectional LSTM (or `--cell=gru|rnn`) classifier on the
  Rotten Tomatoes polarity snippets (week1/data/labelled.py: HF `datasets`,
  stratified split, train-only vocabulary), reading the packed final states
  (`--pooling=final`) or the outputs averaged over real steps (`--pooling=mean`);
  validation accuracy per evaluation, test accuracy at the end (rnn_sentiment.png).

How to read the results
-----------------------
- rnn_lm.png: validation loss (nats per character) against training steps for
  the LSTM and the MLP, with the unigram baseline. The MLP sees 8 characters of
  context; the LSTM sees everything since the start of its window. At equal
  steps the LSTM also trains on seq_len targets per window where the MLP has one,
  so it should end well below the MLP; the LSTM's loss averages over every
  position, including the first few, which have little context.
- The sample is read for form: words, line breaks, speaker names in capitals.
- Sentiment: the summary gives the majority class's test accuracy beside the
  classifier's (fresh snippets outnumber rotten ones here); rnn_sentiment.png
  shows where validation loss turns up while training loss keeps falling (no
  dropout here: the regularization lab's subject). The cnn_classifier lab compares
  CNNs and a bag-of-words baseline on the same split, with published anchors.
- `week1 bench rnn`: one LSTM LM training step (embedding, LSTM, head, loss,
  clipping, AdamW) at each of `bench_sizes` (batch x time steps x hidden size), for
  ours and for the built-ins (torch.nn.LSTM; nnx.OptimizedLSTMCell under
  nnx.RNN), in JAX jit, torch eager and, at the largest size, torch.compile
  (ours: each cell compiled, the time loop in Python, since unrolling T steps
  into one graph costs minutes of compilation on a CPU). What to look for:
  torch.nn.LSTM is one fused C++ kernel (cuDNN on a GPU) where our torch layer
  dispatches a dozen small ops per step; JAX compiles the whole scan. Our JAX
  layer hoists the input projection out of the loop (one (T*B, in) matmul: the
  form a GPU likes) while Flax's cell projects inside it, step by step; on a CPU
  the hoisted (T, B, 4H) array leaves the cache, so compare the two JAX rows
  before concluding. On a GPU (scripts/gpu_check.sh) the goal is JAX's scan
  within 2x of cuDNN.
- Built-in Flax cells and torch's parameters: BUILTIN_MAPS below says how each
  maps (LSTM and Elman: exactly, the two biases summed into one) or why it
  cannot (GRU: no b_hn).

- `week1 compare rnn` (`--quick`: smaller and shorter): each task trained in JAX,
  torch eager and torch.compile from torch's initial weights on the same batches.
  The train-loss curves should lie on each other (lm.png and sentiment.png in the
  run folder; the bottom panel: their gap, float32 rounding that the steps carry
  forward); the table sets the three speeds side by side. torch.compile compiles
  the whole step (lib/train), the T time steps unrolled into one graph: its first
  step ("first s") takes minutes on a CPU; the sentiment batches it sees are all
  max_length long (one shape, one compilation: spec.sentiment_batch).

Run it:  week1 run rnn --framework jax          (or torch; --task=sentiment)
         week1 bench rnn;  week1 compare rnn --quick

History: docs/history.md#elman-1990, #mikolov-2010, #hochreiter-1997, #cho-2014
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from week1 import charlm, loop
from week1.comparison import Case, Curves
from week1.config import Range, require
from week1.data import labelled, shakespeare
from week1.exercises import Exercise, Part
from week1.tolerances import TRAJECTORY

TASKS = ("lm", "sentiment")
CELLS = ("rnn", "lstm", "gru")
POOLINGS = ("final", "mean")

# Built-in Flax cells (under nnx.RNN, one per layer: Flax path "layers.{k}.cell...") from a
# torch.nn state_dict of the same kind, unidirectional. Each row: torch names, Flax path, how:
#   transpose  (G*H, in) -> (in, G*H)
#   sum        b_ih + b_hh into Flax's single bias (exact: the two are always added)
#   sum, b_hn = 0  nnx.GRUCell has no hidden bias: b_hr and b_hz fold into dense_i's bias,
#              but b_hn sits inside r * (W_hn h + b_hn), where no input bias can stand in:
#              the map exists only when b_hn = 0 (to_builtin refuses otherwise).
# Gate order (i, f, g, o for the LSTM, r, z, n for the GRU) is torch's in both. The LSTM's
# carry is (c, h) in Flax, (h, c) in torch. Back to torch: b_ih = the Flax bias, b_hh = 0.
BUILTIN_MAPS = {
    "rnn": (  # nnx.SimpleCell: h' = tanh(x W_i + b_i + h W_h)
        (("weight_ih_l{k}",), "layers.{k}.cell.dense_i.kernel", "transpose"),
        (("weight_hh_l{k}",), "layers.{k}.cell.dense_h.kernel", "transpose"),
        (("bias_ih_l{k}", "bias_hh_l{k}"), "layers.{k}.cell.dense_i.bias", "sum"),
    ),
    "lstm": (  # nnx.OptimizedLSTMCell: gates = x W_i + h W_h + b_h
        (("weight_ih_l{k}",), "layers.{k}.cell.dense_i.kernel", "transpose"),
        (("weight_hh_l{k}",), "layers.{k}.cell.dense_h.kernel", "transpose"),
        (("bias_ih_l{k}", "bias_hh_l{k}"), "layers.{k}.cell.dense_h.bias", "sum"),
    ),
    "gru": (  # nnx.GRUCell: n = tanh(x W_in + b_in + r * (h W_hn))
        (("weight_ih_l{k}",), "layers.{k}.cell.dense_i.kernel", "transpose"),
        (("weight_hh_l{k}",), "layers.{k}.cell.dense_h.kernel", "transpose"),
        (("bias_ih_l{k}", "bias_hh_l{k}"), "layers.{k}.cell.dense_i.bias", "sum, b_hn = 0"),
    ),
}


def to_builtin(kind: str, state_dict: dict, num_layers: int) -> dict[str, np.ndarray]:
    """A torch.nn.<kind> state_dict (numpy, unidirectional) as the Flax built-in's weights
    (week1_jax.lib.recurrent.Builtin paths), by BUILTIN_MAPS; a GRU with b_hn != 0 is refused."""
    out = {}
    for k in range(num_layers):
        for names, path, how in BUILTIN_MAPS[kind]:
            arrays = [np.asarray(state_dict[name.format(k=k)]) for name in names]
            if how == "transpose":
                value = arrays[0].T
            elif how == "sum":
                value = arrays[0] + arrays[1]
            else:  # "sum, b_hn = 0": the n third of b_hh must be zero
                b_ih, b_hh = arrays
                H = len(b_hh) // 3
                if np.any(b_hh[2 * H :] != 0):
                    raise ValueError(
                        f"layer {k}: b_hn != 0 has no place in nnx.GRUCell (no hidden bias)"
                    )
                value = b_ih + b_hh
            out[path.format(k=k)] = np.ascontiguousarray(value)
    return out


@dataclasses.dataclass(frozen=True)
class Config:
    task: str = "lm"  # one of TASKS
    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-3  # peak learning rate of warmup-cosine
    seed: int = 0
    schedule: str = "warmup_cosine"
    warmup_steps: int = 100
    final_lr: float = 3e-4
    weight_decay: float = 0.01  # on matrices only
    clip_norm: float = 1.0  # clip the global gradient norm (0: off)
    hidden_size: int = 128
    num_layers: int = 1
    n_embd: int = 32  # character (lm) or word (sentiment) embedding size
    seq_len: int = 64  # lm: characters per training window
    val_fraction: float = 0.1
    eval_every: int = 200
    eval_batches: int = 10  # lm: validation windows batches
    checkpoint_every: int = 500  # 0: no checkpoints
    sample_chars: int = 300
    temperature: float = 0.8
    cell: str = "lstm"  # sentiment: one of CELLS
    bidirectional: bool = True  # sentiment
    pooling: str = "final"  # sentiment: one of POOLINGS
    max_length: int = 64  # sentiment: words per snippet (longer ones are truncated)
    bench_sizes: str = "16x32x64,64x128x256"  # `week1 bench rnn`: batch x time steps x hidden
    warmup: int = 1  # bench: calls after the first, not timed
    iters: int = 5  # bench: timed calls per variant (their median is the figure)

    RANGES = {
        "hidden_size": Range(1, 4096),
        "num_layers": Range(1, 8),
        "n_embd": Range(1, 4096),
        "seq_len": Range(2, 4096),
        "max_length": Range(1, 1024),
        "clip_norm": Range(0),
        "iters": Range(1),
    }

    def check(self) -> None:
        require(self.task in TASKS, f"task={self.task!r}: allowed: {', '.join(TASKS)}")
        require(self.cell in CELLS, f"cell={self.cell!r}: allowed: {', '.join(CELLS)}")
        require(
            self.pooling in POOLINGS, f"pooling={self.pooling!r}: allowed: {', '.join(POOLINGS)}"
        )
        require(
            self.schedule in charlm.SCHEDULES,
            f"schedule={self.schedule!r}: allowed: {', '.join(charlm.SCHEDULES)}",
        )
        require(
            self.warmup_steps <= self.steps,
            f"warmup_steps={self.warmup_steps}: must be in [0, steps={self.steps}]",
        )
        require(self.final_lr <= self.lr, f"final_lr={self.final_lr}: must be <= lr={self.lr}")
        sizes = [part.split("x") for part in self.bench_sizes.split(",")]
        require(
            all(len(s) == 3 and all(n.strip().isdigit() and int(n) > 0 for n in s) for s in sizes),
            f"bench_sizes={self.bench_sizes!r}: must be comma-separated BxTxH (positive integers)",
        )

    @property
    def bench_size_list(self) -> list[tuple[int, int, int]]:
        """(batch, time steps, hidden size) of each benched LSTM LM, in order."""
        return [tuple(int(n) for n in part.split("x")) for part in self.bench_sizes.split(",")]


# --- the character LM --------------------------------------------------------------------


def load_lm_data(cfg: Config) -> charlm.Data:
    """Shakespeare's characters, split as the training_loop lab splits them."""
    corpus = shakespeare.prepare()
    train, val = corpus.split(cfg.val_fraction)
    return charlm.Data(corpus, train, val)


def sequence_batch(ids: np.ndarray, seq_len: int, batch_size: int, seed: int, step: int):
    """Random windows of seq_len + 1 ids: x (B, T) and y (B, T) = x shifted by one (int32);
    the same arrays for the same (seed, step) in both frameworks."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(ids) - seq_len, size=batch_size)  # (B,)
    windows = ids[starts[:, None] + np.arange(seq_len + 1)[None, :]].astype(np.int32)  # (B, T+1)
    return windows[:, :-1], windows[:, 1:]


def lm_batch(data: charlm.Data, cfg: Config, step: int):
    return sequence_batch(data.train, cfg.seq_len, cfg.batch_size, cfg.seed, step)


def lm_val_batches(data: charlm.Data, cfg: Config) -> list:
    """A fixed set of validation windows (seeded apart from training)."""
    return [
        sequence_batch(data.val, cfg.seq_len, cfg.batch_size, cfg.seed + 1_000_003, k)
        for k in range(cfg.eval_batches)
    ]


def mlp_config(cfg: Config) -> charlm.Config:
    """The training_loop MLP run beside the LSTM: same steps, batch size, seed, evaluations."""
    return charlm.Config(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        warmup_steps=min(cfg.warmup_steps, cfg.steps),
        val_fraction=cfg.val_fraction,
        eval_every=cfg.eval_every,
        eval_batches=cfg.eval_batches,
        checkpoint_every=0,
    )


def prompt_ids(data: charlm.Data) -> np.ndarray:
    """The sampling prompt: the first line of the validation text."""
    text = data.corpus.decode(data.val[:200])
    return data.val[: text.index("\n") + 1].astype(np.int32)


def plot_lm(path, lstm: loop.History, mlp: loop.History, unigram: float):
    from week1.report import plot_lines

    return plot_lines(
        path,
        {
            "LSTM (ours) validation": (lstm.val_steps, lstm.val_loss),
            "MLP (training_loop) validation": (mlp.val_steps, mlp.val_loss),
            "unigram baseline": ([0, max(lstm.val_steps, default=1)], [unigram, unigram]),
        },
        title="Character LM on Shakespeare: LSTM vs MLP at equal steps",
        xlabel="training step",
        ylabel="cross-entropy (nats/char)",
        styles={"unigram baseline": ":"},
    )


def mlp_baseline(run, cfg: Config, train) -> loop.History | None:
    """The char-LM MLP's history at equal steps, `train(mlp_config(cfg), ctx)` -> (model,
    History) (week1_{jax,torch}/lib/charlm.train); kept in the run folder (mlp_baseline.json),
    so a resumed run does not train it again. It trains stoppable, with its own progress bar,
    its losses not logged (the run's metrics are the LSTM's). None when a stop was asked
    before it finished."""
    path = run.path("mlp_baseline.json")
    mlp_cfg = mlp_config(cfg)
    if path.exists():
        history = loop.History(**json.loads(path.read_text()))
        if history.steps[-1] == mlp_cfg.steps:  # not when a resume changed the steps
            return history
    _, history = train(mlp_cfg, loop.Context(should_stop=run.should_stop, show_progress=True))
    if len(history.steps) < mlp_cfg.steps:
        return None
    path.write_text(json.dumps(dataclasses.asdict(history)))
    return history


def lm_summary(run, cfg: Config, data, lstm, mlp: loop.History, text: str) -> dict:
    """Plot rnn_lm.png; the LM run's summary (final losses of both models, the sample)."""
    unigram = charlm.unigram_baseline(data)
    plot_lm(run.path("rnn_lm.png"), lstm, mlp, unigram)
    return {
        **lstm.summary(),
        "mlp_final_val_loss": mlp.val_loss[-1],
        "unigram_baseline": unigram,
        "sample": text,
    }


# --- the sentiment classifier --------------------------------------------------------------


def load_sentiment(cfg: Config) -> labelled.Labelled:
    """The polarity corpus (Rotten Tomatoes snippets) split and tokenised (cached)."""
    return labelled.prepare("polarity", seed=cfg.seed, val_fraction=cfg.val_fraction)


def sentiment_batch(
    data: labelled.Labelled, cfg: Config, step: int, fixed: bool = False
) -> labelled.Batch:
    """Training batch `step`: T is the longest snippet rounded up to 16 words, or with `fixed`
    always cfg.max_length: one shape, for torch.compile, which compiles the step (T cells
    unrolled) again for every new T (padded steps leave the state as it was: the same
    logits)."""
    fixed_length = {"bucket": cfg.max_length} if fixed else {}
    split = data.splits["train"]
    return labelled.train_batch(
        split, cfg.batch_size, cfg.seed, step, max_length=cfg.max_length, **fixed_length
    )


def sentiment_eval_batches(data: labelled.Labelled, cfg: Config, split: str) -> list:
    return list(labelled.eval_batches(data.splits[split], 256, max_length=cfg.max_length))


def accuracy(predictions: list, batches: list) -> float:
    """Fraction of rows whose predicted class is the label."""
    hits = sum(int(np.sum(p == b.labels)) for p, b in zip(predictions, batches, strict=True))
    return hits / sum(len(b.labels) for b in batches)


def plot_sentiment(path, history: loop.History, cfg: Config):
    from week1.report import Panel, plot_panels, smooth

    return plot_panels(
        path,
        [
            Panel(
                {
                    "train (smoothed)": (history.steps, smooth(history.train_loss, 50)),
                    "validation": (history.val_steps, history.val_loss),
                },
                "cross-entropy",
            ),
            Panel(
                {"validation accuracy": (history.val_steps, history.evals["val_accuracy"])},
                "accuracy",
            ),
        ],
        title=f"Polarity: {'bi' if cfg.bidirectional else ''}{cfg.cell.upper()}, "
        f"{cfg.pooling} pooling",
        xlabel="training step",
    )


def sentiment_summary(run, cfg: Config, data, history, test: dict) -> dict:
    """Plot rnn_sentiment.png; the run's summary, with the test split's evaluation ({"loss",
    "accuracy"}) and the majority class's test accuracy."""
    plot_sentiment(run.path("rnn_sentiment.png"), history, cfg)
    labels = np.asarray(data.splits["test"]["label"])
    return {
        **history.summary(),
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
        "majority_baseline": float(np.bincount(labels).max() / len(labels)),
    }


# --- both tasks ---------------------------------------------------------------------------


def load_data(cfg: Config):
    """The task's data: load_lm_data (lm) or load_sentiment (sentiment)."""
    return load_lm_data(cfg) if cfg.task == "lm" else load_sentiment(cfg)


def model_sizes(cfg: Config, data) -> tuple[int, int]:
    """(vocabulary size, classes) of the task's model; the LM has no classes (0)."""
    if cfg.task == "lm":
        return data.vocab_size, 0
    return data.vocab.size, data.num_classes


def val_metrics(evaluation: dict) -> dict:
    """A validation split's evaluation ({"loss", "accuracy"}) as the History's metrics
    ("val_loss", "val_accuracy")."""
    return {f"val_{name}": value for name, value in evaluation.items()}


def eval_batches(cfg: Config, data, split: str = "validation") -> list:
    """The task's fixed evaluation batches of `split` (the LM has its validation windows only)."""
    if cfg.task == "lm":
        return lm_val_batches(data, cfg)
    return sentiment_eval_batches(data, cfg, split)


def run(cfg: Config, run, lab, train_lm, compile: bool = False) -> dict:
    """`week1 run rnn` with the framework's module `lab` (week1_jax.rnn or week1_torch.rnn); on
    the LM task the MLP baseline first, trained by `train_lm` (the framework's lib/charlm.train).
    compile: torch only."""
    data = load_data(cfg)
    if cfg.task == "lm":
        mlp = mlp_baseline(run, cfg, lambda mlp_cfg, ctx: train_lm(mlp_cfg, data, ctx=ctx))
        if mlp is None:  # stopped while the baseline trained
            return {}
    model, history = lab.train(cfg, data, ctx=loop.Context.of_run(run, compile))
    if run.should_stop():
        return history.summary()
    if cfg.task == "lm":
        ids = lab.sample(model, prompt_ids(data), cfg.sample_chars, cfg.temperature, cfg.seed)
        return lm_summary(run, cfg, data, history, mlp, data.corpus.decode(ids))
    test = lab.evaluate(model, cfg, eval_batches(cfg, data, "test"))
    return sentiment_summary(run, cfg, data, history, test)


# `week1 compare rnn --quick`: both tasks, a smaller model on shorter windows and snippets, at
# a higher lr, so that in 100 steps the LM's loss falls from 4.4 to about 2.5 and the
# classifier's validation accuracy leaves the majority class's.
COMPARE_QUICK = {"steps": 100, "eval_every": 25, "warmup_steps": 10, "lr": 1e-2, "final_lr": 1e-3,
                 "hidden_size": 64, "seq_len": 32, "max_length": 32}  # fmt: skip
# CI: a few steps of a tiny model; max_length=16: one padded shape, one JAX compilation.
COMPARE_TEST = {"steps": 10, "eval_every": 5, "warmup_steps": 2, "hidden_size": 16,
                "seq_len": 32, "eval_batches": 2, "max_length": 16}  # fmt: skip


def compare_cases(cfg: Config) -> list[Case]:
    """Both tasks from the same start: the LM (validation loss) and the classifier (validation
    accuracy); F32 curves over many steps (TRAJECTORY)."""
    return [Case("lm", "val loss", TRAJECTORY), Case("sentiment", "val accuracy", TRAJECTORY)]


def compare_curves(history: loop.History, case: str) -> Curves:
    """A compare run's Curves: the LM's validation loss, the classifier's validation accuracy."""
    return Curves.of(history, history.evals["val_accuracy"] if case == "sentiment" else None)


def prepare(out_dir=None) -> list:
    """`week1 prepare rnn`: cache Shakespeare's ids and the tokenised polarity splits."""
    corpus = shakespeare.prepare(out_dir)
    polarity = labelled.prepare("polarity", root=out_dir)
    rows = {split: len(ds) for split, ds in polarity.splits.items()}
    return [
        f"shakespeare_chars.npy: {len(corpus.ids):,} characters, vocabulary {corpus.vocab_size}",
        f"polarity: {rows}, vocabulary {polarity.vocab.size}",
    ]


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "lstm_cell",
        hints=(
            (
                "torch.nn.LSTM's gate order i, f, g, o: split the hoisted input projection plus h "
                "W_hh + b_hh into four (B, H) chunks."
            ),
            (
                "i, f, o = sigmoid(.), g = tanh(.); c_t = f * c + i * g; h_t = o * tanh(c_t); "
                "return ((h_t, c_t), h_t)."
            ),
        ),
        jax=Part(
            "week1_jax/lib/recurrent.py::lstm_cell",
            (
                "test_rnn.py::test_layer_matches_torch_nn[lstm-1layer-uni]",
                "test_rnn.py::test_layer_matches_torch_nn[lstm-3layer-bi]",
            ),
        ),
        torch=Part(
            "week1_torch/lib/recurrent.py::lstm_cell",
            (
                "test_rnn.py::test_layer_matches_torch_nn[lstm-1layer-uni]",
                "test_rnn.py::test_layer_matches_torch_nn[lstm-3layer-bi]",
            ),
        ),
    ),
    Exercise(
        "gru_cell",
        hints=(
            "Gate order r, z, n, as torch.nn.GRU; the docstring's four lines are the cell.",
            (
                "b_hn sits INSIDE the reset product: n = tanh(x_n + r * (h W_hn + b_hn)), so keep h"
                " W_hh + b_hh whole before chunking it."
            ),
            "h_t = (1 - z) * n + z * h (z keeps the old state); return (h_t, h_t).",
        ),
        jax=Part(
            "week1_jax/lib/recurrent.py::gru_cell",
            (
                "test_rnn.py::test_layer_matches_torch_nn[gru-1layer-uni]",
                "test_rnn.py::test_layer_matches_torch_nn[gru-3layer-bi]",
            ),
        ),
        torch=Part(
            "week1_torch/lib/recurrent.py::gru_cell",
            (
                "test_rnn.py::test_layer_matches_torch_nn[gru-1layer-uni]",
                "test_rnn.py::test_layer_matches_torch_nn[gru-3layer-bi]",
            ),
        ),
    ),
)
