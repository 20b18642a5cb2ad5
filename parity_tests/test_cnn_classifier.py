"""cnn_classifier parity: Kim's CNN in JAX vs torch from converted weights (conv layouts
NLC/(k, in, out) vs NCL/(out, in, k)), on padded ragged batches of real polarity text.

- logits, loss and every gradient (F32), weights initialised in either framework;
- max-over-time pooling ignores padding: the same texts padded to other lengths give the
  same logits (F32), texts shorter than the widest filter included;
- a 30-step trajectory with the from-scratch AdamW (TRAJECTORY tier), dropout off (random
  streams never match across frameworks);
- CNN-static from a word2vec text file: the vectors are loaded, frozen in both frameworks,
  and the trajectories agree;
- the weight map round-trips exactly.
"""

import dataclasses

import numpy as np
import pytest
import torch
from flax import nnx

from labs import cnn_classifier as spec
from week1 import convert
from week1.data import labelled
from week1.runs import Run
from week1.tolerances import EXACT, F32, TRAJECTORY, assert_close, assert_tree_close
from week1_jax import cnn_classifier as jax_lab
from week1_jax.lib import models as jax_models
from week1_torch import cnn_classifier as torch_lab
from week1_torch.lib import models as torch_models

# Small maps and vectors keep the test fast; the polarity vocabulary (~10k words) is the real one.
CFG = spec.Config(
    steps=30,
    batch_size=16,
    n_embd=16,
    n_maps=8,
    dropout=0.0,
    warmup_steps=5,
    lr=3e-3,
    max_length=16,  # every batch T = 16: one shape for jit to compile
    eval_every=30,
    eval_batch_size=256,
    checkpoint_every=0,
)
MAP = spec.WEIGHT_MAP


@pytest.fixture(scope="module")
def data():
    return spec.load_data(CFG)


@pytest.fixture(scope="module")
def ragged(data):
    """12 training texts: the shortest ones (1 to a few words, under the widest filter) and
    longer ones, padded to the longest."""
    train = data.corpus.splits["train"]
    by_length = np.argsort(np.asarray(train["length"]), kind="stable")
    rows = np.concatenate([by_length[:6], by_length[-3:], np.arange(3)])
    batch = labelled.padded_batch(train, rows, CFG.max_length)
    assert batch.lengths.min() < max(spec.WIDTHS) < batch.lengths.max()
    return batch


@nnx.jit  # one compilation; eager JAX compiles every op of the backward pass on its own
def _jax_logits_loss_grads(model, ids, lengths, labels):
    loss, grads = nnx.value_and_grad(jax_lab.loss_fn)(model, ids, lengths, labels)
    return model(ids, lengths), loss, grads


def jax_outputs(weights, batch, data):
    model = jax_lab.build_model(CFG, data, weights)
    logits, loss, grads = _jax_logits_loss_grads(model, *jax_lab.as_arrays(batch))
    return np.asarray(logits), float(loss), jax_models.named_arrays(grads)


def torch_outputs(weights, batch, data):
    model = torch_lab.build_model(CFG, data, weights)
    ids, lengths, labels = torch_lab.as_tensors(batch)
    loss = torch_lab.loss_fn(model, ids, lengths, labels)
    loss.backward()
    logits = model(ids, lengths).detach().cpu().numpy()
    grads = {name: p.grad.cpu().numpy() for name, p in model.named_parameters()}
    return logits, loss.item(), grads


@pytest.mark.parametrize("init", ["torch", "jax"])
def test_logits_loss_and_grads_match(data, ragged, init):
    """Initialise in one framework, convert, compare logits, loss and every gradient (F32)."""
    if init == "torch":
        torch_w = torch_models.get_weights(torch_lab.build_model(CFG, data))
        jax_w = convert.torch_to_flax(torch_w, MAP)
    else:
        jax_w = jax_models.get_weights(jax_lab.build_model(CFG, data))
        torch_w = convert.flax_to_torch(jax_w, MAP)
    assert jax_w["convs.2.kernel"].shape == (5, CFG.n_embd, CFG.n_maps)  # (k, in, out)
    assert torch_w["convs.2.weight"].shape == (CFG.n_maps, CFG.n_embd, 5)  # (out, in, k)
    jax_logits, jax_loss, jax_grads = jax_outputs(jax_w, ragged, data)
    torch_logits, torch_loss, torch_grads = torch_outputs(torch_w, ragged, data)
    check = f"cnn_classifier (init {init})"
    assert_close(check, "logits", jax_logits, torch_logits, F32)
    assert_close(check, "loss", jax_loss, torch_loss, F32)
    assert_tree_close(check, convert.flax_to_torch(jax_grads, MAP), torch_grads, F32)
    assert np.abs(torch_grads["wte.weight"][labelled.PAD]).max() == 0.0  # padding is no input


