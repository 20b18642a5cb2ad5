"""pretrained_embeddings: the from-scratch BERT encoders (Flax, torch) against transformers'
BertModel loaded from the same packaged folder, and against each other.

What is compared: the hidden states of every layer (the embeddings' output and the
6 layers) at the real tokens, the pooler output, and the sentence embeddings.
Padded positions are left out of the hidden-state checks: their rows are
[PAD] queries whose values nothing reads (the mask hides them as keys, mean
pooling skips them).

- F64 tier, element by element, all three in float64: the same maths.
- F32 tier in float32: torch vs transformers element by element (the same kernels);
  JAX vs either in units of the tensor's largest magnitude (h / max|h|), because
  XLA's and MKL's float32 dot products sum in different orders and, after 6 layers
  whose pre-LayerNorm sums reach ~10, differ by a few float32 ulps of that scale:
  element-wise that misses atol 1e-6 on near-zero elements, normwise it is inside
  F32 with room (both sides are that far from the float64 result, which is why
  the F64 check above is the one that pins the implementation).
- Sentence embeddings and pooler: F32 element by element, all pairs.
- encode(texts): the interface, and batched == each text alone.
- bf16 (JAX policy / torch.autocast): the cosine similarities between sentences,
  what embeddings are used for, within the BF16 tier of float32's, on the CPU and
  (gpu mark) on a CUDA device with TF32 off.
"""

import dataclasses
import importlib.util

import jax
import numpy as np
import pytest
import torch

from labs import pretrained_embeddings as spec
from week1 import convert
from week1.data import minilm, vectors
from week1.tolerances import BF16, EXACT, F32, F64, assert_close
from week1_jax import pretrained_embeddings as jpe
from week1_jax.lib import bert as jbert
from week1_jax.lib import precision as jprec
from week1_jax.lib.models import get_weights as jax_weights
from week1_torch import pretrained_embeddings as tpe
from week1_torch.lib import bert as tbert
from week1_torch.lib import devices as tdevices
from week1_torch.lib import precision as tprec

CFG = spec.Config(max_length=32)
TEXTS = [*spec.SENSES["bank"][:2], spec.SENSES["bat"][2], "Hi!"]  # 3 to 14 words: padding
CPU = torch.device("cpu")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def packaged():
    """(BertConfig, weights, tokenizer) of the packaged model; a GPU box without the package
    still runs the random-weight GPU case below."""
    if importlib.util.find_spec(minilm.PACKAGE) is None:
        pytest.skip(f"{minilm.PIP_NAME} is not installed")
    return spec.pretrained(CFG)


@pytest.fixture(scope="module")
def batch(packaged):
    out = minilm.batch(packaged[2], TEXTS, CFG.max_length)
    assert out.ids.shape[1] <= 32 and 0 < out.mask.sum(axis=1).min() < out.ids.shape[1]
    return out


def packaged_transformers():
    """transformers' BertModel from the packaged folder, with eager attention (the written-out
    softmax; its default, SDPA, is a fused kernel)."""
    from transformers import BertModel

    return BertModel.from_pretrained(str(minilm.model_dir()), attn_implementation="eager")


def transformers_outputs(model, batch, dtype, device):
    """(hidden states, pooled, sentence embeddings) of transformers' `model` in `dtype` on
    `device`, as numpy."""
    model = model.to(device=device, dtype=dtype).eval()
    ids, type_ids, mask = tdevices.to_device(
        batch.ids, batch.type_ids, batch.mask, dtype=torch.long, device=device
    )
    with torch.inference_mode():
        out = model(
            input_ids=ids, token_type_ids=type_ids, attention_mask=mask, output_hidden_states=True
        )
        sentence = tbert.sentence_embeddings(out.last_hidden_state, mask)
    hidden = [h.cpu().numpy() for h in out.hidden_states]
    return hidden, out.pooler_output.cpu().numpy(), sentence.cpu().numpy()


def torch_outputs(config, weights, batch, dtype):
    model = tpe.build_model(config, weights).to(dtype)
    hidden, pooled = tpe.forward_fn(model)(batch)
    return hidden, pooled, tpe.embed_fn(model)(batch).cpu().numpy()


def jax_outputs(config, weights, batch, policy):
    """(embed_fn's jitted path is checked by the encode tests; pooling here is eager: one
    compilation fewer.)"""
    model = jprec.apply_policy(jpe.build_model(config, weights), policy)
    hidden, pooled = jpe.forward_fn(model)(batch)
    sentence = jbert.sentence_embeddings(hidden[-1], batch.mask.astype(hidden[-1].dtype))
    return hidden, pooled, np.asarray(sentence)


