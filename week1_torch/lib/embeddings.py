"""Static word-embedding updates in torch: negative sampling (word2vec skip-gram and CBOW,
FastText) and GloVe's AdaGrad step, as sparse row updates of the embedding matrices, and the
training loop that drives them (`fit`: the word2vec lab's, reusable by any lab that needs
trained vectors or a word2vec workload).

The batches come from week1.data.embeddings (its docstring has the layouts). Read beside
week1_jax/lib/embeddings.py: the same functions, the same maths.

Negative sampling (Mikolov et al. 2013, as word2vec.c and gensim update it)
---------------------------------------------------------------------------
    h_b   = sum_s a_bs W_in[i_bs]                     the input vector (a: in_weights)
    f_bt  = h_b . W_out[o_bt]                          a score per output row
    g_bt  = w_bt (y_bt - sigmoid(f_bt))                = -dL/df_bt for
    L     = - sum_bt w_bt log sigmoid((2 y_bt - 1) f_bt)
    W_out[o_bt] += lr g_bt h_b                         (plain SGD on L)
    W_in[i_bs]  += lr sum_t g_bt W_out[o_bt]           for every input row with a_bs != 0
The input rule is word2vec.c's: the error reaches each input row in full, not scaled by a_bs.
With one input row of weight 1 (skip-gram) that is exactly SGD on L; for CBOW's mean of n
contexts (and FastText's mean of the word and its n-grams) each row moves n times its gradient,
which is what gensim does. All gradients of a batch are taken at the same weights and summed
into the rows with index_add_ (Hogwild within the batch).

GloVe (Pennington et al. 2014, as glove.c updates it)
------------------------------------------------------
    d_e  = W[i_e] . Wc[j_e] + b[i_e] + bc[j_e] - log X_e,   L = 1/2 sum_e f(X_e) d_e^2
    AdaGrad, glove.c's form: with G starting at 1 and u = lr * gradient,
        param -= u / sqrt(G);   G += u^2
As in glove.c, W, Wc and the biases are one matrix [W b; Wc bc] (2V, C+1), and so are their
accumulators: an update is one gather and one index_add_ per matrix.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from week1 import loop
from week1.data import embeddings as pipeline
from week1_torch.lib import devices, parallelize, train


def rows(matrix, index):
    """matrix[index] for an index of any shape: (*index.shape, C). index_select on the flat
    index, several times faster on a CPU than advanced indexing (matrix[index])."""
    return matrix.index_select(0, index.reshape(-1)).view(*index.shape, matrix.shape[1])


def negative_sampling_loss(w_in, w_out, inputs, in_weights, outputs, labels, out_weights):
    """L of the module docstring (a sum over the batch) and the scores f (B, T)."""
    h = torch.einsum("bs,bsc->bc", in_weights, rows(w_in, inputs))  # (B, C)
    f = torch.einsum("bc,btc->bt", h, rows(w_out, outputs))  # (B, T)
    signed = torch.where(labels > 0, f, -f)
    return -(out_weights * F.logsigmoid(signed)).sum(), f


@torch.no_grad()
def negative_sampling_update(w_in, w_out, inputs, in_weights, outputs, labels, out_weights, lr):
    """One SGD step of the module docstring on w_in (R, C) and w_out (V, C), in place; returns
    the batch's loss L before the step (a 0-d tensor, not synced)."""
    C = w_in.shape[1]
    h = torch.einsum("bs,bsc->bc", in_weights, rows(w_in, inputs))  # (B, C)
    u = rows(w_out, outputs)  # (B, T, C)
    f = torch.einsum("bc,btc->bt", h, u)  # (B, T)
    g = out_weights * (labels - torch.sigmoid(f))  # (B, T)
    dh = torch.einsum("bt,btc->bc", g, u)  # (B, C)
    w_out.index_add_(
        0, outputs.reshape(-1), (g[..., None] * h[:, None, :]).reshape(-1, C), alpha=lr
    )
    touched = (in_weights != 0).to(dh.dtype)  # (B, S)
    w_in.index_add_(
        0, inputs.reshape(-1), (touched[..., None] * dh[:, None, :]).reshape(-1, C), alpha=lr
    )
    return -(out_weights * F.logsigmoid(torch.where(labels > 0, f, -f))).sum()


def glove_loss(w, i, j, weights, log_counts):
    """GloVe's weighted least squares L over the entries (i, j) of the batch, and the residuals
    d (B,); w = [W b; W~ b~] (2V, C+1): word rows, then context rows, the bias last."""
    V, C = w.shape[0] // 2, w.shape[1] - 1
    wi, wj = rows(w, i), rows(w, j + V)  # (B, C+1)
    d = (wi[:, :C] * wj[:, :C]).sum(-1) + wi[:, C] + wj[:, C] - log_counts  # (B,)
    return 0.5 * (weights * d * d).sum(), d


