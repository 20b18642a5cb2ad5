"""serving parity: what the server runs equals what was trained (F32), in each framework and
across them.

- torch: the ONNX file on onnxruntime (loaded as `week1 serve` loads it) and the
  ExportedProgram reloaded with torch.export.load equal the eager model, batches 1, 7, 64;
- JAX: the serialized StableHLO, deserialized in a fresh process by the server's loader
  (batches padded to a power of two, as served), equals the eager model, batches 1, 7, 64;
- the longest context: a prompt of the server's maximum length is cut to its last block_size
  characters (EXACT against the corpus' own encoding) and both exports equal eager on it;
- across frameworks: torch's ONNX equals the JAX model (eager and exported) built from the
  same weights converted with the lab's table (week1/convert.py).
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from labs import serving as spec
from week1 import charlm, convert
from week1.commands import serve
from week1.tolerances import EXACT, F32, assert_close, measure
from week1_jax import serving as jax_lab
from week1_jax.lib import charlm as jax_lm
from week1_torch import serving as torch_lab
from week1_torch.lib import charlm as torch_lm
from week1_torch.lib.models import get_weights

ROOT = pathlib.Path(__file__).resolve().parent.parent
CFG = charlm.Config()  # the default LM's sizes: block 8, embeddings 24, hidden 256


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


def fresh_process_logits(folder, inputs: list[np.ndarray], tmp_path) -> list[np.ndarray]:
    """The server's loader (week1.commands.serve.load_model) run in a new interpreter on
    `inputs`: nothing of this process (no traced function, no cached executable) is reused."""
    np.savez(tmp_path / "in.npz", *inputs)
    code = (
        "import sys, numpy as np\n"
        "from week1.commands.serve import load_model\n"
        "model = load_model(sys.argv[1])\n"
        "inputs = np.load(sys.argv[2])\n"
        "np.savez(sys.argv[3], *[model.logits(inputs[k]) for k in inputs.files])\n"
    )
    out = tmp_path / "out.npz"
    subprocess.run(
        [sys.executable, "-c", code, str(folder), str(tmp_path / "in.npz"), str(out)],
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    saved = np.load(out)
    return [saved[k] for k in saved.files]


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
    reloaded = fresh_process_logits(exports[1], batches, tmp_path)
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
