"""rnn parity: the from-scratch layers against torch.nn and each other, and the lab's models.

- every cell type x 1 and 3 layers x uni/bidirectional, on a ragged batch (lengths T, 1 and
  in between): outputs, final states, and the gradient of every parameter and of the input,
  torch ours vs torch.nn on a packed sequence vs JAX ours (F32);
- the interface: torch.nn's state_dict keys and shapes both ways, the same init for the same
  seed, hx, no lengths, batch_first=False;
- Flax's built-in cells by labs/rnn.py's table (the GRU only with b_hn = 0);
- the LSTM LM: loss and gradients, a 50-step trajectory with clipping and AdamW, resume;
  the classifier (final and mean pooling) on a ragged batch.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from labs import rnn as spec
from week1 import convert, loop
from week1.tolerances import EXACT, F32, F64, TRAJECTORY, assert_close, assert_tree_close
from week1_jax import rnn as jax_lab
from week1_jax.lib import models as jax_models
from week1_jax.lib import recurrent as jax_rec
from week1_torch import rnn as torch_lab
from week1_torch.lib import models as torch_models

# XLA's cheaper optimisation level: these graphs are tiny, compiling them is the cost (about a
# third less), and it changes no arithmetic that F32 could see.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
B, T, IN, H = 3, 5, 3, 4  # the fast cases' sizes
LENGTHS = np.array([T, 1, 3])  # ragged, with a length-1 sequence
TORCH_NN = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
TORCH_OURS = {"rnn": torch_lab.RNN, "lstm": torch_lab.LSTM, "gru": torch_lab.GRU}
JAX_OURS = {"rnn": jax_lab.RNN, "lstm": jax_lab.LSTM, "gru": jax_lab.GRU}
CASES = [(kind, layers, bi) for kind in TORCH_NN for layers in (1, 3) for bi in (False, True)]


def case_id(case) -> str:
    kind, layers, bi = case
    return f"{kind}-{layers}layer-{'bi' if bi else 'uni'}"


def inputs(layers: int, bi: bool, seed: int = 0, size=(B, T, IN, H)) -> dict:
    """A batch and random probes: the loss sum(out*p_out) + sum(h_n*p_h) (+ sum(c_n*p_c))
    makes every output and final state reach every gradient."""
    rng = np.random.default_rng(seed)
    D, (b, t, n_in, h) = (2 if bi else 1), size
    arrays = {
        "x": rng.normal(size=(b, t, n_in)),
        "p_out": rng.normal(size=(b, t, D * h)),
        "p_h": rng.normal(size=(D * layers, b, h)),
        "p_c": rng.normal(size=(D * layers, b, h)),
    }
    return {k: v.astype(np.float32) for k, v in arrays.items()}


def split_state(state):
    """(h_n, c_n) of an LSTM, (h_n, None) of the others."""
    return state if isinstance(state, tuple) else (state, None)


def probe_loss(out, state, a, xp):
    h_n, c_n = split_state(state)
    loss = (out * xp.asarray(a["p_out"])).sum() + (h_n * xp.asarray(a["p_h"])).sum()
    return loss if c_n is None else loss + (c_n * xp.asarray(a["p_c"])).sum()


def torch_run(layer, a, lengths, packed: bool, hx=None) -> dict:
    """Outputs, final states and gradients of a torch layer (torch.nn with packing, or ours)."""
    x = torch.tensor(a["x"], requires_grad=True)
    if packed:
        seq = pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
        out, state = layer(seq, hx)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    elif isinstance(layer, torch.nn.RNNBase):  # torch.nn without lengths: forward(x, hx)
        out, state = layer(x, hx)
    else:
        out, state = layer(x, None if lengths is None else torch.tensor(lengths), hx)
    probe_loss(out, state, a, torch).backward()
    h_n, c_n = split_state(state)
    result = {"output": out, "h_n": h_n, "x.grad": x.grad}
    result |= {} if c_n is None else {"c_n": c_n}
    result |= {f"{name}.grad": p.grad for name, p in layer.named_parameters()}
    return {k: v.detach().numpy() for k, v in result.items()}


def jax_run(model, a, lengths, hx=None) -> dict:
    """The same for our JAX layer; gradients under torch.nn's names."""
    graphdef, params = nnx.split(model)

    def f(params, x):
        out, state = nnx.merge(graphdef, params)(x, lengths, hx)
        return probe_loss(out, state, a, jnp), (out, state)

    grad_fn = jax.jit(jax.grad(f, argnums=(0, 1), has_aux=True), compiler_options=FAST_COMPILE)
    (g_params, g_x), (out, state) = grad_fn(params, jnp.asarray(a["x"]))
    h_n, c_n = split_state(state)
    result = {"output": out, "h_n": h_n, "x.grad": g_x}
    result |= {} if c_n is None else {"c_n": c_n}
    grads = convert.flax_to_torch(jax_models.named_arrays(g_params), jax_rec.weight_map(model))
    result |= {f"{name}.grad": g for name, g in grads.items()}
    return {k: np.asarray(v) for k, v in result.items()}


