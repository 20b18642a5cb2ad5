"""Every torch lab puts its model, batches and optimizer state on `devices.default_device()`.

On a CPU machine the CPU is also the default device, so nothing would show a lab that builds a
tensor on the CPU behind the device module's back. Here the default device is patched to torch's
`meta` device (tensors with shapes and no data), and a TorchDispatchMode watches every operation:
an operation that mixes a meta tensor with a non-scalar CPU tensor is a placement bug (torch's
meta kernels do not always refuse it: a meta embedding happily takes CPU indices). Reads of values
(`float(loss)`, `.cpu()`) get ones, so each lab's run and bench go through to the end; the numbers
are meaningless, the placement is what is checked. At the end every parameter is on `meta`.

Three more watches, here and on a real GPU (`gpu`-marked, scripts/gpu_check.sh's `devices`
stage, all labs in one pytest run spread over worker processes): every module that runs a
forward pass holds its own parameters and buffers on the device (a model built, or loaded,
on the CPU and never moved is caught when it runs, placed through devices.place or not);
every optimizer step leaves its state (moments, ...) on the device; every module handed to
devices.place ends there. Optimizer step counters are 0-d CPU tensors by torch's own design
(non-capturable optimizers keep `step` on the CPU) and 0-d tensors are exempt throughout.
`WEEK1_DEVICE_SWEEP=cpu` runs the GPU sweep on the CPU instead (the check's dry run times it).
"""

import contextlib
import dataclasses
import os

import pytest
import torch
from torch.nn.modules.module import register_module_forward_pre_hook
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from week1 import catalog
from week1.runs import Run
from week1_torch.lib import devices, precision

META = torch.device("meta")

# What each lab's run and bench do is shrunk to seconds with the settings its Config has of these.
SMALL = dict(
    steps=3, batch_size=8, n_hidden=16, warmup_steps=1, eval_every=2, eval_batches=2,
    checkpoint_every=0, sample_chars=4, profile_steps=2, micro_batches=2, iters=2, warmup=1,
    sizes="64", bandwidth_mib=1,
)  # fmt: skip
PER_LAB = {
    "tokenizers_compare": dict(vocab_size=4000, chars_per_kind=30_000),
    # one small BPE size and a few LM steps (its defaults train seven tokenizers on 4M chars)
    "vocabulary": dict(
        sizes="300",
        chars_per_kind=30_000,
        added_size=300,
        lm_units="byte,bpe300,word300",
        lm_steps=3,
    ),
    "word2vec": dict(max_words=3000, epochs=1, window=2, reference=False),
    "rnn": dict(seq_len=4, hidden_size=8, n_embd=4, bench_sizes="2x3x8"),
    "elmo": dict(seq_len=4, hidden_size=8, vocab_size=100, probe_rows=16, probe_steps=2),
    "embedding_tradeoffs": dict(
        dims="8", max_words=3000, epochs=1, train_passages=16, eval_passages=16, tying_steps=3
    ),
    "long_range": dict(delays="2", clip_demo_delay=2, hidden_size=4, n_heads=2),
    # one size of each workload, torch only, in this process (not a child process per
    # framework); the LSTMs (the rnn lab's models, placed as the others are) take half a minute
    # of watched operations on meta: the rnn lab's case checks them
    "benchmark": dict(
        quick=True,
        max_points=1,
        frameworks="torch",
        isolate=False,
        dp=False,
        habits=False,
        workloads="mlp,bert,word2vec",
    ),
    # the checks at one width, the bench's smallest sizes and one matmul tile (on a GPU)
    "gpu_kernels": dict(widths="127", bench_sizes="cpu", sweep="64x64x32"),
    # accelerate starts real torchrun processes (their device is the rank's default device)
    "environment": dict(
        parts="hub,lora",
        hub_steps=3,
        train_sentences=16,
        val_sentences=16,
        test_sentences=16,
        max_length=16,
        eval_batch_size=16,
    ),
}
# Labs whose torch side cannot run on a data-less device, and why.
NOT_ON_META = {
    "bpe": "the trainer's merge loop reads the pair counts it computes (data-dependent control)",
    "data_parallel": "torchrun starts real processes; their device is the rank's default device",
    "fsdp": "torchrun starts real processes; their device is the rank's default device",
    "model_parallel": "torchrun starts real processes; their device is the rank's default device",
    "embedding_viz": "t-SNE of the all-ones values read back from meta has identical points (its "
    "small model's training is word2vec's library loop, checked there)",
    "gpu_kernels": "Triton kernels read and write raw device memory, which meta tensors lack (its "
    "parity tests run the kernels on the default device)",
    "serving": "an export is checked against the eager model's numbers, which meta tensors lack "
    "(the training before it is the one loop's, swept with training_loop)",
}


