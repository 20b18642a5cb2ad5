"""environment: a Hub folder exported from one framework's run gives the same logits in the
other; PEFT's LoRA (torch, on transformers' BertModel) and week1's LoRA written out in Flax
nnx (on the from-scratch encoder) have the same gradients and read each other's adapter
files; the data_parallel step written with Accelerate has the hand-written DDP loop's losses.

- Hub: a `week1 run training_loop` run in each framework (a few steps), `week1 export`, the
  folder loaded in the other framework: logits F32. The two frameworks write the same bytes
  for the same weights (EXACT). The card carries a parity document's rows.
- LoRA: from the same adapter initialisation (B drawn non-zero, so A's gradient is not
  zero), loss and every adapter and head gradient at F32 element by element (the adapters'
  gradients are small: atol carries them), and at F64 with both sides in float64 (the maths
  pinned). With B = 0 (PEFT's init) the adapted model is the pretrained one, exactly.
  A PEFT adapter trained a few steps loads into Flax with the same logits (F32) and
  predictions (EXACT), and an adapter Flax writes loads into PEFT.
- Accelerate: 2 gloo processes under torchrun; `accumulate` micro-batches, one step each;
  losses against the hand-written DDP loop in the same processes: step 1 F32, all TRAJECTORY.
"""

import copy
import dataclasses
import importlib.util
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from labs import environment as spec
from week1 import cli, convert, export, hub
from week1.commands import parity
from week1.config import UsageError, from_dict
from week1.data import labelled, minilm
from week1.runs import Run
from week1.tolerances import EXACT, F32, F64, TRAJECTORY, assert_close, measure
from week1_jax import environment as jenv
from week1_jax.lib import hub as jhub
from week1_jax.lib import precision as jprec
from week1_jax.lib.models import dotted
from week1_torch import environment as tenv
from week1_torch.lib import hub as thub
from week1_torch.lib import lora, parallel
from week1_torch.lib import train as trainer
from week1_torch.lib.models import get_weights

CFG = spec.Config(max_length=16)
TEXTS = (
    "A gripping, beautifully acted film.",
    "Dull, and far too long for what little it has to say.",
    "I laughed all the way through.",
    "Nothing here works.",
)
LABELS = (1, 0, 1, 0)


# --- LoRA ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """A few sentences of 16 tokens, with the packaged encoder."""
    if importlib.util.find_spec(minilm.PACKAGE) is None:
        pytest.skip(f"{minilm.PIP_NAME} is not installed")
    split = spec.encode_split(minilm.load_tokenizer(16), TEXTS, LABELS, 16)
    return spec.Data(
        minilm.load_config(), minilm.load_weights(), split, split, split, labelled.POLARITY_LABELS
    )


def nonzero_init(data) -> dict:
    """spec.adapter_init with B drawn too: every adapter factor gets a gradient."""
    init = spec.adapter_init(CFG, data.config, data.num_classes)
    rng = np.random.default_rng(1)
    return {
        k: rng.normal(0.0, 0.05, v.shape).astype(np.float32) if "lora_B" in k else v
        for k, v in init.items()
    }


def lora_models(data, init):
    args = (CFG.target_list, CFG.lora_rank, CFG.lora_alpha)
    return (
        jenv.build_classifier(data, init, "lora", *args),
        tenv.build_classifier(data, init, "lora", *args),
    )


