"""Backprop lab, torch side: the char-MLP's forward and backward written by hand, against
torch.autograd of week1_torch.lib.models.CharMLP. Read beside week1_jax/backprop.py; the
derivation of every line is in labs/backprop.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labs import backprop as spec
from week1_torch.lib import devices
from week1_torch.lib.models import CharMLP, set_weights

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def forward(w: dict, x, y):
    """Loss and the intermediates the backward pass needs. w: torch-named tensors."""
    B, T = x.shape
    emb = w["wte.weight"][x]  # (B, T, C) gather
    hcat = emb.reshape(B, -1)  # (B, T*C)
    hpre = hcat @ w["fc1.weight"].T + w["fc1.bias"]  # (B, H)
    mean = hpre.mean(1, keepdim=True)  # (B, 1)
    var = ((hpre - mean) ** 2).mean(1, keepdim=True)  # (B, 1) biased, as LayerNorm
    rstd = (var + spec.EPS) ** -0.5  # (B, 1)
    xhat = (hpre - mean) * rstd  # (B, H)
    hln = xhat * w["ln.weight"] + w["ln.bias"]  # (B, H)
    h = torch.tanh(hln)  # (B, H)
    logits = h @ w["head.weight"].T + w["head.bias"]  # (B, V)
    logp = torch.log_softmax(logits, dim=1)  # (B, V)
    loss = -logp[torch.arange(B, device=y.device), y].mean()
    return loss, dict(x=x, hcat=hcat, xhat=xhat, rstd=rstd, h=h, probs=logp.exp())


def backward(w: dict, cache: dict, y) -> dict:
    """dL/dw for every tensor, each line the chain rule applied to one forward line."""
    x, h, xhat = cache["x"], cache["h"], cache["xhat"]
    B, T = x.shape
    V, C = w["wte.weight"].shape
    dlogits = cache["probs"].clone()  # (B, V)
    dlogits[torch.arange(B, device=y.device), y] -= 1  # p - onehot(y)
    dlogits /= B  # the mean over the batch
    g = {"head.weight": dlogits.T @ h, "head.bias": dlogits.sum(0)}  # (V, H), (V,)
    dh = dlogits @ w["head.weight"]  # (B, H)
    dhln = dh * (1 - h**2)  # (B, H) tanh' = 1 - tanh^2
    g["ln.weight"], g["ln.bias"] = (dhln * xhat).sum(0), dhln.sum(0)  # (H,), (H,)
    dxhat = dhln * w["ln.weight"]  # (B, H)
    dhpre = cache["rstd"] * (
        dxhat - dxhat.mean(1, keepdim=True) - xhat * (dxhat * xhat).mean(1, keepdim=True)
    )  # (B, H)
    g["fc1.weight"], g["fc1.bias"] = dhpre.T @ cache["hcat"], dhpre.sum(0)  # (H, T*C), (H,)
    demb = (dhpre @ w["fc1.weight"]).reshape(B, T, C)  # (B, T*C) -> (B, T, C)
    dwte = torch.zeros_like(w["wte.weight"])  # (V, C)
    g["wte.weight"] = dwte.index_add_(0, x.reshape(-1), demb.reshape(-1, C))  # scatter-add
    return g


def module_loss_and_grads(model: CharMLP, x, y):
    """Mean cross-entropy of the library model and its torch.autograd gradients, by name."""
    loss = F.cross_entropy(model(x), y)
    names, params = zip(*model.named_parameters(), strict=True)
    return loss.detach(), dict(zip(names, torch.autograd.grad(loss, params), strict=True))


def autograd_grads(weights: dict, x, y, dtype: str, cfg: spec.Config) -> tuple[float, dict]:
    """The reference: loss and torch.autograd gradients of nn.Module CharMLP at these weights."""
    V = weights["wte.weight"].shape[0]
    model = CharMLP(V, cfg.block_size, cfg.n_embd, cfg.n_hidden).to(DTYPES[dtype])
    set_weights(model, weights)
    loss, grads = module_loss_and_grads(model.to(x.device), x, y)
    return loss.item(), {n: gr.cpu().numpy() for n, gr in grads.items()}


def hand_grads(weights: dict, x, y, dtype: str) -> tuple[float, dict]:
    """Our forward and backward at these (numpy, torch-named) weights, as numpy."""
    w = {n: torch.tensor(a, dtype=DTYPES[dtype], device=x.device) for n, a in weights.items()}
    loss, cache = forward(w, x, y)
    return float(loss), {n: gr.cpu().numpy() for n, gr in backward(w, cache, y).items()}


def loss64(weights: dict, x, y) -> float:
    """The float64 loss of our forward: what the finite differences move."""
    w = {n: torch.tensor(a, dtype=torch.float64, device=x.device) for n, a in weights.items()}
    return float(forward(w, x, y)[0])


def run(cfg: spec.Config, run) -> dict:
    """`week1 run backprop --framework torch`: the per-tensor table, float64 and float32."""
    x, y, vocab_size = spec.load_batch(cfg)
    device = devices.default_device()
    x = torch.as_tensor(x, dtype=torch.long, device=device)  # (B, T)
    y = torch.as_tensor(y, dtype=torch.long, device=device)  # (B,)
    weights = spec.init_weights(cfg, vocab_size)
    rows, loss_rows, ours = [], [], {}
    for dtype in spec.TIERS:
        ours_loss, ours[dtype] = hand_grads(weights, x, y, dtype)
        ref_loss, ref = autograd_grads(weights, x, y, dtype, cfg)
        loss_rows.append((dtype, ours_loss, ref_loss, abs(ours_loss - ref_loss)))
        rows += spec.compare(dtype, ours[dtype], ref, "torch.autograd")
    rows += spec.finite_differences(lambda w: loss64(w, x, y), weights, ours["float64"], cfg)
    return spec.report(rows, loss_rows)
