"""serving parity: what the server runs equals what was trained (F32), in each framework and
across them, for the char LM (/v1/generate) and for Kim's CNN classifier (/v1/classify).

- torch: the ONNX file on onnxruntime (loaded as `week1 serve` loads it) and the
  ExportedProgram reloaded with torch.export.load equal the eager model, batches 1, 7, 64;
- JAX: the serialized StableHLO, deserialized in a fresh process by the server's loader
  (batches padded to a power of two, as served), equals the eager model, batches 1, 7, 64;
- the longest context: a prompt of the server's maximum length is cut to its last block_size
  characters (EXACT against the corpus' own encoding) and both exports equal eager on it;
- across frameworks: torch's ONNX equals the JAX model (eager and exported) built from the
  same weights converted with the lab's table (week1/convert.py).

The classifier the same way: batches of 1, 7 and 64 test texts and the 7 longest (cut at
max_length words, the longest input) at T = max_length, each export against eager; raw texts
encoded by the server (tokenizer pattern and vocabulary from serving.json) are the corpus'
own ids (EXACT), and their served probabilities (padded to the server's length buckets) equal
eager's; torch's ONNX equals JAX from converted weights.
"""

import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import torch

from labs import serving as spec
from week1 import charlm, convert
from week1.commands import serve
from week1.data import labelled
from week1.tolerances import EXACT, F32, assert_close, measure
from week1_jax import serving as jax_lab
from week1_jax.lib import charlm as jax_lm
from week1_jax.lib import models as jax_models
from week1_torch import serving as torch_lab
from week1_torch.lib import charlm as torch_lm
from week1_torch.lib import models as torch_models
from week1_torch.lib.models import get_weights

ROOT = pathlib.Path(__file__).resolve().parent.parent
CFG = charlm.Config()  # the default LM's sizes: block 8, embeddings 24, hidden 256
# A small KimCNN on the real polarity vocabulary; max_length 40 words cuts the longest texts
# (63 words), so the check at the longest input reads a full window.
CLS = spec.Classifier("polarity", split_seed=0, min_count=2, max_vocab=30000, n_embd=16,
                      n_maps=8, max_length=40)  # fmt: skip


@pytest.fixture(scope="module")
def corpus():
    return spec.load_corpus()


@pytest.fixture(scope="module")
def batches(corpus):
    return spec.check_batches(corpus, CFG.block_size)


@pytest.fixture(scope="module")
def models(corpus):
    """torch's initialisation from CFG.seed, and the same weights in Flax converted by the table."""
    torch_model = torch_lm.build_model(CFG, corpus.vocab_size)
    flax_weights = convert.torch_to_flax(get_weights(torch_model), spec.WEIGHT_MAP)
    return torch_model, jax_lm.build_model(CFG, corpus.vocab_size, flax_weights)