def jax_value_and_grad(loss, model, *args):
    """(loss, gradients by torch.nn name) of `loss(model, *args)`, jitted over the split state."""
    graphdef, params = nnx.split(model)
    value_and_grad = jax.value_and_grad(lambda p, *a: loss(nnx.merge(graphdef, p), *a))
    value, grads = jax.jit(value_and_grad, compiler_options=FAST_COMPILE)(params, *args)
    named = convert.flax_to_torch(jax_models.named_arrays(grads), jax_rec.weight_map(model))
    return float(value), named


def torch_nn_layer(kind, layers, bi, seed=0, n_in=IN, hidden=H):
    torch.manual_seed(seed)
    return TORCH_NN[kind](n_in, hidden, layers, bidirectional=bi, batch_first=True)


def numpy_state(layer) -> dict:
    return {k: v.detach().numpy() for k, v in layer.state_dict().items()}


def check_layer(kind, layers, bi, size=(B, T, IN, H), lengths=LENGTHS, tier=F32):
    """Ours (torch and JAX) == torch.nn on a packed ragged batch: outputs, final states, and
    every gradient, in float32 (F32 tier) or, all three in float64, the F64 tier."""
    dtype = np.float64 if tier is F64 else np.float32
    a = {k: v.astype(dtype) for k, v in inputs(layers, bi, size=size).items()}
    n_in, hidden = size[2], size[3]
    reference_layer = torch_nn_layer(kind, layers, bi, n_in=n_in, hidden=hidden)
    ours = TORCH_OURS[kind](n_in, hidden, layers, bi)
    ours.load_state_dict(reference_layer.state_dict())  # strict: same keys and shapes
    if tier is F64:
        reference_layer.double()
        ours.double()
    jax_layer = JAX_OURS[kind](n_in, hidden, layers, bi, param_dtype=dtype, rngs=nnx.Rngs(0))
    jax_lab.load_torch_state_dict(jax_layer, numpy_state(reference_layer))
    reference = torch_run(reference_layer, a, lengths, packed=True)
    check = f"rnn {case_id((kind, layers, bi))} T={size[1]} H={hidden}"
    torch_ours = torch_run(ours, a, lengths, packed=False)
    jax_ours = jax_run(jax_layer, a, jnp.asarray(lengths))
    assert_tree_close(f"{check} torch ours vs torch.nn", torch_ours, reference, tier)
    assert_tree_close(f"{check} jax ours vs torch.nn", jax_ours, reference, tier)
    short = int(np.argmin(lengths))
    assert np.all(jax_ours["output"][short, lengths[short] :] == 0)  # padded steps are zeros


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_layer_matches_torch_nn(case):
    check_layer(*case)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_initial_state_and_no_lengths(kind):
    """hx given, lengths None (every step real): ours == torch.nn, in both frameworks (F32)."""
    layers, bi = 2, True
    a = inputs(layers, bi, seed=1)
    rng = np.random.default_rng(2)
    h0 = rng.normal(size=(2 * layers, B, H)).astype(np.float32)
    c0 = rng.normal(size=(2 * layers, B, H)).astype(np.float32)
    as_hx = lambda xp: (xp.asarray(h0), xp.asarray(c0)) if kind == "lstm" else xp.asarray(h0)
    reference_layer = torch_nn_layer(kind, layers, bi)
    ours = TORCH_OURS[kind](IN, H, layers, bi)
    ours.load_state_dict(reference_layer.state_dict())
    jax_layer = JAX_OURS[kind](IN, H, layers, bi, rngs=nnx.Rngs(0))
    jax_lab.load_torch_state_dict(jax_layer, numpy_state(reference_layer))
    reference = torch_run(reference_layer, a, None, packed=False, hx=as_hx(torch))
    check = f"rnn {kind} hx, no lengths"
    assert_tree_close(
        check + " torch", torch_run(ours, a, None, False, as_hx(torch)), reference, F32
    )
    assert_tree_close(check + " jax", jax_run(jax_layer, a, None, as_hx(jnp)), reference, F32)


