"""training_loop parity: JAX vs torch on the char-MLP LM, from converted weights.

- loss and every gradient tensor (F32), weights converted torch -> Flax and Flax -> torch;
- a 50-step trajectory with the from-scratch AdamW and warmup-cosine (TRAJECTORY tier);
- 30 uninterrupted steps == 15 + save + resume + 15, bit-identical within each framework;
- a JAX checkpoint converted to torch continues to the same losses.
"""

import dataclasses

import numpy as np
import pytest
import torch
from flax import nnx

from labs import training_loop as spec
from week1 import charlm, convert, loop
from week1.tolerances import EXACT, F32, TRAJECTORY, assert_close, assert_tree_close
from week1_jax.lib import charlm as jax_lm
from week1_jax.lib import checkpoint as jax_checkpoint
from week1_jax.lib import models as jax_models
from week1_torch.lib import charlm as torch_lm
from week1_torch.lib import models as torch_models

CFG = spec.Config(
    steps=50,
    batch_size=32,
    n_hidden=64,
    n_embd=8,
    warmup_steps=5,
    eval_every=25,
    eval_batches=2,
    checkpoint_every=0,
)
MAP = charlm.WEIGHT_MAP


@pytest.fixture(scope="module")
def data():
    return charlm.load_data(CFG)


def jax_loss_and_grads(weights, x, y, vocab_size):
    model = jax_lm.build_model(CFG, vocab_size, weights)
    loss, grads = nnx.value_and_grad(jax_lm.loss_fn)(model, *jax_lm.as_arrays(x, y))
    flat = jax_models.named_arrays(grads)
    return float(loss), flat


def torch_loss_and_grads(weights, x, y, vocab_size):
    model = torch_lm.build_model(CFG, vocab_size, weights)
    loss = torch_lm.loss_fn(model, *torch_lm.as_tensors(x, y))
    loss.backward()
    return loss.item(), {name: p.grad.numpy() for name, p in model.named_parameters()}


@pytest.mark.parametrize("init", ["torch", "jax"])
def test_loss_and_grads_match(data, init):
    """Initialise in one framework, convert, compare the loss and every gradient (F32)."""
    x, y = charlm.train_batch(data, CFG, step=1)
    if init == "torch":
        torch_w = torch_models.get_weights(torch_lm.build_model(CFG, data.vocab_size))
        jax_w = convert.torch_to_flax(torch_w, MAP)
    else:
        jax_w = jax_models.get_weights(jax_lm.build_model(CFG, data.vocab_size))
        torch_w = convert.flax_to_torch(jax_w, MAP)
    jax_loss, jax_grads = jax_loss_and_grads(jax_w, x, y, data.vocab_size)
    torch_loss, torch_grads = torch_loss_and_grads(torch_w, x, y, data.vocab_size)
    check = f"training_loop grads (init {init})"
    assert_close(check, "loss", jax_loss, torch_loss, F32)
    assert_tree_close(check, convert.flax_to_torch(jax_grads, MAP), torch_grads, F32)


def test_weight_map_round_trip(data):
    torch_w = torch_models.get_weights(torch_lm.build_model(CFG, data.vocab_size))
    back = convert.flax_to_torch(convert.torch_to_flax(torch_w, MAP), MAP)
    assert_tree_close("training_loop weight map round trip", back, torch_w, EXACT)


def test_50_step_trajectory(data):
    """Same start, same batches, from-scratch AdamW + warmup-cosine: losses agree for 50 steps."""
    torch_w = torch_models.get_weights(torch_lm.build_model(CFG, data.vocab_size))
    _, jax_hist = jax_lm.train(CFG, data, weights=convert.torch_to_flax(torch_w, MAP))
    torch_model, torch_hist = torch_lm.train(CFG, data, weights=torch_w)
    assert len(jax_hist.train_loss) == CFG.steps
    assert_close(
        "training_loop 50-step trajectory",
        "train loss",
        np.array(jax_hist.train_loss),
        np.array(torch_hist.train_loss),
        TRAJECTORY,
    )
    assert_close(
        "training_loop 50-step trajectory",
        "val loss",
        np.array(jax_hist.val_loss),
        np.array(torch_hist.val_loss),
        TRAJECTORY,
    )


