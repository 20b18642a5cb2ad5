"""Static word-embedding updates in torch: negative sampling (word2vec skip-gram and CBOW,
FastText) and GloVe's AdaGrad step, as sparse row updates of the embedding matrices.

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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def glove_loss(params, i, j, weights, log_counts):
    """GloVe's weighted least squares L over the batch of entries (i, j), and the residuals d
    (B,)."""
    w, wc, b, bc = params
    d = (rows(w, i) * rows(wc, j)).sum(-1) + b[i] + bc[j] - log_counts  # (B,)
    return 0.5 * (weights * d * d).sum(), d


@torch.no_grad()
def glove_update(params, grad_sq, i, j, weights, log_counts, lr):
    """One AdaGrad step (glove.c's form) on params = (W (V, C), Wc (V, C), b (V,), bc (V,)) and
    their accumulators `grad_sq` (same shapes, started at 1), in place; returns L before it."""
    w, wc, b, bc = params
    gw, gwc, gb, gbc = grad_sq
    wi, wj = rows(w, i), rows(wc, j)  # (B, C)
    d = (wi * wj).sum(-1) + b[i] + bc[j] - log_counts  # (B,)
    fd = lr * weights * d  # (B,) lr * dL/dd
    step_w, step_wc = fd[:, None] * wj, fd[:, None] * wi  # (B, C) lr * gradients
    w.index_add_(0, i, step_w / rows(gw, i).sqrt(), alpha=-1)
    wc.index_add_(0, j, step_wc / rows(gwc, j).sqrt(), alpha=-1)
    b.index_add_(0, i, fd / gb[i].sqrt(), alpha=-1)
    bc.index_add_(0, j, fd / gbc[j].sqrt(), alpha=-1)
    gw.index_add_(0, i, step_w * step_w)
    gwc.index_add_(0, j, step_wc * step_wc)
    gb.index_add_(0, i, fd * fd)
    gbc.index_add_(0, j, fd * fd)
    return 0.5 * (weights * d * d).sum()
