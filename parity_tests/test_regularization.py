"""regularization parity: dropout, LayerNorm and weight decay written from scratch, JAX vs torch
and against the libraries.

- dropout on: the same keep-mask injected into both frameworks gives the same loss and
  gradients (F32); our dropout with a library's mask equals the library's dropout;
  inverted scaling (kept units times 1/(1-p), mean preserved) and eval-mode identity;
- LayerNorm from scratch vs nnx.LayerNorm and torch.nn.LayerNorm, eps explicit: outputs and
  gradients (F32); the libraries' default eps differ measurably;
- decoupled weight decay vs an L2 penalty (F64): one update under SGD, different ones under
  Adam; each matches its library twin (torch.optim.Adam/AdamW, optax);
- arms without dropout follow the same 20-step trajectory in both frameworks;
- an interrupted grid resumes to the uninterrupted result.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from labs import regularization as spec
from week1 import charlm, convert
from week1.runs import Run
from week1.tolerances import EXACT, F32, F64, TRAJECTORY, assert_close, assert_tree_close
from week1_jax import regularization as jax_lab
from week1_jax.lib import models as jax_models
from week1_jax.lib import optim as jax_optim
from week1_torch import regularization as torch_lab
from week1_torch.lib import checkpoint as torch_checkpoint
from week1_torch.lib import devices as torch_devices
from week1_torch.lib import models as torch_models
from week1_torch.lib import optim as torch_optim

CFG = spec.Config(
    steps=20,
    batch_size=32,
    block_size=8,
    n_embd=8,
    n_hidden=64,
    warmup_steps=5,
    eval_every=10,
    eval_batches=2,
    checkpoint_every=0,
    train_chars=6000,
    dropout=0.5,
    weight_decay=0.1,
)


@pytest.fixture(scope="module")
def data():
    return spec.load_data(CFG)


def start_weights(arm, data):
    """torch's init for `arm`, and the same numbers under Flax names."""
    torch_w = torch_models.get_weights(torch_lab.build_model(CFG, arm, data.vocab_size))
    return torch_w, convert.torch_to_flax(torch_w, arm.weight_map)


@pytest.mark.parametrize("arm_name", ["all", "l2_penalty"])
def test_loss_and_grads_with_injected_dropout_mask(data, arm_name):
    """Dropout on (train mode), the same keep-mask in both frameworks: loss and every gradient
    agree (F32), LayerNorm and the L2 penalty included where the arm has them."""
    arm = spec.arm(CFG, arm_name)
    torch_w, jax_w = start_weights(arm, data)
    x, y = charlm.train_batch(data, CFG, step=1)
    keep = spec.dropout_keep_mask((CFG.batch_size, CFG.n_hidden), CFG.dropout, seed=3)

    jax_model = jax_lab.build_model(CFG, arm, data.vocab_size, jax_w)

    @nnx.jit  # one compilation; eager JAX compiles every op of the backward pass on its own
    def value_and_grad(model, x, y, keep):
        return nnx.value_and_grad(jax_lab.loss_fn, has_aux=True)(model, x, y, arm.l2, keep=keep)

    (jax_loss, _), jax_grads = value_and_grad(
        jax_model, *jax_lab.as_arrays(x, y), jnp.asarray(keep)
    )
    torch_model = torch_lab.build_model(CFG, arm, data.vocab_size, torch_w)
    (keep_t,) = torch_devices.to_device(keep)
    torch_loss, _ = torch_lab.loss_fn(torch_model, *torch_lab.as_tensors(x, y), arm.l2, keep_t)
    torch_loss.backward()
    torch_grads = {n: p.grad.cpu().numpy() for n, p in torch_model.named_parameters()}

    check = f"regularization grads, injected dropout mask ({arm_name})"
    assert_close(check, "loss", float(jax_loss), torch_loss.item(), F32)
    assert_tree_close(
        check, convert.flax_to_torch(jax_models.named_arrays(jax_grads), arm.weight_map),
        torch_grads, F32,
    )  # fmt: skip
    if arm.dropout:  # the mask did something: eval mode (no dropout) gives another loss
        jax_model.eval()
        no_drop = jax_lab.loss_fn(jax_model, *jax_lab.as_arrays(x, y), arm.l2)[0]
        assert abs(float(no_drop) - float(jax_loss)) > 1e-3