def compare(check, actual, reference, mask, tier, normwise=False):
    """Hidden states (at real tokens), pooler output and sentence embeddings of two encoders."""
    keep = mask.astype(bool)
    for layer, (a, r) in enumerate(zip(actual[0], reference[0], strict=True)):
        a, r = a[keep], r[keep]  # (real tokens, C)
        name = f"hidden {layer}" if layer else "hidden 0 (embeddings)"
        if normwise:
            scale = np.abs(r).max()
            a, r, name = a / scale, r / scale, f"{name} / max|h|"
        assert_close(check, name, a, r, tier)
    assert_close(check, "pooler", actual[1], reference[1], tier)
    assert_close(check, "sentence embeddings", actual[2], reference[2], tier)


def test_weight_map_covers_the_checkpoint_and_round_trips(packaged):
    _, weights, _ = packaged
    flax = convert.torch_to_flax(weights, spec.WEIGHT_MAP)
    model = jpe.build_model(packaged[0], weights)
    assert sorted(jax_weights(model)) == sorted(flax), "the table's Flax column is the model's"
    back = convert.flax_to_torch(jax_weights(model), spec.WEIGHT_MAP)
    for name in weights:
        assert_close("pretrained_embeddings weight map", name, back[name], weights[name], EXACT)


def test_float64_jax_torch_transformers_agree_at_every_layer(packaged, batch):
    config, weights, _ = packaged
    reference = transformers_outputs(packaged_transformers(), batch, torch.float64, CPU)
    compare(
        "bert f64 torch vs transformers",
        torch_outputs(config, weights, batch, torch.float64),
        reference,
        batch.mask,
        F64,
    )
    with jax.enable_x64(True):
        jax64 = jax_outputs(config, weights, batch, jprec.FP64)
    assert jax64[0][-1].dtype == np.float64
    compare("bert f64 jax vs transformers", jax64, reference, batch.mask, F64)


def test_float32_jax_torch_transformers_agree(packaged, batch):
    config, weights, _ = packaged
    reference = transformers_outputs(packaged_transformers(), batch, torch.float32, CPU)
    torch32 = torch_outputs(config, weights, batch, torch.float32)
    jax32 = jax_outputs(config, weights, batch, jprec.FP32)
    compare("bert f32 torch vs transformers", torch32, reference, batch.mask, F32)
    compare("bert f32 jax vs transformers", jax32, reference, batch.mask, F32, normwise=True)
    compare("bert f32 jax vs torch", jax32, torch32, batch.mask, F32, normwise=True)


@pytest.mark.parametrize("lab", [jpe, tpe], ids=["jax", "torch"])
def test_encode_interface_and_batched_equals_alone(lab, packaged):
    name = lab.__name__.split(".")[0].removeprefix("week1_")
    together = lab.encode(TEXTS)
    assert isinstance(together, np.ndarray) and together.shape == (len(TEXTS), 384)
    assert together.dtype == np.float32
    norms = np.linalg.norm(together, axis=1)
    assert_close(f"encode {name}", "row norms", norms, np.ones(len(TEXTS)), F32)
    alone = np.concatenate([lab.encode([t]) for t in TEXTS])
    assert_close(f"encode {name}", "batched vs alone", together, alone, F32)
    assert lab.encode([]).shape == (0, 384)


def test_encode_jax_equals_torch(packaged):
    assert_close("encode", "jax vs torch", jpe.encode(TEXTS), tpe.encode(TEXTS), F32)


def test_contextual_vectors_separate_the_senses(packaged):
    """The lab's demo, in one framework: at the last layer, a word's vectors are closer within
    a sense than across senses, while the static vector is one."""
    config, weights, tokenizer = packaged
    forward = tpe.forward_fn(tpe.build_model(config, weights))
    for word, (batch, positions) in spec.sense_batches(CFG, tokenizer).items():
        vectors = spec.word_vectors(forward(batch)[0], positions)  # (L + 1, 4, C)
        within, across = spec.within_across(spec.cosines(vectors[-1]))
        assert within > across, word


def similarities(embeddings):
    return embeddings @ embeddings.T  # (N, N) cosines: the rows are unit vectors


@pytest.mark.parametrize(
    "device", [CPU, pytest.param(torch.device("cuda"), marks=[pytest.mark.gpu, gpu])]
)
def test_bf16_similarities_within_the_bf16_tier(packaged, device, monkeypatch):
    monkeypatch.setattr(tdevices, "default_device", lambda: device)
    config, weights, tokenizer = packaged
    texts = list(spec.SEARCH_CORPUS[:8])
    torch_model = tpe.build_model(config, weights)
    f32 = similarities(tpe.embed_texts(tpe.embed_fn(torch_model), tokenizer, texts, CFG))
    with tprec.autocast("bf16", device.type):
        torch_bf16 = tpe.embed_texts(tpe.embed_fn(torch_model), tokenizer, texts, CFG)
    jax_model = jprec.apply_policy(jpe.build_model(config, weights), jprec.BF16)
    jax_bf16 = jpe.embed_texts(jpe.embed_fn(jax_model), tokenizer, texts, CFG)
    assert_close("bert bf16", "torch autocast vs f32 cosines", similarities(torch_bf16), f32, BF16)
    assert_close("bert bf16", "jax policy vs f32 cosines", similarities(jax_bf16), f32, BF16)
    assert_close(
        "bert bf16", "jax vs torch cosines", similarities(jax_bf16), similarities(torch_bf16), BF16
    )


