"""Environment lab, torch side: the Hub folder through PyTorchModelHubMixin, the data_parallel
step written with Accelerate, and LoRA through PEFT on transformers' BertModel, against full
fine-tuning and a frozen-encoder baseline.

Read beside week1_jax/environment.py: the same functions in the same order, plus the
Accelerate part (FRAMEWORK_ONLY). Worker processes (what the Accelerate part launches):
    torchrun --standalone --nproc-per-node=2 -m week1_torch.environment --out=DIR [--key=value]
    accelerate launch --multi_gpu --num_processes=2 -m week1_torch.environment --out=DIR
"""

from __future__ import annotations

import copy
import pathlib
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from labs import environment as spec
from week1 import charlm, export, loop, tolerances
from week1.parallel import worker_args
from week1_torch.lib import (
    bert,
    checkpoint,
    devices,
    hub,
    lora,
    optim,
    parallel,
    parallelize,
    schedules,
)
from week1_torch.lib import charlm as lm
from week1_torch.lib import train as trainer

# No counterpart in JAX: Accelerate is a torch library (JAX shards arrays over a Mesh instead).
# merge_for_serving: PEFT's merge_and_unload is the reference the torch merge is checked against
# (merge_checks, in the LoRA part's summary).
FRAMEWORK_ONLY = (
    "merge_checks",
    "merge_for_serving",
    "accelerate_train",
    "ddp_train",
    "accelerate_vs_ddp",
    "worker",
)


# --- the Hub part ---------------------------------------------------------------------------


def hub_round_trip(cfg: spec.Config, run) -> dict:
    """Train the training_loop char MLP for hub_steps (kept if a resumed run has it), export
    the run as `week1 export` does into run/hub, load the folder back: the same logits."""
    loop_cfg = spec.char_mlp_config(cfg)
    data = charlm.load_data(loop_cfg)
    folder = run.path("char_mlp")
    if not (folder.exists() and checkpoint.latest_step(folder) == loop_cfg.steps):
        lm.train(loop_cfg, data, ctx=loop.Context(checkpoint_dir=folder, show_progress=True))
    step, weights = lm.restore(loop_cfg, folder)
    out = run.path("hub")
    if not (out / "README.md").exists():
        export.export_run(run.dir, out)
    trained = lm.build_model(loop_cfg, data.vocab_size, weights).eval()
    loaded = hub.from_pretrained(out)
    x, _ = charlm.val_batches(data, loop_cfg)[0]
    x = lm.as_tensors(x, x[:, 0])[0]
    with torch.no_grad():
        diff = (trained(x) - loaded(x)).abs().max()
    return {
        "char MLP steps": step,
        "char MLP val loss": lm.validation_loss(loop_cfg, weights),
        "hub round trip max |dlogits|": float(diff),
    }


# --- the LoRA part ----------------------------------------------------------------------------


class Classifier(nn.Module):
    """transformers' BertModel (all-MiniLM-L6-v2, no pooler) and a linear head on its sentence
    embedding (the mean of the last layer over real tokens, L2-normalised)."""

    def __init__(self, encoder, num_classes: int):
        super().__init__()
        self.bert = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)

    def forward(self, ids, type_ids, mask):  # each (B, T) int
        out = self.bert(input_ids=ids, token_type_ids=type_ids, attention_mask=mask)
        return self.head(bert.sentence_embeddings(out.last_hidden_state, mask))  # (B, K)


def _encoder():
    """transformers' BertModel from the packaged folder: eager attention (the written-out
    softmax, as week1_jax's), dropout off (as week1_jax's encoder has none), no pooler."""
    import transformers

    transformers.utils.logging.set_verbosity_error()  # the load report lists the unused pooler
    transformers.utils.logging.disable_progress_bar()
    return transformers.BertModel.from_pretrained(
        str(spec.minilm.model_dir()),
        attn_implementation="eager",
        add_pooling_layer=False,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def build_classifier(
    data: spec.Data, init: dict, method: str, targets=(), rank: int = 8, alpha: float = 16.0
):
    """The pretrained encoder with a head from `init` (spec.adapter_init's PEFT names), on the
    default device; with method "lora", PEFT's LoRA on `targets`, its factors from `init`."""
    from peft import set_peft_model_state_dict

    model = Classifier(_encoder(), data.num_classes)
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in init.items()}
    if method == "lora":
        model = lora.add_lora(model, targets, rank, alpha)
        result = set_peft_model_state_dict(model, tensors)
        if result.unexpected_keys:
            raise ValueError(f"adapter names not in the model: {result.unexpected_keys[:3]}")
    else:
        head = {k.removeprefix(f"{spec.PEFT_PREFIX}head."): v for k, v in tensors.items()}
        model.head.load_state_dict({k: head[k] for k in ("weight", "bias")})
    return devices.place(model)