def test_dropout_scaling_eval_identity_and_library_masks():
    """Kept units are x / (1 - p), the rest 0, the mean is preserved; eval mode is the identity;
    given the library's own mask, ours equals nnx.Dropout and torch's F.dropout."""
    p, n = 0.3, 200_000
    x = np.random.default_rng(0).normal(size=(n,)).astype(np.float32) + 2.0
    ours_jax = jax_lab.Dropout(p)
    ours_torch = torch_lab.Dropout(p)
    y_jax = np.asarray(ours_jax(jnp.asarray(x), rngs=nnx.Rngs(dropout=0)))
    torch.manual_seed(0)
    y_torch = ours_torch(torch.from_numpy(x)).numpy()
    for name, y in (("jax", y_jax), ("torch", y_torch)):
        kept = y != 0
        scaled = x[kept] / np.float32(1 - p)
        assert_close("dropout scaling", f"{name}: kept = x / (1-p)", y[kept], scaled, F32)
        assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)  # 5 sigma
        assert abs(y.mean() - x.mean()) < 0.02  # E[y] = x: inverted dropout keeps the scale
    ours_jax.eval()
    ours_torch.eval()
    assert_close("dropout eval", "jax: identity", np.asarray(ours_jax(jnp.asarray(x))), x, EXACT)
    y_eval = ours_torch(torch.from_numpy(x)).numpy()
    assert_close("dropout eval", "torch: identity", y_eval, x, EXACT)

    # The libraries' dropout, and ours fed the mask the library drew (same seed, same shape).
    lib_jax = np.asarray(nnx.Dropout(p, rngs=nnx.Rngs(dropout=1))(jnp.asarray(x)))
    mask = np.asarray(nnx.Dropout(p, rngs=nnx.Rngs(dropout=1))(jnp.ones(n))) != 0
    ours_jax.train()
    got = np.asarray(ours_jax(jnp.asarray(x), keep=jnp.asarray(mask)))
    assert_close("dropout vs library", "ours(nnx.Dropout's mask)", got, lib_jax, F32)
    torch.manual_seed(1)
    lib_torch = torch.nn.functional.dropout(torch.from_numpy(x), p, training=True).numpy()
    torch.manual_seed(1)
    mask = torch.nn.functional.dropout(torch.ones(n), p, training=True) != 0
    ours_torch.train()
    got = ours_torch(torch.from_numpy(x), keep=mask).numpy()
    assert_close("dropout vs library", "ours(F.dropout's mask)", got, lib_torch, F32)


def test_eval_mode_model_is_the_model_without_dropout(data):
    """In eval mode the dropout arm's model computes exactly what the same weights without
    dropout compute, in each framework."""
    with_drop, without = spec.arm(CFG, "dropout"), spec.arm(CFG, "none")
    torch_w, jax_w = start_weights(with_drop, data)
    x, _ = charlm.train_batch(data, CFG, step=2)
    jax_x = jnp.asarray(x)
    a = jax_lab.build_model(CFG, with_drop, data.vocab_size, jax_w)
    b = jax_lab.build_model(CFG, without, data.vocab_size, jax_w)
    a.eval()
    assert_close("dropout eval", "jax model", np.asarray(a(jax_x)), np.asarray(b(jax_x)), EXACT)
    (torch_x,) = torch_devices.to_device(x, dtype=torch.long)
    a = torch_lab.build_model(CFG, with_drop, data.vocab_size, torch_w)
    b = torch_lab.build_model(CFG, without, data.vocab_size, torch_w)
    a.eval()
    with torch.no_grad():
        assert_close("dropout eval", "torch model", a(torch_x).cpu(), b(torch_x).cpu(), EXACT)