@pytest.mark.gpu
@gpu
def test_float32_on_the_gpu_tf32_off(monkeypatch):
    """The F32 checks on a CUDA device (conftest turns TF32 off on both sides), from
    transformers' own random init (BERT's N(0, 0.02)) and random ids: no packaged files needed."""
    import transformers

    device = torch.device("cuda")
    monkeypatch.setattr(tdevices, "default_device", lambda: device)
    assert not torch.backends.cuda.matmul.allow_tf32
    assert jax.default_backend() == "gpu", "jax has no CUDA plugin here"
    config = minilm.BertConfig()
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(
        **dataclasses.asdict(config), hidden_act="gelu", attn_implementation="eager"
    )
    model = transformers.BertModel(hf_config)
    weights = {name: t.numpy() for name, t in model.state_dict().items()}
    rng = np.random.default_rng(0)
    mask = (np.arange(32)[None, :] < np.array([[32], [20], [9], [3]])).astype(np.int32)  # (4, 32)
    ids = np.where(mask == 1, rng.integers(1000, config.vocab_size, mask.shape), minilm.PAD_ID)
    batch = minilm.Batch(ids.astype(np.int32), np.zeros_like(mask), mask)
    reference = transformers_outputs(model, batch, torch.float32, device)
    torch32 = torch_outputs(config, weights, batch, torch.float32)
    jax32 = jax_outputs(config, weights, batch, jprec.FP32)
    compare("bert gpu f32 torch vs transformers", torch32, reference, mask, F32)
    compare("bert gpu f32 jax vs transformers", jax32, reference, mask, F32, normwise=True)
    compare("bert gpu f32 jax vs torch", jax32, torch32, mask, F32, normwise=True)


@pytest.fixture(scope="module")
def static_subset(tmp_path_factory):
    """Google News's 3,000 most frequent words written as a word2vec file: a "trained" set whose
    answers are known (the same vectors)."""
    if importlib.util.find_spec("wefe") is None:
        pytest.skip("wefe (the Google News vectors) is not installed")
    google = vectors.load_pretrained()
    path = tmp_path_factory.mktemp("vectors") / "subset.bin"
    vectors.save_word2vec_format(path, google.words[:3000], google.vectors[:3000], binary=True)
    return path


def test_static_sets_are_scored_on_the_same_pairs_and_questions(static_subset):
    sets = spec.load_static(dataclasses.replace(CFG, vectors=str(static_subset)))
    google, trained = spec.shared_vocabulary(sets["Google News"], sets["trained"])
    for name, file in vectors.PAIR_SETS.items():
        scores = [
            vectors.evaluate_word_pairs(wv, vectors.eval_path(file)) for wv in (google, trained)
        ]
        assert scores[0].pairs == scores[1].pairs > 0, name
        assert_close(
            "static same vectors", f"{name} rho", scores[1].spearman, scores[0].spearman, EXACT
        )
    questions = vectors.eval_path(vectors.ANALOGIES)
    scores = [vectors.evaluate_word_analogies(wv, questions) for wv in (google, trained)]
    assert scores[0].total == scores[1].total > 0
    rows = spec.pair_cosines(google, trained)
    cos_google, cos_trained = (np.array([r[k] for r in rows]) for k in (4, 5))
    assert_close("static same vectors", "pair cosines", cos_trained, cos_google, EXACT)
    agreement = spec.report_disagreement(rows)  # identical vectors: perfect agreement
    assert_close(
        "static same vectors",
        "rho by frequency",
        np.array(list(agreement.values())),
        np.ones(3),
        F64,
    )


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_cli_run_writes_its_tables(framework, static_subset, tmp_path, capsys):
    from week1 import cli
    from week1.runs import read_summary

    code = cli.main(["run", "pretrained_embeddings", "--framework", framework,
                     "--runs-dir", str(tmp_path), f"--vectors={static_subset}",
                     "--bench_sentences=16", "--batch_size=8", "--iters=1"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (folder,) = tmp_path.iterdir()
    summary = read_summary(folder)
    assert summary["status"] == "ok"
    out = capsys.readouterr().out
    assert "where the sense is resolved" in out and "semantic search" in out
    assert "agreement of the two sets" in out and "sentences/s" in out
