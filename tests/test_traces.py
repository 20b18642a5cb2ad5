"""Each JAX lab's jitted train step compiles once across a whole run: no silent retracing; and
the torch step that lib/train compiles (torch.compile) does not recompile after its first call.

lib/steps.jit_on_state is wrapped, for the test, with chex.assert_max_traces(n=1)
(which raises on a second trace); the labs' train loops then run several steps,
evaluations included.
"""

import dataclasses
import functools
import itertools

import chex
import jax
import numpy as np
import pytest
from flax import nnx

from labs import grad_accumulation, mixed_precision
from week1 import charlm, loop
from week1_jax import grad_accumulation as jga
from week1_jax import mixed_precision as jmp
from week1_jax.lib import charlm as jtl
from week1_jax.lib import steps

SMALL = dict(steps=6, batch_size=16, n_hidden=32, warmup_steps=2, eval_every=3)


@pytest.fixture
def traced_once(monkeypatch):
    """jit_on_state whose step raises if traced twice; returns the number of steps built."""
    built = []

    def jit_on_state(graphdef, step, donate=False):
        @functools.partial(jax.jit, donate_argnums=(0,) if donate else ())
        @chex.assert_max_traces(n=1)
        def jitted(state, *args):
            model, optimizer = nnx.merge(graphdef, state)
            return nnx.state((model, optimizer)), step(model, optimizer, *args)

        built.append(jitted)
        return jitted

    chex.clear_trace_counter()
    monkeypatch.setattr(steps, "jit_on_state", jit_on_state)
    yield built
    chex.clear_trace_counter()


@pytest.fixture(scope="module")
def data():
    return charlm.load_data(charlm.Config())


def test_training_loop_step_traces_once(traced_once, data):
    _, history = jtl.train(charlm.Config(**SMALL), data)
    assert len(history.steps) == SMALL["steps"] and len(traced_once) == 1


@pytest.mark.parametrize("method", ["scan", "multisteps"])
def test_grad_accumulation_step_traces_once(traced_once, data, method):
    _, history = jga.train(grad_accumulation.Config(**SMALL, micro_batches=4), data, method=method)
    assert len(history.steps) == SMALL["steps"] and len(traced_once) == 1


def test_mixed_precision_step_traces_once(traced_once, data):
    _, history, _ = jmp.train(mixed_precision.Config(**SMALL), data, "bf16")
    assert len(history.steps) == SMALL["steps"] and len(traced_once) == 1


def test_compiled_torch_step_does_not_recompile(monkeypatch, data):
    """The whole torch step (forward, backward, AdamW) through torch.compile compiles at its
    first call and never again: a later recompilation fails the run here (the lr and AdamW's
    step count are tensors and its state exists from the start, so nothing changes between
    calls but data). Evaluation runs the uncompiled model."""
    torch = pytest.importorskip("torch")
    from week1_torch.lib import charlm as torch_lm
    from week1_torch.lib import parallelize

    compile_step, calls = parallelize.apply_compile, []

    def strict(step):
        compiled = compile_step(step)

        def guarded(*batch):
            calls.append(len(batch))
            if len(calls) == 1:
                return compiled(*batch)
            with torch.compiler.set_stance("fail_on_recompile"):
                return compiled(*batch)

        return guarded

    monkeypatch.setattr(parallelize, "apply_compile", strict)
    _, history = torch_lm.train(charlm.Config(**SMALL), data, ctx=loop.Context(compile=True))
    assert len(calls) == SMALL["steps"] and len(history.val_loss) == 2


@pytest.mark.parametrize("micro_batches", [1, 4])
def test_the_compiled_torch_step_is_one_graph(micro_batches):
    """parallelize.apply_compile traces the whole step: forward, every backward() of the
    micro-batches and AdamW land in one graph, none broken off (Dynamo's default breaks the
    graph at each backward(), and the scheduler's wrapper of optimizer.step broke another)."""
    torch = pytest.importorskip("torch")
    from torch._dynamo.utils import counters

    from week1_torch import grad_accumulation as tga

    torch._dynamo.reset()
    counters.clear()
    cfg = grad_accumulation.Config(**SMALL, micro_batches=micro_batches)
    _, history = tga.train(cfg, charlm.load_data(cfg), ctx=loop.Context(compile=True))
    assert len(history.steps) == SMALL["steps"]
    assert dict(counters["graph_break"]) == {} and counters["stats"]["unique_graphs"] == 1


def test_the_model_checks_its_input_shape():
    """chex shape assertions in the model: a context of the wrong length fails while tracing,
    with the numbers, instead of a matmul shape error deep inside."""
    from week1_jax.lib.models import CharMLP

    model = CharMLP(10, 8, 4, 16, rngs=nnx.Rngs(0))
    assert model(jax.numpy.zeros((2, 8), jax.numpy.int32)).shape == (2, 10)
    with pytest.raises(AssertionError, match="dimension equal to '8' on axis '1' but got '7'"):
        model(jax.numpy.zeros((2, 7), jax.numpy.int32))


def test_compiled_word2vec_update_does_not_recompile():
    """word2vec's batches change width from batch to batch; its compiled update takes dynamic
    shapes from the first call, so no later batch recompiles it (a recompilation would land
    inside the timed steps of `week1 compare word2vec`)."""
    torch = pytest.importorskip("torch")
    from week1.data import embeddings as pipeline
    from week1_torch.lib import embeddings

    sentences = [[f"w{(7 * i + j) % 40}" for j in range(3 + i % 9)] for i in range(300)]
    settings = pipeline.Settings(min_count=1, batch_size=16, vector_size=8)
    s = pipeline.setup(sentences, settings)
    state = embeddings.as_state(pipeline.init_weights(s, settings))
    update = embeddings.make_update(settings, compile=True)
    batches = list(itertools.islice(pipeline.batches(s, settings, 0), 6))
    shapes = {tuple(a.shape for a in b.arrays()) for b in batches}
    assert len(shapes) > 1, "the batches all have one shape: the test checks nothing"
    update(state, batches[0])
    with torch.compiler.set_stance("fail_on_recompile"):
        losses = [float(update(state, b)) for b in batches[1:]]
    assert all(np.isfinite(losses))


def test_a_whole_step_over_an_fsdp2_model_is_refused_before_it_runs():
    """Compiling the whole step of an FSDP2 model leaves its gradient reduce-scatter out of the
    graph (parallelize.apply_compile): the shared loop refuses it in one line, before any step
    (the loop compiles unsharded models in the tests above)."""
    import torch
    import torch.distributed as dist

    from week1.parallel import free_port
    from week1_torch.lib import parallelize
    from week1_torch.lib import train as trainer

    def train(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        step = trainer.make_step(model, optimizer, lambda m, x, y: ((m(x) - y) ** 2).mean())
        batch = lambda i: (torch.ones(4, 3), torch.zeros(4, 2))
        ctx = dataclasses.replace(loop.BARE, compile=True)
        return trainer.train(model, optimizer, step, batch, loop.Cadence(steps=2), ctx)

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        model = torch.nn.Sequential(torch.nn.Linear(3, 2))
        parallelize.apply_fsdp(model, torch.device("cpu"), [model[0]])
        with pytest.raises(ValueError, match="sharded by FSDP2: compiling the whole step"):
            train(model)
    finally:
        dist.destroy_process_group()