LN_EPS = 1e-5


def layernorm_case(n=64, rows=8):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(rows, n)) * 3 + 1).astype(np.float32)
    scale = rng.normal(size=(n,)).astype(np.float32)
    bias = rng.normal(size=(n,)).astype(np.float32)
    r = rng.normal(size=(rows, n)).astype(np.float32)  # d(sum(y * r))/d(.) = the vjp of r
    return x, scale, bias, r


def jax_layernorm_grads(module, x, r):
    @nnx.jit
    def forward_and_grads(module, x):
        def f(module, x):
            return jnp.sum(module(x) * r)

        return module(x), nnx.grad(f, argnums=(0, 1))(module, x)

    y, (gp, gx) = forward_and_grads(module, x)
    return np.asarray(y), {"x": np.asarray(gx), **jax_models.named_arrays(gp)}


def torch_layernorm_grads(module, x, r):
    x = torch.from_numpy(x).requires_grad_(True)
    y = module(x)
    (y * torch.from_numpy(r)).sum().backward()
    return y.detach().numpy(), {
        "x": x.grad.numpy(), "scale": module.weight.grad.numpy(), "bias": module.bias.grad.numpy()
    }  # fmt: skip


def test_layernorm_matches_the_libraries():
    """Ours vs nnx.LayerNorm (epsilon=eps) and torch.nn.LayerNorm (eps=eps), and JAX vs torch:
    outputs and the gradients with respect to input, scale and bias (F32)."""
    x, scale, bias, r = layernorm_case()
    n = x.shape[1]
    ours_j = jax_lab.LayerNorm(n, eps=LN_EPS)
    lib_j = nnx.LayerNorm(n, epsilon=LN_EPS, rngs=nnx.Rngs(0))
    for m in (ours_j, lib_j):
        m.scale[...], m.bias[...] = jnp.asarray(scale), jnp.asarray(bias)
    ours_t = torch_lab.LayerNorm(n, eps=LN_EPS)
    lib_t = torch.nn.LayerNorm(n, eps=LN_EPS)
    with torch.no_grad():
        for m in (ours_t, lib_t):
            m.weight.copy_(torch.from_numpy(scale))
            m.bias.copy_(torch.from_numpy(bias))
    y_oj, g_oj = jax_layernorm_grads(ours_j, jnp.asarray(x), jnp.asarray(r))
    y_lj, g_lj = jax_layernorm_grads(lib_j, jnp.asarray(x), jnp.asarray(r))
    y_ot, g_ot = torch_layernorm_grads(ours_t, x, r)
    y_lt, g_lt = torch_layernorm_grads(lib_t, x, r)
    for check, (y_a, g_a), (y_b, g_b) in (
        ("LayerNorm ours vs nnx.LayerNorm", (y_oj, g_oj), (y_lj, g_lj)),
        ("LayerNorm ours vs torch.nn.LayerNorm", (y_ot, g_ot), (y_lt, g_lt)),
        ("LayerNorm ours JAX vs ours torch", (y_oj, g_oj), (y_ot, g_ot)),
    ):
        assert_close(check, "output", y_a, y_b, F32)
        assert_tree_close(check, g_a, g_b, F32)


def test_layernorm_default_eps_differ():
    """Why eps is always passed: the libraries' defaults (1e-6 vs 1e-5) give different outputs
    where the variance is small."""
    assert nnx.LayerNorm(4, rngs=nnx.Rngs(0)).epsilon == 1e-6
    assert torch.nn.LayerNorm(4).eps == 1e-5
    x = np.random.default_rng(1).normal(scale=3e-3, size=(4, 32)).astype(np.float32)  # var ~1e-5
    a = np.asarray(nnx.LayerNorm(32, rngs=nnx.Rngs(0))(jnp.asarray(x)))
    with torch.no_grad():
        b = torch.nn.LayerNorm(32)(torch.from_numpy(x)).numpy()
    assert not F32_close(a, b)


