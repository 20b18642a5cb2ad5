"""Monitoring: norms and clipping agree with optax / torch and across frameworks (F32);
an injected NaN stops the run at the right step, names the tensor, and leaves the
last good checkpoint equal to an uninterrupted run's state at that step."""

import dataclasses
import json

import jax
import numpy as np
import optax
import pytest
import torch

from labs import monitoring as spec
from week1 import charlm, convert, loop
from week1.runs import Run, exit_code
from week1.tolerances import EXACT, F32, assert_close, assert_tree_close
from week1_jax import monitoring as jmon
from week1_jax.lib import charlm as jtl
from week1_jax.lib import checkpoint as jckpt
from week1_jax.lib import models as jmodels
from week1_torch import monitoring as tmon
from week1_torch.lib import charlm as ttl
from week1_torch.lib import checkpoint as tckpt
from week1_torch.lib import models as tmodels

CFG = spec.Config(
    batch_size=32, n_hidden=64, steps=8, warmup_steps=0, eval_every=100, checkpoint_every=2
)


@pytest.fixture(scope="module")
def data():
    return charlm.load_data(CFG)


def as_numpy(tree: dict) -> dict:
    return {
        k: np.asarray(v.detach() if isinstance(v, torch.Tensor) else v) for k, v in tree.items()
    }


def test_norms_clipping_and_update_ratios_jax_equal_torch(data):
    torch_model = ttl.build_model(CFG, data.vocab_size)
    jax_model = jtl.build_model(
        CFG,
        data.vocab_size,
        convert.torch_to_flax(tmodels.get_weights(torch_model), convert.CHAR_MLP),
    )
    x, y = charlm.train_batch(data, CFG, 1)
    _, jgrads = jmon.grad_step(jax_model, *jtl.as_arrays(x, y))
    _, tgrads = tmon.grad_step(torch_model, *ttl.as_tensors(x, y))

    # Our global norm against each framework's own, then across frameworks.
    assert_close(
        "monitoring jax",
        "global_norm vs optax",
        jmon.global_norm(jgrads),
        jax.jit(optax.global_norm)(jgrads),
        F32,
    )
    norm = float(tmon.global_norm(tgrads))
    assert_close("monitoring jax vs torch", "global_norm", jmon.global_norm(jgrads), norm, F32)
    assert_tree_close(
        "monitoring jax vs torch grad_norm",
        as_numpy(jmon.layer_norms(jgrads)),
        as_numpy(tmon.layer_norms(tgrads)),
        F32,
    )

    # Clip to half the norm so clipping acts: optax.clip_by_global_norm vs clip_grad_norm_.
    clipped = convert.flax_to_torch(
        as_numpy(jmon.named(jmon.clip_grads(jgrads, norm / 2))), convert.CHAR_MLP
    )
    returned = tmon.clip_grads(torch_model, norm / 2)
    assert_close("monitoring torch", "clip_grad_norm_ returned norm", returned, norm, F32)
    assert_tree_close(
        "monitoring clipped grads jax vs torch", clipped, as_numpy(tmon.named(torch_model)), F32
    )
    assert_close(
        "monitoring torch",
        "norm after clipping",
        tmon.global_norm(tmon.named(torch_model)),
        norm / 2,
        F32,
    )

    # One AdamW step on the clipped gradients: the same update/parameter ratio per layer.
    jax_ratios = jmon.apply_update(jax_model, jtl.make_optimizer(jax_model, CFG), jgrads, norm / 2)
    torch_model.zero_grad(set_to_none=True)
    tmon.grad_step(torch_model, *ttl.as_tensors(x, y))
    torch_optimizer, _ = ttl.make_optimizer(torch_model, CFG)
    torch_ratios = tmon.apply_update(torch_model, torch_optimizer, norm / 2)
    assert_tree_close(
        "monitoring update_ratio jax vs torch", as_numpy(jax_ratios), as_numpy(torch_ratios), F32
    )


def jax_checkpoint_weights(directory, vocab_size):
    model = jtl.build_model(CFG, vocab_size)
    step = jckpt.restore_train_state(
        jckpt.manager(directory), model, jtl.make_optimizer(model, CFG)
    )
    return step, jmodels.get_weights(model)


def torch_checkpoint_weights(directory, vocab_size):
    model = ttl.build_model(CFG, vocab_size)
    step = tckpt.restore_train_state(directory, model, *ttl.make_optimizer(model, CFG))
    return step, tmodels.get_weights(model)


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_injected_nan_stops_run_and_keeps_last_good_checkpoint(framework, data, tmp_path):
    lab, restore, get_weights, tensor = {
        "jax": (jmon, jax_checkpoint_weights, jmodels.get_weights, "fc1.bias"),
        "torch": (tmon, torch_checkpoint_weights, tmodels.get_weights, "fc1.weight"),
    }[framework]
    cfg = dataclasses.replace(CFG, nan_step=5, nan_layer="fc1")
    with (
        pytest.raises(spec.TrainingStopped) as stop,
        Run("monitoring", framework, cfg, root=tmp_path, tensorboard=False) as run,
    ):
        lab.run(cfg, run)
    assert stop.value.step == 5 and stop.value.last_checkpoint == 4
    message = f"step 5: non-finite gradient {tensor}; stopped before the update"
    assert str(stop.value).startswith(message), str(stop.value)
    summary = json.loads((run.final / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["error"] == str(stop.value)
    assert exit_code(summary["status"]) == 3
    logged = [
        row["step"]
        for row in map(json.loads, (run.final / "metrics.jsonl").read_text().splitlines())
    ]
    assert max(logged) == 4, "the poisoned step must not be logged as a step taken"

    step, restored = restore(run.final / "checkpoints", data.vocab_size)
    clean, _ = lab.train(CFG, data, ctx=loop.Context(stop_at=4))
    assert step == 4
    assert_tree_close(
        f"monitoring {framework} checkpoint at the last good step",
        restored,
        get_weights(clean),
        EXACT,
    )


def test_spike_detector_stops_on_a_spike_only():
    detector = spec.SpikeDetector(factor=3.0, warmup=5)
    losses = [2.0, 2.2, 1.9, 2.1, 2.0, 5.5, 2.0, 9.0]  # 5.5 < 3 x 2.04: fine; 9.0 > 3 x 2.63: spike
    reasons = [detector.check(loss) for loss in losses]
    assert reasons[:-1] == [None] * 7
    assert reasons[-1].startswith("loss spike: 9 is")