def test_batch_first_false():
    """batch_first=False takes and returns (T, B, ...), as torch.nn does."""
    reference_layer = torch_nn_layer("lstm", 2, True)
    ours = torch_lab.LSTM(IN, H, 2, True, batch_first=False)
    ours.load_state_dict(reference_layer.state_dict())
    x = torch.tensor(inputs(2, True)["x"])  # (B, T, IN)
    want, (want_h, _) = reference_layer(x)
    got, (got_h, _) = ours(x.transpose(0, 1))  # (T, B, IN)
    assert_close(
        "rnn batch_first=False", "output", got.transpose(0, 1).detach(), want.detach(), F32
    )
    assert_close("rnn batch_first=False", "h_n", got_h.detach(), want_h.detach(), F32)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_state_dict_interface(case):
    """torch.nn's keys, shapes and order both ways; the same seed gives the same weights; the
    JAX layer's torch-named weights round-trip through its table."""
    kind, layers, bi = case
    reference_layer = torch_nn_layer(kind, layers, bi, seed=3)
    torch.manual_seed(3)
    ours = TORCH_OURS[kind](IN, H, layers, bi)
    want = numpy_state(reference_layer)
    assert list(ours.state_dict()) == list(want)
    assert_tree_close(f"rnn {case_id(case)} same init", numpy_state(ours), want, EXACT)
    reference_layer.load_state_dict(ours.state_dict())  # and back into torch.nn
    jax_layer = JAX_OURS[kind](IN, H, layers, bi, rngs=nnx.Rngs(0))
    jax_lab.load_torch_state_dict(jax_layer, want)
    assert_tree_close(
        f"rnn {case_id(case)} jax round trip", jax_rec.torch_state_dict(jax_layer), want, EXACT
    )


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_flax_builtin_cells(kind):
    """Flax's built-in cells under nnx.RNN, loaded by labs/rnn.py's table, == torch.nn on a
    packed ragged batch at the real steps, and their final states (F32). The GRU maps only with
    b_hn = 0: the table refuses otherwise."""
    layers = 2
    reference_layer = torch_nn_layer(kind, layers, False)
    weights = numpy_state(reference_layer)
    if kind == "gru":
        with pytest.raises(ValueError, match="b_hn"):
            spec.to_builtin(kind, weights, layers)
        with torch.no_grad():
            for k in range(layers):
                getattr(reference_layer, f"bias_hh_l{k}")[2 * H :] = 0.0
        weights = numpy_state(reference_layer)
    a = inputs(layers, False)
    reference = torch_run(reference_layer, a, LENGTHS, packed=True)
    builtin = jax_rec.Builtin(kind, IN, H, layers, rngs=nnx.Rngs(0))
    jax_models.set_weights(builtin, spec.to_builtin(kind, weights, layers))
    out, state = builtin(jnp.asarray(a["x"]), jnp.asarray(LENGTHS))
    h_n, c_n = split_state(state)
    real = np.arange(T)[None, :] < LENGTHS[:, None]  # (B, T)
    check = f"rnn flax built-in {kind}"
    assert_close(
        check, "output (real steps)", np.asarray(out)[real], reference["output"][real], F32
    )
    assert_close(check, "h_n", h_n, reference["h_n"], F32)
    if c_n is not None:
        assert_close(check, "c_n", c_n, reference["c_n"], F32)


# --- the lab's models ----------------------------------------------------------------------

CFG = spec.Config(
    steps=50,
    batch_size=8,
    seq_len=16,
    hidden_size=32,
    n_embd=8,
    num_layers=2,
    warmup_steps=5,
    eval_every=25,
    eval_batches=2,
    checkpoint_every=0,
    clip_norm=0.5,
)


@pytest.fixture(scope="module")
def data():
    return spec.load_lm_data(CFG)


def test_lm_loss_and_grads(data):
    """The LSTM LM from torch's init: loss and every gradient, JAX vs torch (F32)."""
    weights = torch_models.get_weights(torch_lab.build_model(CFG, data.vocab_size))
    x, y = spec.lm_batch(data, CFG, 1)
    torch_model = torch_lab.build_model(CFG, data.vocab_size, weights=weights)
    torch_loss = torch_lab.lm_loss(torch_model, *torch_lab.as_tensors(x, y))
    torch_loss.backward()
    torch_grads = {n: p.grad.cpu().numpy() for n, p in torch_model.named_parameters()}
    jax_model = jax_lab.build_model(CFG, data.vocab_size, weights=weights)
    jax_loss, grads = jax_value_and_grad(jax_lab.lm_loss, jax_model, *jax_lab.as_arrays(x, y))
    assert_close("rnn LM grads", "loss", jax_loss, float(torch_loss.detach()), F32)
    assert_tree_close("rnn LM grads", grads, torch_grads, F32)


def test_lm_50_step_trajectory(data):
    """Same start, same batches, clipping + AdamW + warmup-cosine: losses agree for 50 steps."""
    weights = torch_models.get_weights(torch_lab.build_model(CFG, data.vocab_size))
    _, jax_hist = jax_lab.train(CFG, data, weights=weights)
    _, torch_hist = torch_lab.train(CFG, data, weights=weights)
    assert len(jax_hist.train_loss) == CFG.steps
    check = "rnn LM 50-step trajectory"
    assert_close(check, "train loss", jax_hist.train_loss, torch_hist.train_loss, TRAJECTORY)
    assert_close(check, "val loss", jax_hist.val_loss, torch_hist.val_loss, TRAJECTORY)