def F32_close(a, b) -> bool:
    return bool(np.all(np.abs(a - b) <= F32.atol + F32.rtol * np.abs(b)))


# --- decoupled weight decay vs an L2 penalty, float64 ---------------------------------------


def quadratic_problem(seed=0):
    """A least-squares loss 0.5 |A w - b|^2 / n on a (6, 5) matrix w: grads differ in scale per
    entry, so Adam's per-entry normalisation matters."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(40, 6)) * np.geomspace(0.1, 10, 6)  # (n, 6), columns of mixed scale
    b = rng.normal(size=(40, 5))  # (n, 5)
    w0 = rng.normal(size=(6, 5))
    return a, b, w0


def torch_run(optimizer_cls, w0, a, b, steps=50, l2_in_loss=0.0, **kwargs):
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    at, bt = torch.from_numpy(a), torch.from_numpy(b)
    opt = optimizer_cls([w], **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((at @ w - bt) ** 2).sum() / len(a) + 0.5 * l2_in_loss * (w**2).sum()
        loss.backward()
        opt.step()
    return w.detach().numpy()


def optax_run(tx, w0, a, b, steps=50):
    def loss(w):
        return 0.5 * jnp.sum((a @ w - b) ** 2) / len(a)

    @jax.jit
    def step(w, state):
        updates, state = tx.update(jax.grad(loss)(w), state, w)
        return optax.apply_updates(w, updates), state

    w, state = jnp.asarray(w0), tx.init(jnp.asarray(w0))
    for _ in range(steps):
        w, state = step(w, state)
    return np.asarray(w)


def test_decoupled_decay_and_l2_penalty_same_under_sgd_differ_under_adam():
    a, b, w0 = quadratic_problem()
    lr, lam = 0.05, 0.1
    check = "weight decay vs L2 (F64)"
    # SGD: p - lr (g + lam p) == p (1 - lr lam) - lr g: one and the same update. (Its step must
    # stay under 2 / the largest curvature, ~100 here, or both would diverge alike.)
    sgd_lr = 0.005
    l2_sgd = torch_run(torch.optim.SGD, w0, a, b, lr=sgd_lr, weight_decay=lam)  # L2 in the grad
    w, at, bt = torch.tensor(w0), torch.from_numpy(a), torch.from_numpy(b)
    for _ in range(50):
        grad = (at.T @ (at @ w - bt)) / len(a)  # of 0.5 |A w - b|^2 / n
        w = w * (1 - sgd_lr * lam) - sgd_lr * grad  # decoupled: shrink, then the gradient step
    assert np.abs(l2_sgd).max() < 10 * np.abs(w0).max()  # converging, not diverging
    assert_close(check, "SGD: decoupled == L2", w.numpy(), l2_sgd, F64)

    # Adam: the L2 kind (torch.optim.Adam's weight_decay, or the penalty in the loss, or optax's
    # add_decayed_weights before adam) vs the decoupled kind (AdamW: ours, torch's, optax's).
    with jax.enable_x64(True):
        l2_tx = optax.chain(optax.add_decayed_weights(lam), optax.adam(lr))
        decay = dict(lr=lr, weight_decay=lam)
        l2_kind = {
            "torch Adam(weight_decay)": torch_run(torch.optim.Adam, w0, a, b, **decay),
            "L2 in loss + ours(wd=0)": torch_run(
                torch_optim.AdamW, w0, a, b, l2_in_loss=lam, lr=lr, weight_decay=0.0
            ),
            "optax decayed+adam": optax_run(l2_tx, w0, a, b),
        }
        decoupled = {
            "torch AdamW": torch_run(torch.optim.AdamW, w0, a, b, **decay),
            "ours (torch)": torch_run(torch_optim.AdamW, w0, a, b, **decay),
            "optax.adamw": optax_run(optax.adamw(lr, weight_decay=lam), w0, a, b),
            "ours (jax)": optax_run(jax_optim.adamw(lr, weight_decay=lam), w0, a, b),
        }
    for kind in (l2_kind, decoupled):
        (ref_name, ref), *others = kind.items()
        for name, got in others:
            assert_close(check, f"{name} vs {ref_name}", got, ref, F64)
    l2_w, dec_w = l2_kind["torch Adam(weight_decay)"], decoupled["torch AdamW"]
    rel = np.abs(l2_w - dec_w).max() / np.abs(dec_w).max()
    assert rel > 0.05, f"under Adam, L2 and decoupled decay should differ; max rel diff {rel:.2g}"


# --- the lab's arms ----------------------------------------------------------------------


@pytest.mark.parametrize("arm_name", ["layernorm", "weight_decay", "l2_penalty"])
def test_arm_trajectories_match(data, arm_name):
    """Same start, same batches, no dropout: 20 steps of each arm agree across frameworks."""
    arm = spec.arm(CFG, arm_name)
    torch_w, jax_w = start_weights(arm, data)
    _, jax_hist = jax_lab.train(CFG, arm, data, weights=jax_w)
    _, torch_hist = torch_lab.train(CFG, arm, data, weights=torch_w)
    check = f"regularization 20-step trajectory ({arm_name})"
    for what in ("train_loss", "val_loss"):
        got, ref = np.array(getattr(jax_hist, what)), np.array(getattr(torch_hist, what))
        assert_close(check, what, got, ref, TRAJECTORY)


def test_interrupted_grid_resumes_to_the_same_result(data, tmp_path):
    """Stop the grid inside its second arm, resume the run folder: the histories equal an
    uninterrupted grid's (torch; the checkpoint holds model, optimizer, schedule and RNG)."""
    cfg = dataclasses.replace(CFG, steps=12, eval_every=6, arms="none,all")

    def grid(run):
        def train_arm(arm, ctx):
            return torch_lab.train(cfg, arm, data, ctx=ctx)[1]

        return spec.run_grid(cfg, run, train_arm)

    with Run("regularization", "torch", cfg, root=tmp_path / "a", tensorboard=False) as run:
        full = grid(run)
    with Run("regularization", "torch", cfg, root=tmp_path / "b", tensorboard=False) as run:
        asked = []  # should_stop is asked after each step, and once after each arm
        run.should_stop = lambda: asked.append(1) or len(asked) > cfg.steps + 5  # in arm "all"
        stopped = grid(run)
        run.close("interrupted")
    assert stopped == {"arms_finished": 1}
    step = torch_checkpoint.latest_step(run.checkpoint_dir)
    assert 0 < step < cfg.steps
    resumed_run = Run.reopen(run.dir, cfg, from_step=step, tensorboard=False)
    with resumed_run:
        resumed = grid(resumed_run)
    assert resumed.keys() == full.keys()
    for key in full:
        assert_close("regularization grid resume", key, resumed[key], full[key], EXACT)


def test_jax_run_writes_the_grid(tmp_path):
    """`week1 run regularization --framework jax` in small: gap.png and a summary per arm (the
    torch run is exercised by tests/test_devices.py)."""
    cfg = dataclasses.replace(CFG, steps=4, eval_every=2, arms="none,all")
    with Run("regularization", "jax", cfg, root=tmp_path, tensorboard=False) as run:
        summary = jax_lab.run(cfg, run)
    assert (run.dir / "gap.png").stat().st_size > 0
    arms = {f"{a} {m}" for a in ("none", "all") for m in ("final gap", "best val")}
    assert set(summary) == {"unigram baseline", *arms}
    assert not run.checkpoint_dir.exists()  # each arm's checkpoints go once it has finished