@pytest.fixture(scope="module")
def exports(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    torch_folder = torch_lab.export(
        models[0], root / "torch", spec.Source(CFG, "parity", "torch", 0)
    )
    jax_folder = jax_lab.export(models[1], root / "jax", spec.Source(CFG, "parity", "jax", 0))
    return torch_folder, jax_folder


def fresh_process_logits(folder, inputs: list[tuple], tmp_path) -> list[np.ndarray]:
    """The server's loader (week1.commands.serve.load_model) run in a new interpreter on
    `inputs` (each a tuple of the model's arguments): nothing of this process (no traced
    function, no cached executable) is reused."""
    n = len(inputs[0])  # arguments per input
    np.savez(tmp_path / "in.npz", *[a for xs in inputs for a in xs])
    code = (
        "import sys, numpy as np\n"
        "from week1.commands.serve import load_model\n"
        "model = load_model(sys.argv[1])\n"
        "saved, n = np.load(sys.argv[2]), int(sys.argv[4])\n"
        "arrays = [saved[f'arr_{i}'] for i in range(len(saved.files))]\n"
        "outs = [model.logits(*arrays[i : i + n]) for i in range(0, len(arrays), n)]\n"
        "np.savez(sys.argv[3], *outs)\n"
    )
    out = tmp_path / "out.npz"
    subprocess.run(
        [sys.executable, "-c", code, str(folder), str(tmp_path / "in.npz"), str(out), str(n)],
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    saved = np.load(out)
    return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def test_torch_exports_equal_eager(models, exports, batches):
    served = serve.load_model(exports[0])
    program = torch_lab.reload(exports[0])["ExportedProgram"]
    for x in batches:
        eager = torch_lab.eager_logits(models[0], x)
        assert_close("torch onnx", f"batch {len(x)}", served.logits(x), eager, F32)
        assert_close(
            "torch exported program",
            f"batch {len(x)}",
            program(x),
            eager,
            F32,
        )


def test_jax_export_reloaded_in_a_fresh_process_equals_eager(models, exports, batches, tmp_path):
    reloaded = fresh_process_logits(exports[1], [(x,) for x in batches], tmp_path)
    for x, out in zip(batches, reloaded, strict=True):
        eager = jax_lab.eager_logits(models[1], x)
        assert_close("jax stablehlo", f"batch {len(x)}", out, eager, F32)


def test_the_longest_prompt_is_cut_to_the_context_and_served_as_eager(corpus, models, exports):
    val = corpus.split(0.1)[1]
    prompt = corpus.decode(val[: serve.MAX_PROMPT_CHARS])
    manifest = json.loads((exports[0] / spec.MANIFEST).read_text())
    context, coverage = serve.encode_prompt(
        prompt, manifest["vocab"], manifest["block_size"], manifest["pad_id"]
    )
    assert coverage == 1.0
    last = corpus.encode(prompt[-CFG.block_size :]).astype(np.int64)
    assert_close("longest prompt", "context ids", context, last, EXACT)
    x = context[None, :]  # (1, T)
    for name, folder, eager in (
        ("torch onnx", exports[0], torch_lab.eager_logits(models[0], x)),
        ("jax stablehlo", exports[1], jax_lab.eager_logits(models[1], x)),
    ):
        assert_close(name, "longest prompt", serve.load_model(folder).logits(x), eager, F32)


def test_torch_onnx_equals_jax_from_converted_weights(models, exports, batches):
    onnx = serve.load_model(exports[0])
    stablehlo = serve.load_model(exports[1])
    for x in batches:
        jax_eager = jax_lab.eager_logits(models[1], x)
        assert_close("onnx vs jax", f"eager, batch {len(x)}", onnx.logits(x), jax_eager, F32)
        assert_close(
            "onnx vs jax", f"stablehlo, batch {len(x)}", onnx.logits(x), stablehlo.logits(x), F32
        )


def test_the_check_can_fail(models, exports, batches):
    """Another model's weights (seed 1) are far outside F32 of the export: the checks have teeth
    (measured, not recorded: a negative control is no parity result)."""
    other = torch_lm.build_model(charlm.Config(seed=1), models[0].wte.num_embeddings)
    x = batches[0]
    served = serve.load_model(exports[0]).logits(x)
    assert not measure(served, torch_lab.eager_logits(other, x), F32).ok


# --- the classifier (/v1/classify) ---------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_models():
    """KimCNN initialised in torch (Kim's embedding range, seed 0), and the same weights in
    Flax converted by the table."""
    corpus = spec.load_labelled(CLS)
    torch.manual_seed(0)
    torch_model = torch_models.KimCNN(
        corpus.vocab.size, CLS.n_embd, CLS.n_maps, corpus.num_classes, widths=spec.WIDTHS,
        init_range=0.25, dropout=0.0,
    )  # fmt: skip
    jax_model = jax_lab.build_model(CLS)
    flax_weights = convert.torch_to_flax(get_weights(torch_model), spec.CLASSIFIER_WEIGHT_MAP)
    jax_models.set_weights(jax_model, flax_weights)
    return torch_model, jax_model


@pytest.fixture(scope="module")
def classifier_exports(classifier_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("classifier")
    return tuple(
        lab.export(model, root / name, spec.Source(CLS, "parity", name, 0))
        for lab, model, name in zip(
            (torch_lab, jax_lab), classifier_models, ("torch", "jax"), strict=True
        )
    )


@pytest.fixture(scope="module")
def classifier_batches():
    """Test texts as (ids, lengths): 1, 7 and 64 of them, then the 7 longest, at T = 40."""
    batches = spec.classifier_batches(CLS)
    assert [len(ids) for ids, _ in batches] == [*spec.CHECK_BATCHES, 7]
    assert batches[-1][1].min() == CLS.max_length  # the longest inputs: cut at max_length
    return batches


def test_torch_classifier_exports_equal_eager(
    classifier_models, classifier_exports, classifier_batches
):
    served = serve.load_model(classifier_exports[0])
    assert served.kind == spec.CLASSIFIER
    program = torch_lab.reload(classifier_exports[0])["ExportedProgram"]
    for ids, lengths in classifier_batches:
        eager = torch_lab.eager_logits(classifier_models[0], ids, lengths)
        what = f"batch {len(ids)}, longest {lengths.max()} words"
        assert_close("torch classifier onnx", what, served.logits(ids, lengths), eager, F32)
        assert_close("torch classifier exported program", what, program(ids, lengths), eager, F32)


def test_jax_classifier_export_reloaded_in_a_fresh_process_equals_eager(
    classifier_models, classifier_exports, classifier_batches, tmp_path
):
    reloaded = fresh_process_logits(classifier_exports[1], classifier_batches, tmp_path)
    for (ids, lengths), out in zip(classifier_batches, reloaded, strict=True):
        eager = jax_lab.eager_logits(classifier_models[1], ids, lengths)
        what = f"batch {len(ids)}, longest {lengths.max()} words"
        assert_close("jax classifier stablehlo", what, out, eager, F32)


def test_raw_texts_are_encoded_as_in_training_and_served_as_eager(
    classifier_models, classifier_exports
):
    """The server's encoding of raw test texts (serving.json's tokenizer and vocabulary) is the
    corpus' own ids, cut at max_length (EXACT); served together and one by one (padded to the
    server's length buckets), their probabilities equal softmax of the eager logits (F32)."""
    test = spec.load_labelled(CLS).splits["test"]
    rows = np.concatenate([np.arange(57), np.argsort(-np.asarray(test["length"]))[:7]])  # 64
    picked = test[rows]
    manifest = serve.read_manifest(classifier_exports[0])
    pattern = re.compile(manifest["tokenizer"]["pattern"])
    index = {w: i for i, w in enumerate(manifest["vocab"])}
    encoded = [serve.encode_text(str(t), pattern, index, manifest)[0] for t in picked["text"]]
    for served_ids, ids in zip(encoded, picked["ids"], strict=True):
        assert_close("classifier encoding", "word ids", served_ids, ids[: CLS.max_length], EXACT)
    lengths = np.array([len(r) for r in encoded])  # (B,)
    T = max(CLS.max_length, spec.MIN_WORDS)
    ids = np.full((len(encoded), T), labelled.PAD, np.int64)  # (B, T)
    for i, r in enumerate(encoded):
        ids[i, : len(r)] = r
    for name, lab, model, folder in zip(
        ("torch onnx", "jax stablehlo"), (torch_lab, jax_lab), classifier_models,
        classifier_exports, strict=True,
    ):  # fmt: skip
        served = serve.load_model(folder)
        z = lab.eager_logits(model, ids, lengths).astype(np.float64)
        want = np.exp(z - z.max(axis=1, keepdims=True))
        want /= want.sum(axis=1, keepdims=True)  # (B, C)
        probs = np.stack(serve.classify(served, encoded))  # (B, C): all 64, padded to 40 words
        assert_close(name, "served probabilities, batch 64", probs, want, F32)
        for i in range(8):  # alone: batch 1, padded to the text's own length bucket (16 or 32)
            (alone,) = serve.classify(served, [encoded[i]])
            assert_close(name, "served probabilities, batch 1", alone, want[i], F32)


def test_torch_onnx_classifier_equals_jax_from_converted_weights(
    classifier_models, classifier_exports, classifier_batches
):
    onnx = serve.load_model(classifier_exports[0])
    stablehlo = serve.load_model(classifier_exports[1])
    for ids, lengths in classifier_batches:
        jax_eager = jax_lab.eager_logits(classifier_models[1], ids, lengths)
        got = onnx.logits(ids, lengths)
        what = f"batch {len(ids)}, longest {lengths.max()} words"
        assert_close("classifier onnx vs jax", f"eager, {what}", got, jax_eager, F32)
        assert_close(
            "classifier onnx vs jax", f"stablehlo, {what}", got, stablehlo.logits(ids, lengths), F32
        )


def test_the_classifier_check_can_fail(classifier_models, classifier_exports, classifier_batches):
    """Another initialisation (seed 1) is far outside F32 of the export (a negative control)."""
    torch.manual_seed(1)
    other = torch_models.KimCNN(
        *classifier_models[0].wte.weight.shape, CLS.n_maps, classifier_models[0].head.out_features,
        widths=spec.WIDTHS, init_range=0.25, dropout=0.0,
    )  # fmt: skip
    ids, lengths = classifier_batches[1]
    served = serve.load_model(classifier_exports[0]).logits(ids, lengths)
    assert not measure(served, torch_lab.eager_logits(other, ids, lengths), F32).ok