def test_pooling_ignores_padding(data, ragged):
    """The same texts padded to T and to T + 37 give the same logits, in each framework."""
    wider = labelled.Batch(
        np.pad(ragged.ids, ((0, 0), (0, 37)), constant_values=labelled.PAD),
        ragged.lengths,
        ragged.labels,
    )
    torch_w = torch_models.get_weights(torch_lab.build_model(CFG, data))
    jax_w = convert.torch_to_flax(torch_w, MAP)
    jax_model = jax_lab.build_model(CFG, data, jax_w)
    torch_model = torch_lab.build_model(CFG, data, torch_w)
    for name, batch in (("padded", ragged), ("padded wider", wider)):
        ids, lengths, _ = jax_lab.as_arrays(batch)
        got = np.asarray(jax_model(ids, lengths))
        with torch.no_grad():
            ref = torch_model(*torch_lab.as_tensors(batch)[:2]).cpu().numpy()
        assert_close("cnn_classifier padding", f"{name}: jax vs torch", got, ref, F32)
        if name == "padded":
            base_jax, base_torch = got, ref
    assert_close("cnn_classifier padding", "jax: T vs T+37", got, base_jax, F32)
    assert_close("cnn_classifier padding", "torch: T vs T+37", ref, base_torch, F32)


def test_weight_map_round_trip(data):
    torch_w = torch_models.get_weights(torch_lab.build_model(CFG, data))
    back = convert.flax_to_torch(convert.torch_to_flax(torch_w, MAP), MAP)
    assert_tree_close("cnn_classifier weight map round trip", back, torch_w, EXACT)


def trajectories(cfg, data):
    torch_w = torch_models.get_weights(torch_lab.build_model(cfg, data))
    jax_model, jax_hist = jax_lab.train(cfg, data, weights=convert.torch_to_flax(torch_w, MAP))
    torch_model, torch_hist = torch_lab.train(cfg, data, weights=torch_w)
    return torch_w, (jax_model, jax_hist), (torch_model, torch_hist)


def test_trajectory(data):
    """Same start, same batches, from-scratch AdamW + warmup-cosine: 30 steps agree."""
    _, (_, jax_hist), (_, torch_hist) = trajectories(CFG, data)
    assert len(jax_hist.train_loss) == CFG.steps
    check = "cnn_classifier 30-step trajectory"
    for what in ("train_loss", "val_loss"):
        got, ref = np.array(getattr(jax_hist, what)), np.array(getattr(torch_hist, what))
        assert_close(check, what, got, ref, TRAJECTORY)
    assert jax_hist.evals["val_acc"] == torch_hist.evals["val_acc"]


def test_static_vectors_stay_frozen(tmp_path):
    """CNN-static from a word2vec text file: embeddings as loaded and frozen in both
    frameworks, everything else trained, the two trajectories agree."""
    cfg = dataclasses.replace(CFG, steps=10, eval_every=10, embeddings="static")
    corpus = spec.load_corpus(cfg)
    rng = np.random.default_rng(0)
    words = corpus.vocab.words[2:300:2]  # every other frequent word has a vector
    path = tmp_path / "vectors.txt"
    lines = [f"{len(words)} {cfg.n_embd}"]
    lines += [w + " " + " ".join(f"{v:.6f}" for v in rng.normal(size=cfg.n_embd)) for w in words]
    path.write_text("\n".join(lines) + "\n")
    cfg = dataclasses.replace(cfg, vectors=str(path))
    cfg.check()
    data = spec.load_data(cfg)
    assert data.coverage == pytest.approx(len(words) / (corpus.vocab.size - 2))
    i = corpus.vocab.index[words[3]]
    assert np.allclose(data.embeddings[i], [float(v) for v in lines[4].split()[1:]], atol=1e-6)
    start, (jax_model, jax_hist), (torch_model, torch_hist) = trajectories(cfg, data)
    jax_w = jax_models.get_weights(jax_model)
    torch_w = torch_models.get_weights(torch_model)
    assert np.array_equal(jax_w["wte.embedding"], data.embeddings)
    assert np.array_equal(torch_w["wte.weight"], data.embeddings)
    for name in ("head.weight", "convs.0.weight"):  # the rest trains
        assert not np.allclose(torch_w[name], start[name])
    assert_close(
        "cnn_classifier CNN-static trajectory",
        "train_loss",
        np.array(jax_hist.train_loss),
        np.array(torch_hist.train_loss),
        TRAJECTORY,
    )


def test_jax_run_writes_its_report(tmp_path):
    """`week1 run cnn_classifier --framework jax` in small: the table (CNN row, the rows not run,
    the baselines), confusion and curves PNGs, misclassified examples (the torch run is
    exercised by tests/test_devices.py)."""
    cfg = dataclasses.replace(CFG, steps=4, eval_every=2, show_misclassified=3)
    with Run("cnn_classifier", "jax", cfg, root=tmp_path, tensorboard=False) as run:
        summary = jax_lab.run(cfg, run)
    for name in ("confusion.png", "curves.png", "misclassified.txt", "results.md"):
        assert (run.dir / name).stat().st_size > 0, name
    table = (run.dir / "results.md").read_text()
    assert "| CNN-rand (jax) |" in table and "not run: --embeddings=static" in table
    assert "| NBSVM-bi |" in table and "| 79.4 |" in table
    assert summary["misclassified"].count("[true ") == 3
    assert 0.0 <= summary["test_accuracy"] <= 1.0