def loss_fn(model, ids, type_ids, mask, labels):
    logits = model(ids, type_ids, mask)  # (B, K)
    return F.cross_entropy(logits, labels)


def make_optimizer(model, cfg: spec.Config, method: str):
    """From-scratch AdamW (lib/optim) on a warmup-cosine schedule over cfg.steps, on what the
    method trains (requires_grad). Full fine-tuning: the encoder at full_lr, the new head at
    lr (a head learning at an encoder's rate would barely move in a short run)."""
    groups: dict[tuple, list] = {}  # (peak lr, weight decay) -> parameters
    for name, p in model.named_parameters():
        if p.requires_grad:
            head = ".head." in f".{name}"  # PEFT's copy: base_model.model.head.modules_to_save
            peak = cfg.full_lr if method == "full" and not head else cfg.lr
            decay = cfg.weight_decay if p.ndim >= 2 else 0.0  # matrices only
            groups.setdefault((peak, decay), []).append(p)
    optimizer = optim.AdamW([{"params": ps, "weight_decay": wd} for (_, wd), ps in groups.items()])
    for group in optimizer.param_groups:
        # Each lambda returns its group's lr itself, into a tensor (schedules.lambda_lr says why).
        group["lr"] = torch.tensor(1.0, dtype=torch.float64)
    lambdas = [schedules.warmup_cosine(peak, cfg.warmup_steps, cfg.steps) for peak, _ in groups]
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lambdas)


@torch.no_grad()
def predict(model, split: spec.Split, batch_size: int) -> np.ndarray:
    """(N, K) float32 logits of every sentence of `split`."""
    model.eval()
    out = [
        model(*devices.to_device(ids, type_ids, mask, dtype=torch.long)).float().cpu().numpy()
        for ids, type_ids, mask, _ in spec.eval_batches(split, batch_size)
    ]
    model.train()
    return np.concatenate(out)


@torch.no_grad()
def sentence_embeddings(model, split: spec.Split, batch_size: int) -> np.ndarray:
    """(N, C) sentence embeddings of the model's encoder (the frozen baseline's features)."""
    out = []
    for ids, type_ids, mask, _ in spec.eval_batches(split, batch_size):
        ids, type_ids, mask = devices.to_device(ids, type_ids, mask, dtype=torch.long)
        hidden = model.bert(input_ids=ids, token_type_ids=type_ids, attention_mask=mask)
        out.append(bert.sentence_embeddings(hidden.last_hidden_state, mask).float().cpu().numpy())
    return np.concatenate(out)


def train(cfg: spec.Config, data: spec.Data, *, weights=None, methods=spec.METHODS, ctx=loop.BARE):
    """LoRA and full fine-tuning (`methods`) side by side, one step of each per step of the one
    loop, on the same batches, from the same head (and adapters) in `weights` (PEFT's names,
    numpy; None: spec.adapter_init); returns (models, History).

    The History's train loss is the methods' losses summed (non-finite when one is); each
    method's own is in per_step["<method>_loss"], its validation accuracy in
    evals["<method>_val_accuracy"] (spec.method_curves reads one method back). A checkpoint
    holds every method's model, optimizer and schedule.
    """
    init = spec.adapter_init(cfg, data.config, data.num_classes) if weights is None else weights
    targets = (cfg.target_list, cfg.lora_rank, cfg.lora_alpha)
    # In training mode from the first step: from_pretrained returns the encoder in eval mode,
    # and predict() leaves it in training mode, so a compiled step would compile for each.
    models = {m: build_classifier(data, init, m, *targets).train() for m in methods}
    optimizers, schedulers = {}, {}
    for m in models:
        optimizers[m], schedulers[m] = make_optimizer(models[m], cfg, m)
    steps = {m: trainer.make_step(models[m], optimizers[m], loss_fn) for m in models}

    def step(*batch):  # ids, type_ids, mask (B, T), labels (B,)
        losses = {f"{m}_loss": steps[m](*batch) for m in models}
        return {"loss": sum(losses.values()), **losses}

    history = trainer.train(
        nn.ModuleDict(models),
        trainer.Together(optimizers),
        step,
        lambda i: devices.to_device(*spec.train_batch(data, cfg, i), dtype=torch.long),
        loop.Cadence.of(cfg),
        ctx,
        scheduler=trainer.Together(schedulers),
        evaluate=lambda: spec.val_accuracies(models, predict, data, cfg),
        label=f"torch: {' + '.join(methods)}",
    )
    return models, history