def torch_loss_and_grads(model, batch):
    """Loss and gradients by the adapter file's names (PEFT's saved names)."""
    loss = tenv.loss_fn(model, *[torch.as_tensor(a).long() for a in batch])
    loss.backward()
    grads = {
        n.replace(".default", "").replace("head.modules_to_save", "head"): p.grad.cpu().numpy()
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    return float(loss.detach()), grads


def jax_loss_and_grads(model, batch):
    grad_fn = nnx.value_and_grad(jenv.loss_fn, argnums=nnx.DiffState(0, jenv.TRAINABLE["lora"]))
    loss, grads = grad_fn(model, *[jnp.asarray(a) for a in batch])
    flat = {dotted(path): np.asarray(var[...]) for path, var in nnx.to_flat_state(grads)}
    return float(loss), convert.flax_to_torch(flat, spec.lora_map(CFG.target_list))


def test_lora_starts_as_the_pretrained_model(tiny):
    """PEFT's initialisation (B = 0): the adapted classifier's logits are the plain one's."""
    init = spec.adapter_init(CFG, tiny.config, tiny.num_classes)
    assert tiny.train.mask.sum(axis=1).min() < 16  # padding is exercised
    for name, lab in (("jax", jenv), ("torch", tenv)):
        lora = lab.build_classifier(tiny, init, "lora", CFG.target_list, 8, 16.0)
        plain = lab.build_classifier(tiny, init, "full")
        logits = [lab.predict(m, tiny.train, 8) for m in (lora, plain)]
        assert_close(f"lora at init ({name})", "logits vs no adapter", *logits, EXACT)


def test_lora_gradients_match_at_f32(tiny):
    jax_model, torch_model = lora_models(tiny, nonzero_init(tiny))
    batch = tiny.train.rows(np.arange(len(TEXTS)))
    jax_loss, jax_grads = jax_loss_and_grads(jax_model, batch)
    torch_loss, torch_grads = torch_loss_and_grads(torch_model, batch)
    assert len(torch_grads) == 2 * len(CFG.target_list) * spec.N_LAYERS + 2
    assert_close("lora f32 jax vs peft", "loss", jax_loss, torch_loss, F32)
    for name in sorted(torch_grads):
        assert np.abs(torch_grads[name]).max() > 0, f"{name}: a zero gradient compares nothing"
        assert_close("lora f32 jax vs peft", name, jax_grads[name], torch_grads[name], F32)


def test_merged_lora_equals_peft_merge_and_unload(tiny):
    """lib/lora.py's merge_lora against PEFT's merge_and_unload (B drawn non-zero, so the merge
    moves every adapted weight), and the merged model's logits against the adapter model's."""
    _, model = lora_models(tiny, nonzero_init(tiny))
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    mine = lora.merge_lora(model)
    assert len(mine) == len(CFG.target_list) * spec.N_LAYERS and set(mine) <= set(reference)
    for name, weight in mine.items():
        assert_close(
            "lora merge vs peft", name, weight.cpu().numpy(), reference[name].cpu().numpy(), F32
        )
    merged, gap = tenv.merge_for_serving(model)  # the plain model with lora.merge_lora's weights
    assert gap <= F32.atol
    logits = [tenv.predict(m, tiny.train, 8) for m in (merged, model)]
    assert_close("lora merge", "merged logits vs adapter logits", *logits, F32)


def test_lora_gradients_match_at_f64(tiny):
    """Both sides in float64: the same maths, to float64 rounding."""
    init = nonzero_init(tiny)
    torch_model = tenv.build_classifier(
        tiny, init, "lora", CFG.target_list, CFG.lora_rank, CFG.lora_alpha
    ).double()
    batch = tiny.train.rows(np.arange(len(TEXTS)))
    torch_loss, torch_grads = torch_loss_and_grads(torch_model, batch)
    with jax.enable_x64(True):
        jax_model = jenv.build_classifier(
            tiny, init, "lora", CFG.target_list, CFG.lora_rank, CFG.lora_alpha
        )
        jprec.apply_policy(jax_model, jprec.FP64)
        jax_loss, jax_grads = jax_loss_and_grads(jax_model, batch)
    assert_close("lora f64 jax vs peft", "loss", jax_loss, torch_loss, F64)
    for name in sorted(torch_grads):
        assert jax_grads[name].dtype == np.float64
        assert_close("lora f64 jax vs peft", name, jax_grads[name], torch_grads[name], F64)


def test_trainable_parameter_counts(tiny):
    init = spec.adapter_init(CFG, tiny.config, tiny.num_classes)
    jax_model, torch_model = lora_models(tiny, init)
    C, K, r = tiny.config.hidden_size, tiny.num_classes, CFG.lora_rank
    expected = spec.N_LAYERS * len(CFG.target_list) * r * (C + C) + C * K + K
    jax_count = spec.count(jax.tree.leaves(nnx.state(jax_model, jenv.TRAINABLE["lora"])))
    torch_count = spec.count(p for p in torch_model.parameters() if p.requires_grad)
    assert jax_count == torch_count == expected


def test_a_peft_adapter_loads_into_flax_with_the_same_predictions(tiny, tmp_path):
    """Train PEFT's adapter three steps, save it (PEFT's format), load it into the Flax model."""
    cfg = dataclasses.replace(CFG, steps=3, warmup_steps=1, lr=1e-2)
    model = tenv.build_classifier(
        tiny, spec.adapter_init(cfg, tiny.config, 2), "lora", CFG.target_list, 8, 16.0
    )
    optimizer, scheduler = tenv.make_optimizer(model, cfg, "lora")
    batch = [torch.as_tensor(a).long() for a in tiny.train.rows(np.arange(len(TEXTS)))]
    step = trainer.make_step(model, optimizer, tenv.loss_fn)
    for _ in range(cfg.steps):
        step(*batch)
        scheduler.step()
    tenv.save_adapter(model, tmp_path, cfg)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".md") == [
        spec.ADAPTER_CONFIG,
        spec.ADAPTER_WEIGHTS,
    ]
    saved = json.loads((tmp_path / spec.ADAPTER_CONFIG).read_text())
    assert (saved["peft_type"], saved["r"], saved["modules_to_save"]) == ("LORA", 8, ["head"])
    trained_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert all(p.abs().max() > 0 for p in trained_b)  # trained: B left zero
    torch_logits = tenv.predict(model, tiny.train, 8)
    jax_logits = jenv.predict(jenv.load_adapter(tmp_path, tiny), tiny.train, 8)
    assert_close("peft adapter in flax", "logits", jax_logits, torch_logits, F32)
    assert_close(
        "peft adapter in flax", "predictions", jax_logits.argmax(-1), torch_logits.argmax(-1), EXACT
    )