@torch.no_grad()
def glove_update(w, g, i, j, weights, log_counts, lr):
    """One AdaGrad step (glove.c's form) on w (2V, C+1) (see glove_loss) and its accumulators g
    (started at 1), in place; returns L before it. Each entry's word row and context row are
    gathered, stepped and scattered together (one index_add_ per matrix)."""
    V, C, B = w.shape[0] // 2, w.shape[1] - 1, len(i)
    both = torch.cat([i, j + V])  # (2B,) word rows, then context rows
    x = rows(w, both)  # (2B, C+1)
    wi, wj = x[:B], x[B:]
    d = (wi[:, :C] * wj[:, :C]).sum(-1) + wi[:, C] + wj[:, C] - log_counts  # (B,)
    fd = lr * weights * d  # (B,) lr * dL/dd
    other = torch.cat([wj, wi])  # (2B, C+1) dd/d(row): the other row's vector...
    other[:, C] = 1  # ...and 1 for the bias
    step = torch.cat([fd, fd])[:, None] * other  # (2B, C+1) lr * gradient
    w.index_add_(0, both, step / rows(g, both).sqrt(), alpha=-1)
    g.index_add_(0, both, step * step)
    return 0.5 * (weights * d * d).sum()


# ---------------------------------------------------------------------------------------------
# The training loop of the word2vec lab (and of anything that trains static vectors)


@contextlib.contextmanager
def cpu_threads(n: int):
    """torch's intra-op CPU threads set to n for the block (0: left as they are)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def as_state(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The matrices as float32 tensors on the default device, updated in place: copies, since on
    the CPU a tensor from a numpy array would share (and train) the caller's array."""
    names = list(weights)
    copies = (np.array(weights[k], dtype=np.float32) for k in names)
    return dict(zip(names, devices.to_device(*copies), strict=True))


def make_update(cfg: pipeline.Settings, compile: bool = False):
    """(state, batch) -> the batch's loss (a 0-d tensor), updating `state` in place."""
    if cfg.model == "glove":
        glove = parallelize.apply_compile(glove_update, dynamic=True) if compile else glove_update

        def update(state, batch):
            arrays = devices.to_device(*batch.arrays())
            return glove(state["w"], state["g"], *arrays, cfg.glove_alpha)

        return update
    # A batch's context width varies from batch to batch: dynamic shapes from the first call.
    step = negative_sampling_update
    step = parallelize.apply_compile(step, dynamic=True) if compile else step

    def update(state, batch):
        arrays = devices.to_device(*batch.arrays())
        return step(state["w_in"], state["w_out"], *arrays, batch.lr)

    return update


def fit(
    sentences,
    cfg: pipeline.Settings,
    *,
    weights: dict | None = None,
    ctx: loop.Context = loop.BARE,
) -> pipeline.Trained:
    """Train cfg.model on `sentences` from `weights` (default: pipeline.init_weights), through
    the shared loop (week1/loop.py) on the open-ended stream of batches.

    ctx: the run's log (log(step, loss=...) every cfg.log_every updates: the mean loss per
      pair since the last), should_stop (asked after every update: if True, stop there and
      return what was trained), progress bar, turn, and torch.compile (torch only); never
      checkpoints. A non-finite loss raises Diverged at its update.
    """
    s = pipeline.setup(sentences, cfg)
    state = as_state(weights if weights is not None else pipeline.init_weights(s, cfg))
    update = make_update(cfg, ctx.compile)
    history = pipeline.History(log_every=cfg.log_every)
    expected = pipeline.expected_steps(s, cfg)  # subsampling decides the stream's length
    cadence = loop.Cadence(expected, log_every=cfg.log_every, open_ended=True)
    ran_out = False

    def step(i: int):
        nonlocal ran_out
        batch = next(batches, None)
        if batch is None:
            ran_out = True
            return loop.END
        return {"loss": update(state, batch), "pairs": pipeline.pairs_of(batch)}

    def read(values: list[dict]) -> list[dict]:
        return pipeline.per_pair(train.read([v["loss"] for v in values]), values)

    with cpu_threads(cfg.threads):
        start = time.perf_counter()
        with contextlib.closing(pipeline.stream(s, cfg)) as batches:
            label = f"torch {cfg.model}"
            loop.drive(cadence, ctx, start=0, step=step, read=read, label=label, history=history)
        devices.sync()
        history.seconds = time.perf_counter() - start
    history.log_since_last(ctx.log)
    history.stopped = not ran_out
    final = {k: v.cpu().numpy() for k, v in state.items()}
    return pipeline.Trained(s.vocab.words, pipeline.export(s, cfg, final), final, s, history)