@pytest.mark.parametrize("lab", [jax_lab, torch_lab], ids=["jax", "torch"])
def test_resume_is_exact(data, tmp_path, lab):
    """8 steps == 4 + checkpoint + resume + 4, bit for bit, within one framework."""
    cfg = dataclasses.replace(CFG, steps=8, eval_every=4, num_layers=1, hidden_size=16)
    _, full = lab.train(cfg, data)
    lab.train(cfg, data, ctx=loop.Context(checkpoint_dir=tmp_path, stop_at=4))
    _, resumed = lab.train(cfg, data, ctx=loop.Context(checkpoint_dir=tmp_path, resume=True))
    assert resumed.steps == list(range(5, 9))
    assert_close(
        f"rnn resume ({lab.__name__})",
        "train loss 5..8",
        resumed.train_loss,
        full.train_loss[4:],
        EXACT,
    )


@pytest.mark.parametrize("pooling", ["final", pytest.param("mean", marks=pytest.mark.slow)])
def test_classifier_grads(pooling):
    """The bidirectional classifier on a ragged batch of ids: loss and every gradient (F32)."""
    cfg = dataclasses.replace(CFG, task="sentiment", pooling=pooling, cell="gru", num_layers=1)
    rng = np.random.default_rng(4)
    lengths = np.array([7, 1, 4, 2], dtype=np.int32)
    ids = rng.integers(2, 50, size=(4, 7)).astype(np.int32) * (np.arange(7) < lengths[:, None])
    labels = np.array([0, 1, 1, 0], dtype=np.int32)
    torch_model = torch_lab.build_model(cfg, 50, 2)
    weights = torch_models.get_weights(torch_model)
    torch_loss = torch_lab.classifier_loss(torch_model, *torch_lab.as_tensors(ids, lengths, labels))
    torch_loss.backward()
    torch_grads = {n: p.grad.cpu().numpy() for n, p in torch_model.named_parameters()}
    jax_model = jax_lab.build_model(cfg, 50, 2, weights)
    batch = jax_lab.as_arrays(ids, lengths, labels)
    loss, grads = jax_value_and_grad(jax_lab.classifier_loss, jax_model, *batch)
    check = f"rnn classifier ({pooling} pooling)"
    assert_close(check, "loss", loss, float(torch_loss.detach()), F32)
    assert_tree_close(check, grads, torch_grads, F32)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_larger_layer_matches_torch_nn(kind):
    """A larger case (2 bidirectional layers, H=64, T=40, 8 ragged sequences) in float64 in all
    three, F64 tier: over 40 steps float32's rounding of gradient sums that nearly cancel
    reaches rtol ~3e-5 (beyond F32) in torch.nn's own fused kernel against any loop; float64
    leaves no room for a wrong step to hide."""
    lengths = np.array([40, 1, 17, 39, 2, 25, 40, 8])
    with jax.enable_x64(True):
        check_layer(kind, 2, True, size=(8, 40, 16, 64), lengths=lengths, tier=F64)


@pytest.mark.slow
def test_compiled_step_matches_eager(data):
    """The torch.compile'd step gives the eager trajectory (TRAJECTORY tier)."""
    cfg = dataclasses.replace(CFG, steps=10, num_layers=1)
    weights = torch_models.get_weights(torch_lab.build_model(cfg, data.vocab_size))
    _, eager = torch_lab.train(cfg, data, weights=weights)
    _, compiled = torch_lab.train(cfg, data, weights=weights, ctx=loop.Context(compile=True))
    assert_close(
        "rnn torch.compile", "train loss", compiled.train_loss, eager.train_loss, TRAJECTORY
    )


@pytest.mark.slow
@pytest.mark.parametrize("lab", [jax_lab, torch_lab], ids=["jax", "torch"])
@pytest.mark.parametrize("task", spec.TASKS)
def test_run_writes_its_plot(lab, task, tmp_path):
    """A tiny run of each task through the Run contract: summary and PNG in the run folder."""
    from week1.runs import Run

    cfg = dataclasses.replace(
        CFG, task=task, steps=6, eval_every=3, warmup_steps=2, sample_chars=5, num_layers=1
    )
    with Run("rnn", lab.__name__.split(".")[0], cfg, root=tmp_path, tensorboard=False) as run:
        summary = lab.run(cfg, run)
    assert run.path(f"rnn_{task}.png").exists()
    assert summary["final_val_loss"] > 0