def save_adapter(model, folder, cfg: spec.Config) -> None:
    """The trained adapter and head in PEFT's format (PeftModel.save_pretrained):
    adapter_config.json and adapter_model.safetensors."""
    model.save_pretrained(str(folder))


def load_adapter(folder, data: spec.Data):
    """The pretrained encoder with a PEFT-format adapter folder's LoRA factors and head (written
    by PEFT or by week1_jax's save_adapter), on the default device."""
    from peft import PeftModel

    model = Classifier(_encoder(), data.num_classes)
    return devices.place(PeftModel.from_pretrained(model, str(folder)))


def parameter_counts(models: dict) -> tuple[dict, int]:
    """({method: its trainable parameters}, the head's parameters) of the fine-tuned models."""
    counts = {m: spec.count(p for p in models[m].parameters() if p.requires_grad) for m in models}
    return counts, spec.count(models["full"].head.parameters())


def merge_checks(model, data: spec.Data, cfg: spec.Config, logits: np.ndarray) -> dict:
    """The LoRA model merged for serving (merge_for_serving): our merge's distance from PEFT's,
    and the merged model's test logits' from the adapter's (`logits`)."""
    merged, gap = merge_for_serving(model)
    merged_logits = predict(merged, data.test, cfg.eval_batch_size)
    return {
        "LoRA merged by hand vs PEFT, max |dW|": gap,
        "merged model max |dlogits|": float(np.abs(merged_logits - logits).max()),
    }


def merge_for_serving(model) -> tuple[torch.nn.Module, float]:
    """(the plain model with the adapter folded in by lib/lora.py's merge_lora, the largest
    difference of those weights from PEFT's merge_and_unload, the reference); `model` is left
    as it is."""
    merged = copy.deepcopy(model).merge_and_unload()  # PEFT's merge, on a copy
    mine = lora.merge_lora(model)
    reference = merged.state_dict()
    gap = max(float((w - reference[name]).abs().max()) for name, w in mine.items())
    merged.load_state_dict(mine, strict=False)  # serve our merge: the other weights are shared
    return merged, gap


# --- the Accelerate part (torch only) ---------------------------------------------------------


