"""Losses several torch labs share."""

from __future__ import annotations

import torch.nn.functional as F

IGNORE_INDEX = -100  # label of a padding position: contributes nothing to the loss


def masked_cross_entropy(logits, labels, ignore_index: int = IGNORE_INDEX):
    """Sum of token cross-entropies over real positions, and how many there are.

    logits (..., V), labels (...) int64 with `ignore_index` at padding. Returns
    (loss_sum, n_tokens): divide by the n_tokens of the *whole* batch, not per
    micro-batch (see the grad_accumulation lab).
    """
    V = logits.shape[-1]
    loss_sum = F.cross_entropy(
        logits.reshape(-1, V), labels.reshape(-1), ignore_index=ignore_index, reduction="sum"
    )
    return loss_sum, (labels != ignore_index).sum()