@pytest.mark.parametrize("lab", [jax_lm, torch_lm], ids=["jax", "torch"])
def test_resume_is_exact(data, tmp_path, lab):
    """30 steps == 15 + checkpoint + resume + 15, bit for bit, within one framework (dropout on)."""
    cfg = dataclasses.replace(CFG, steps=30, dropout=0.1, eval_every=15)
    _, full = lab.train(cfg, data)
    lab.train(cfg, data, ctx=loop.Context(checkpoint_dir=tmp_path, stop_at=15))
    _, resumed = lab.train(cfg, data, ctx=loop.Context(checkpoint_dir=tmp_path, resume=True))
    assert resumed.steps == list(range(16, 31))
    assert_close(
        f"training_loop resume ({lab.__name__})",
        "train loss 16..30",
        np.array(resumed.train_loss),
        np.array(full.train_loss[15:]),
        EXACT,
    )


# Advancing a fresh LambdaLR to the checkpoint's step calls scheduler.step() before any
# optimizer.step().
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_jax_checkpoint_continues_in_torch(data, tmp_path):
    """A JAX checkpoint (params and AdamW moments) converted to torch continues to the same
    losses."""
    cfg = dataclasses.replace(CFG, steps=30)
    torch_w = torch_models.get_weights(torch_lm.build_model(cfg, data.vocab_size))
    jax_lm.train(
        cfg,
        data,
        weights=convert.torch_to_flax(torch_w, MAP),
        ctx=loop.Context(checkpoint_dir=tmp_path, stop_at=15),
    )
    _, jax_rest = jax_lm.train(cfg, data, ctx=loop.Context(checkpoint_dir=tmp_path, resume=True))

    # Read the JAX checkpoint into a fresh JAX model/optimizer, then move every array to torch.
    model = jax_lm.build_model(cfg, data.vocab_size)
    optimizer = jax_lm.make_optimizer(model, cfg)
    # Step 15's checkpoint (the resumed run has since written its last step's, 30, beside it).
    mngr = jax_checkpoint.manager(tmp_path)
    step = jax_checkpoint.restore_train_state(mngr, model, optimizer, step=15)
    adam = optimizer.opt_state  # our AdamWState(count, mu, nu), each a tree like the params
    as_flat = lambda tree: jax_models.named_arrays(nnx.State(tree))
    mu, nu = (
        convert.flax_to_torch(as_flat(adam.mu), MAP),
        convert.flax_to_torch(as_flat(adam.nu), MAP),
    )
    torch_model = torch_lm.build_model(
        cfg, data.vocab_size, convert.flax_to_torch(jax_models.get_weights(model), MAP)
    )
    torch_opt, scheduler = torch_lm.make_optimizer(torch_model, cfg)
    for name, p in torch_model.named_parameters():
        torch_opt.state[p] = {
            "step": torch.tensor(float(adam.count), dtype=torch.float64),
            "exp_avg": torch.from_numpy(mu[name].copy()),
            "exp_avg_sq": torch.from_numpy(nu[name].copy()),
        }
    for _ in range(step):
        scheduler.step()  # the schedule position the JAX count implies
    losses = []
    for s in range(step + 1, cfg.steps + 1):
        x, y = torch_lm.as_tensors(*charlm.train_batch(data, cfg, s))
        losses.append(float(torch_lm.train_step(torch_model, torch_opt, scheduler, x, y)))
    assert_close(
        "training_loop JAX checkpoint -> torch",
        "train loss 16..30",
        np.array(losses),
        np.array(jax_rest.train_loss),
        TRAJECTORY,
    )