def accelerate_train(cfg: spec.Config, data: charlm.Data) -> list[float]:
    """The data_parallel lab's training step written with Accelerate, in the process group
    torchrun (or `accelerate launch`) started; returns the global loss of each step.

    Each step: this process's rows of the global batch (seeded by step, as everywhere) in
    cfg.accumulate micro-batches. `accumulate(model)` skips DDP's all-reduce on all but the
    last micro-batch (no_sync) and makes `optimizer.step()` and `scheduler.step()` no-ops until
    then; `backward` divides the loss by the accumulation count; `prepare` wrapped the model
    in DDP and, with mixed_precision, its forward in autocast. split_batches=True: a "batch"
    is the global one, so the scheduler steps once per optimizer step (without it, Accelerate
    steps a prepared scheduler once per process per step).
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    loop_cfg = spec.accelerate_config(cfg)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.accumulate,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    model = devices.place(lm.build_model(loop_cfg, data.vocab_size), accelerator.device)
    optimizer, scheduler = lm.make_optimizer(model, loop_cfg)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    rank, world = accelerator.process_index, accelerator.num_processes
    losses = []
    for step in range(1, loop_cfg.steps + 1):
        x, y = charlm.train_batch(data, loop_cfg, step)  # (B, T), (B,) global batch
        total = 0.0
        for xm, ym in spec.micro_batches(x, y, rank, world, cfg.accumulate):
            xm, ym = lm.as_tensors(xm, ym, accelerator.device)  # (B/(N k), T), (B/(N k),)
            with accelerator.accumulate(model):
                loss = lm.loss_fn(model, xm, ym)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            total = total + loss.detach().float()
        mean = accelerator.reduce(total / cfg.accumulate, reduction="mean")  # for logging only
        losses.append(float(mean))
    return losses  # no accelerator.end_training(): it would tear down process_group()'s group


def ddp_train(cfg: spec.Config, data: charlm.Data, device) -> list[float]:
    """The same training written by hand (the data_parallel lab's loop, lib/parallel.train):
    DistributedDataParallel, each process its rows of each global batch, one step per batch;
    returns the global loss of each step."""
    loop_cfg = spec.accelerate_config(cfg)
    model = devices.place(lm.build_model(loop_cfg, data.vocab_size), device)
    model = parallelize.apply_ddp(model, device)
    optimizer, scheduler = lm.make_optimizer(model.module, loop_cfg)
    losses, _ = parallel.train(model, optimizer, scheduler, data, loop_cfg, device)
    return losses


def accelerate_vs_ddp(cfg: spec.Config, run) -> dict:
    """torchrun cfg.processes workers (gloo on a CPU): each trains the hand-written DDP loop,
    then the Accelerate one, from the same init on the same batches; their losses compared."""
    out = run.path("accelerate")
    if not (out / "accelerate" / "result.npz").exists():
        parallel.torchrun(
            "week1_torch.environment",
            cfg.processes,
            worker_args(cfg, out),
            timeout_s=180 + 2 * cfg.accel_steps,
            log_path=run.path("torchrun.log"),
        )
    ddp, _, _ = parallel.load_result(out / "ddp")
    accelerated, _, _ = parallel.load_result(out / "accelerate")
    tier = tolerances.TRAJECTORY if cfg.mixed_precision == "no" else tolerances.BF16
    diff = tolerances.measure(accelerated, ddp, tier, "Accelerate vs DDP", "losses")
    return {
        "processes": cfg.processes,
        "DDP final loss": ddp[-1],
        "Accelerate final loss": accelerated[-1],
        "Accelerate vs DDP max rel": diff.max_rel,
        f"Accelerate vs DDP within {tier.name}": int(diff.ok),
    }


def worker(cfg: spec.Config, out_dir, mode: str = "train") -> None:
    """One process started by torchrun or `accelerate launch`: join the group, train both
    ways; rank 0 writes out_dir/ddp/result.npz and out_dir/accelerate/result.npz."""
    with parallel.process_group() as device:
        data = charlm.load_data(spec.accelerate_config(cfg))
        ddp = ddp_train(cfg, data, device)
        accelerated = accelerate_train(cfg, data)
        if dist.get_rank() == 0:
            parallel.save_result(pathlib.Path(out_dir) / "ddp", ddp)
            parallel.save_result(pathlib.Path(out_dir) / "accelerate", accelerated)


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run environment --framework torch`: the parts cfg.parts names, in turn."""
    summary = {}
    if "hub" in cfg.part_list:
        summary |= hub_round_trip(cfg, run)
    if "accelerate" in cfg.part_list:
        summary |= accelerate_vs_ddp(cfg, run)
    if "lora" in cfg.part_list:
        summary |= spec.lora_part(
            cfg, run, "torch", sys.modules[__name__], compile, extra=merge_checks
        )
    return summary


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under torch's names."""
    data = spec.load_data(cfg)
    return spec.start_weights(cfg, data, case)


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare environment`: fine-tune by `case` ("lora" or "full") from `weights`
    (spec.start_weights' PEFT names, numpy); returns its Curves with the validation accuracy."""
    data = spec.load_data(cfg)
    _, history = train(cfg, data, weights=weights, methods=(case,), ctx=ctx)
    return spec.method_curves(history, case)


if __name__ == "__main__":
    parallel.worker_main(worker, spec.Config, sys.argv[1:])