class PlacementWatch(TorchDispatchMode):
    """Records every operation that mixes meta and CPU tensors; answers value reads with ones."""

    def __init__(self):
        super().__init__()
        self.mixed = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        kinds = {t.device.type for t in tensors if t.dim() > 0}  # 0-d CPU scalars may mix
        if "meta" in kinds and "cpu" in kinds:
            self.mixed.append(str(func))
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if source is not None and source.device.type == "meta":
            if func.__name__.split(".")[0] in ("_local_scalar_dense", "is_nonzero", "item"):
                return True if source.dtype == torch.bool else 1
            wanted = kwargs.get("device") or next(
                (a for a in args[1:] if isinstance(a, torch.device)), None
            )
            if func.__name__.startswith(("_to_copy", "to.")) and wanted == torch.device("cpu"):
                dtype = kwargs.get("dtype") or next(
                    (a for a in args[1:] if isinstance(a, torch.dtype)), source.dtype
                )
                return torch.ones(source.shape, dtype=dtype)
        return func(*args, **kwargs)


def small_config(lab_id: str):
    cls = catalog.spec(lab_id).Config
    names = {f.name for f in dataclasses.fields(cls)}
    small = {k: v for k, v in SMALL.items() if k in names}
    return cls(**{**small, **PER_LAB.get(lab_id, {})})


# Labs whose run spends most of a minute outside torch (training tokenizers, loading BERT three
# ways): checked with the slow cases (scripts/gpu_check.sh, `pytest -m slow`), not in CI.
SLOW = {"tokenizers_compare", "pretrained_embeddings"}
LABS = [
    pytest.param(lab.id, marks=[pytest.mark.slow] if lab.id in SLOW else [])
    for lab in catalog.LABS
    if lab.implemented and lab.id not in NOT_ON_META
]


class StateWatch:
    """Global hooks: every module's forward pass and every optimizer step report the non-scalar
    tensors they hold off `device_type` (module parameters and buffers; optimizer state)."""

    def __init__(self, device_type: str):
        self.device_type, self.off = device_type, []

    def _check(self, where: str, named) -> None:
        self.off += [
            f"{where} {name} on {t.device}"
            for name, t in named
            if isinstance(t, torch.Tensor) and t.dim() > 0 and t.device.type != self.device_type
        ]

    def forward(self, module, args) -> None:
        own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        self._check(f"{type(module).__name__} forward:", own)

    def step(self, optimizer, args, kwargs) -> None:
        for state in optimizer.state.values():
            self._check(f"{type(optimizer).__name__} state:", state.items())

    @contextlib.contextmanager
    def hooks(self):
        handles = [register_module_forward_pre_hook(self.forward),
                   register_optimizer_step_post_hook(self.step)]  # fmt: skip
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


@pytest.fixture
def placed(monkeypatch):
    """Every module a lab hands to devices.place (checked after the run: all parameters there)."""
    modules, place = [], devices.place

    def recording_place(module, device=None):
        modules.append(module)
        return place(module, device)

    monkeypatch.setattr(devices, "place", recording_place)
    return modules