def test_an_adapter_flax_writes_loads_into_peft(tiny, tmp_path):
    init = nonzero_init(tiny)
    jax_model, _ = lora_models(tiny, init)
    jenv.save_adapter(jax_model, tmp_path, CFG)
    torch_model = tenv.load_adapter(tmp_path, tiny)
    torch_logits = tenv.predict(torch_model, tiny.train, 8)
    jax_logits = jenv.predict(jax_model, tiny.train, 8)
    assert_close("flax adapter in peft", "logits", torch_logits, jax_logits, F32)


def test_an_adapter_week1_does_not_implement_is_refused(tmp_path):
    config = {**spec.adapter_config(CFG), "use_dora": True}
    (tmp_path / spec.ADAPTER_CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="use_dora"):
        spec.read_adapter_config(tmp_path)


# --- Hub --------------------------------------------------------------------------------------

TINY_LOOP = [
    "--steps=30", "--n_hidden=32", "--warmup_steps=5", "--eval_every=30", "--eval_batches=2",
    "--checkpoint_every=30", "--sample_chars=8",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """A `week1 run training_loop` folder per framework (30 steps, a checkpoint at the end)."""
    runs = {}
    for framework in ("jax", "torch"):
        root = tmp_path_factory.mktemp(f"runs-{framework}")
        argv = ["run", "training_loop", "--framework", framework, f"--runs-dir={root}"]
        assert cli.main([*argv, *TINY_LOOP]) == 0
        runs[framework] = next(root.iterdir())
    return runs


def logits_from_folder(folder, framework: str, x: np.ndarray) -> np.ndarray:
    if framework == "jax":
        return np.asarray(jhub.from_pretrained(folder)(jnp.asarray(x)))
    with torch.no_grad():
        return thub.from_pretrained(folder)(torch.as_tensor(x).long()).numpy()


@pytest.fixture(scope="module")
def windows(trained_runs):
    """A validation batch of character windows (B, T)."""
    from week1 import charlm

    cfg = from_dict(charlm.Config, export.read_run(trained_runs["jax"]).config)
    return charlm.val_batches(charlm.load_data(cfg), cfg)[0][0]


@pytest.mark.parametrize(("trained", "loaded"), [("jax", "torch"), ("torch", "jax")])
def test_an_exported_run_gives_the_same_logits_in_the_other_framework(
    trained, loaded, trained_runs, windows, tmp_path
):
    folder = tmp_path / "hub"
    assert cli.main(["export", str(trained_runs[trained]), str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == sorted([hub.WEIGHTS, hub.CONFIG, hub.CARD])
    own = logits_from_folder(folder, trained, windows)
    other = logits_from_folder(folder, loaded, windows)
    assert_close(f"hub {trained} export loaded in {loaded}", "logits", other, own, F32)
    card = (folder / hub.CARD).read_text()
    assert f"week1 run training_loop --framework {trained} --steps=30" in card
    assert "run summary: final_val_loss" in card and "library_name: week1" in card
    assert "validation loss (nats/char, at export)" in card
    config = json.loads((folder / hub.CONFIG).read_text())
    assert config["week1"]["framework"] == trained and config["week1"]["step"] == 30
    assert len(config["week1"]["vocab"]) == config["vocab_size"]


def test_both_frameworks_write_the_same_bytes(trained_runs, tmp_path):
    """The JAX run's weights, exported from JAX, loaded in torch and saved through the mixin:
    byte for byte the same files."""
    from_jax = tmp_path / "jax"
    export.export_run(trained_runs["jax"], from_jax)
    model = thub.from_pretrained(from_jax)
    config = json.loads((from_jax / hub.CONFIG).read_text())
    thub.save_pretrained(get_weights(model), tmp_path / "torch", config)
    for name in (hub.WEIGHTS, hub.CONFIG):
        a, b = (from_jax / name).read_bytes(), (tmp_path / "torch" / name).read_bytes()
        assert_close(
            "hub files", name, np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8), EXACT
        )


def test_the_card_carries_the_labs_parity_numbers(trained_runs, windows, tmp_path):
    """A parity document with this lab's comparison (measured here) goes into the card."""
    folder = tmp_path / "hub"
    export.export_run(trained_runs["torch"], folder)
    diff = measure(
        logits_from_folder(folder, "jax", windows),
        logits_from_folder(folder, "torch", windows),
        F32,
        "hub torch export in jax",
        "logits",
    )
    record = {**dataclasses.asdict(diff), "lab": "training_loop", "test": "t"}
    doc = parity.document([record], {}, "week1 parity training_loop", "2025-01-01", 0)
    (tmp_path / "parity.json").write_text(json.dumps(doc))
    out = tmp_path / "with-parity"
    argv = ["export", str(trained_runs["torch"]), str(out), f"--parity={tmp_path / 'parity.json'}"]
    assert cli.main(argv) == 0
    card = (out / hub.CARD).read_text()
    assert "hub torch export in jax" in card and f"| {parity.fmt(diff.max_abs)} |" in card


def test_export_refuses_bad_input_in_one_line(trained_runs, tmp_path, capsys):
    not_a_run = tmp_path / "nothing"
    not_a_run.mkdir()
    other_lab = tmp_path / "bpe-run"
    other_lab.mkdir()
    (other_lab / "config.json").write_text(
        json.dumps({"lab": "bpe", "framework": "jax", "config": {}})
    )
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    cases = {
        "is not a run folder": ["export", str(not_a_run), str(tmp_path / "a")],
        "do not export yet": ["export", str(other_lab), str(tmp_path / "b")],
        "is not an empty folder": ["export", str(trained_runs["jax"]), str(full)],
        "no such file": [
            "export", str(trained_runs["jax"]), str(tmp_path / "c"), "--parity=missing.json",
        ],
    }  # fmt: skip
    for message, argv in cases.items():
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_push_refuses_without_a_token_or_a_network(trained_runs, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "hub"
    export.export_run(trained_runs["jax"], folder)
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert cli.main(["push", str(folder), "--repo-id", "someone/char-mlp"]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")  # offline here; refused online too
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # no one
    assert cli.main(["push", str(folder), "--repo-id", "someone/char-mlp"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot reach the Hub" in err and len(err.splitlines()) == 1


def test_push_creates_the_repo_and_uploads_the_folder(trained_runs, tmp_path, monkeypatch):
    """Everything up to the network: the calls HfApi would send, recorded."""
    import huggingface_hub

    folder = tmp_path / "hub"
    export.export_run(trained_runs["jax"], folder)
    calls = []

    class Commit:
        commit_url = "https://huggingface.co/someone/char-mlp/commit/0"

    monkeypatch.setattr(huggingface_hub.HfApi, "whoami", lambda self: {"name": "someone"})
    monkeypatch.setattr(
        huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: calls.append(("create", a, k))
    )
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "upload_folder",
        lambda self, **k: calls.append(("upload", (), k)) or Commit(),
    )
    url = export.push(folder, "someone/char-mlp", token="hf_not_a_real_token")
    assert url == Commit.commit_url
    assert calls[0] == (
        "create",
        ("someone/char-mlp",),
        {"private": False, "exist_ok": True, "repo_type": "model"},
    )
    assert (
        calls[1][2]["folder_path"] == str(folder) and calls[1][2]["repo_id"] == "someone/char-mlp"
    )


def test_push_refuses_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(UsageError, match="not a model folder"):
        export.push(tmp_path, "someone/x", token="hf_x")


# --- Accelerate -------------------------------------------------------------------------------

ACCEL = spec.Config(parts="accelerate", accel_steps=6, accel_batch_size=16, accumulate=2)


def test_accelerate_equals_the_hand_written_ddp_loop(tmp_path):
    with Run("environment", "torch", ACCEL, root=tmp_path, tensorboard=False) as run:
        summary = tenv.accelerate_vs_ddp(ACCEL, run)
    ddp, _, _ = parallel.load_result(run.path("accelerate") / "ddp")
    accelerated, _, _ = parallel.load_result(run.path("accelerate") / "accelerate")
    assert len(ddp) == len(accelerated) == ACCEL.accel_steps
    assert_close("accelerate x2 vs DDP x2", "loss step 1", accelerated[0], ddp[0], F32)
    assert_close("accelerate x2 vs DDP x2", "6-step losses", accelerated, ddp, TRAJECTORY)
    assert summary["processes"] == 2 and summary["Accelerate vs DDP within TRAJECTORY"] == 1


@pytest.mark.slow
def test_accelerate_launch_starts_the_same_workers(tmp_path):
    """`accelerate launch --multi_gpu` is torchrun underneath: on a CPU the workers' Accelerator
    (cpu=True) joins gloo; the losses are the torchrun run's."""
    from week1.parallel import worker_args

    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=2",
        "--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no", "-m",
        "week1_torch.environment", *worker_args(ACCEL, tmp_path / "launch"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with Run("environment", "torch", ACCEL, root=tmp_path / "runs", tensorboard=False) as run:
        tenv.accelerate_vs_ddp(ACCEL, run)
    for name in ("ddp", "accelerate"):
        launched, _, _ = parallel.load_result(tmp_path / "launch" / name)
        torchrun, _, _ = parallel.load_result(run.path("accelerate") / name)
        assert_close("accelerate launch vs torchrun", name, launched, torchrun, TRAJECTORY)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_the_lab_runs_from_the_command_line(framework, tmp_path):
    """`week1 run environment` with small settings: every part, the table and the adapter."""
    argv = [
        sys.executable, "-m", "week1", "run", "environment", "--framework", framework,
        f"--runs-dir={tmp_path}", "--hub_steps=20", "--accel_steps=4", "--accel_batch_size=16",
        "--steps=4", "--warmup_steps=1", "--batch_size=8", "--train_sentences=64",
        "--val_sentences=32", "--test_sentences=32", "--max_length=16", "--eval_every=2",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = next(pathlib.Path(tmp_path).iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["hub round trip max |dlogits|"] == 0.0
    assert summary["adapter reload max |dlogits|"] <= F32.atol
    assert (run_dir / "results.md").exists() and (run_dir / spec.ADAPTER_DIR).is_dir()
    assert (run_dir / "hub" / hub.CARD).exists()


TINY_LORA = [
    "--parts=lora", "--steps=6", "--warmup_steps=1", "--batch_size=8", "--train_sentences=48",
    "--val_sentences=16", "--test_sentences=16", "--max_length=16", "--eval_every=3",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_an_interrupted_fine_tuning_resumes_to_the_uninterrupted_losses(framework, tmp_path):
    """Ctrl-C in the LoRA + full loop: a checkpoint of both methods at that step; `week1
    resume` continues to the same losses as a run never stopped (EXACT)."""
    import os
    import signal
    import time

    from week1.runs import read_metrics

    def week1_args(root):
        return [sys.executable, "-m", "week1", "run", "environment", "--framework", framework,
                f"--runs-dir={root}", *TINY_LORA]  # fmt: skip

    whole = subprocess.run(week1_args(tmp_path / "whole"), capture_output=True, timeout=1200)
    assert whole.returncode == 0, whole.stderr[-2000:]
    proc = subprocess.Popen(week1_args(tmp_path / "cut"), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 1200
    while not list((tmp_path / "cut").glob("*/metrics.jsonl")) or sum(
        1 for line in next((tmp_path / "cut").glob("*/metrics.jsonl")).read_text().splitlines()
        if "lora_loss" in line
    ) < 2:  # fmt: skip
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 130, stderr[-2000:]
    run_dir = next((tmp_path / "cut").iterdir())
    resumed = subprocess.run(
        [sys.executable, "-m", "week1", "resume", str(run_dir)],
        capture_output=True, text=True, timeout=1200, env=dict(os.environ),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    want = read_metrics(next((tmp_path / "whole").iterdir()))
    got = read_metrics(run_dir)
    losses = [{k: v for k, v in row.items() if "loss" in k or k == "step"} for row in want]
    assert [{k: v for k, v in r.items() if "loss" in k or k == "step"} for r in got] == losses
