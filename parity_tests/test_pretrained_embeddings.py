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

import jax
import numpy as np
import pytest
import torch

from labs import pretrained_embeddings as spec
from week1 import convert
from week1.data import minilm
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
    return spec.pretrained(CFG)  # (BertConfig, weights, tokenizer)


@pytest.fixture(scope="module")
def batch(packaged):
    out = minilm.batch(packaged[2], TEXTS, CFG.max_length)
    assert out.ids.shape[1] <= 32 and 0 < out.mask.sum(axis=1).min() < out.ids.shape[1]
    return out


def transformers_outputs(batch, dtype, device):
    """transformers' BertModel from the same folder (eager attention: the written-out
    softmax), in `dtype` on `device`: (hidden states, pooled, sentence embeddings), numpy."""
    from transformers import BertModel

    model = BertModel.from_pretrained(str(minilm.model_dir()), attn_implementation="eager")
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


def torch_outputs(packaged, batch, dtype):
    config, weights, _ = packaged
    model = tpe.build_model(config, weights).to(dtype)
    hidden, pooled = tpe.forward_fn(model)(batch)
    return hidden, pooled, tpe.embed_fn(model)(batch).cpu().numpy()


def jax_outputs(packaged, batch, policy):
    """(embed_fn's jitted path is checked by the encode tests; pooling here is eager: one
    compilation fewer.)"""
    config, weights, _ = packaged
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
    reference = transformers_outputs(batch, torch.float64, CPU)
    compare(
        "bert f64 torch vs transformers",
        torch_outputs(packaged, batch, torch.float64),
        reference,
        batch.mask,
        F64,
    )
    with jax.enable_x64(True):
        jax64 = jax_outputs(packaged, batch, jprec.FP64)
    assert jax64[0][-1].dtype == np.float64
    compare("bert f64 jax vs transformers", jax64, reference, batch.mask, F64)


def test_float32_jax_torch_transformers_agree(packaged, batch):
    reference = transformers_outputs(batch, torch.float32, CPU)
    torch32 = torch_outputs(packaged, batch, torch.float32)
    jax32 = jax_outputs(packaged, batch, jprec.FP32)
    compare("bert f32 torch vs transformers", torch32, reference, batch.mask, F32)
    compare("bert f32 jax vs transformers", jax32, reference, batch.mask, F32, normwise=True)
    compare("bert f32 jax vs torch", jax32, torch32, batch.mask, F32, normwise=True)


@pytest.mark.parametrize("lab", [jpe, tpe], ids=["jax", "torch"])
def test_encode_interface_and_batched_equals_alone(lab):
    together = lab.encode(TEXTS)
    assert isinstance(together, np.ndarray) and together.shape == (len(TEXTS), 384)
    assert together.dtype == np.float32
    assert_close("encode", "row norms", np.linalg.norm(together, axis=1), np.ones(len(TEXTS)), F32)
    alone = np.concatenate([lab.encode([t]) for t in TEXTS])
    assert_close(f"encode {lab.__name__}", "batched vs alone", together, alone, F32)
    assert lab.encode([]).shape == (0, 384)


def test_encode_jax_equals_torch():
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
def test_float32_on_the_gpu_tf32_off(packaged, batch, monkeypatch):
    """The F32 checks on a CUDA device (conftest turns TF32 off on both sides)."""
    device = torch.device("cuda")
    monkeypatch.setattr(tdevices, "default_device", lambda: device)
    assert not torch.backends.cuda.matmul.allow_tf32
    assert jax.default_backend() == "gpu", "jax has no CUDA plugin here"
    reference = transformers_outputs(batch, torch.float32, device)
    torch32 = torch_outputs(packaged, batch, torch.float32)
    jax32 = jax_outputs(packaged, batch, jprec.FP32)
    compare("bert gpu f32 torch vs transformers", torch32, reference, batch.mask, F32)
    compare("bert gpu f32 jax vs torch", jax32, torch32, batch.mask, F32, normwise=True)