@pytest.fixture
def on_meta(monkeypatch, placed):
    monkeypatch.setattr(devices, "default_device", lambda: META)
    # meta has no compiler, no autocast and no .item(): the first two become no-ops, the last
    # answers 1 (numerics are not what this test checks).
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)
    monkeypatch.setattr(precision, "autocast", lambda *args, **kwargs: contextlib.nullcontext())
    monkeypatch.setattr(
        precision, "grad_scaler", lambda *args, **kwargs: torch.amp.GradScaler("cpu", enabled=False)
    )
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: 1 if t.device.type == "meta" else item(t))
    with PlacementWatch() as watch, StateWatch("meta").hooks() as state:
        watch.state = state
        yield watch


def run_and_bench(lab_id: str, root) -> None:
    lab = catalog.framework_module(lab_id, "torch")
    cfg = small_config(lab_id)
    with Run(lab_id, "torch", cfg, root=root, tensorboard=False) as run:
        lab.run(cfg, run)
    if hasattr(lab, "bench"):
        lab.bench(cfg)


@pytest.mark.parametrize("lab_id", LABS)
def test_torch_lab_places_everything_on_the_default_device(lab_id, on_meta, placed, tmp_path):
    run_and_bench(lab_id, tmp_path)
    assert on_meta.mixed == [], f"{lab_id}: CPU tensors met device tensors in {on_meta.mixed[:5]}"
    assert on_meta.state.off == [], f"{lab_id}: off the device: {on_meta.state.off[:5]}"
    assert {p.device for m in placed for p in m.parameters()} <= {META}


# The device the sweep below expects: the GPU, or the CPU in scripts/gpu_check.sh's dry run.
SWEEP_DEVICE = os.environ.get("WEEK1_DEVICE_SWEEP", "cuda")


@pytest.mark.gpu
@pytest.mark.skipif(
    SWEEP_DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"
)
@pytest.mark.parametrize("lab_id", [lab.id for lab in catalog.LABS if lab.implemented])
def test_on_a_gpu_no_torch_lab_keeps_parameters_on_the_cpu(lab_id, placed, tmp_path):
    """scripts/gpu_check.sh runs this: the real device, real numbers, every lab. Batches on
    the CPU fail the lab's own operations there (CUDA kernels refuse CPU operands); the models,
    every forward pass and the optimizers' state are checked by the watches."""
    with StateWatch(SWEEP_DEVICE).hooks() as state:
        run_and_bench(lab_id, tmp_path)
    assert placed or lab_id in (
        "bpe",
        "tokenizers_compare",
        "special_tokens",
        "gpu_basics",
        "gpu_kernels",
    )
    assert {p.device.type for m in placed for p in m.parameters()} <= {SWEEP_DEVICE}
    assert state.off == [], f"{lab_id}: off the device: {state.off[:5]}"


def test_the_watch_catches_a_batch_left_on_the_cpu(on_meta):
    """The check can fail: a model on the device fed a CPU batch is caught."""
    model = devices.place(torch.nn.Embedding(10, 4))
    model(torch.zeros(2, 3, dtype=torch.long))
    assert on_meta.mixed == ["aten.embedding.default"]


def test_the_watches_catch_a_model_and_optimizer_state_left_on_the_cpu(on_meta):
    """A model never placed runs its forward on the CPU, and its optimizer's moments stay there:
    both are reported, though no operation mixed devices."""
    model = torch.nn.Linear(4, 2)  # not devices.place'd
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(3, 4)).sum().backward()
    optimizer.step()
    off = on_meta.state.off
    assert "Linear forward: weight on cpu" in off and "Linear forward: bias on cpu" in off
    assert "AdamW state: exp_avg on cpu" in off and on_meta.mixed == []


def test_the_training_loop_model_and_optimizer_state_end_on_the_device(on_meta):
    from week1 import charlm
    from week1_torch.lib import charlm as lab

    cfg = small_config("training_loop")
    model, _ = lab.train(cfg, charlm.load_data(cfg))
    assert {p.device for p in model.parameters()} == {META}
    assert on_meta.mixed == [] and on_meta.state.off == []
