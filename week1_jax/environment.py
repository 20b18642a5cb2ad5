"""Environment lab, JAX side: the Hub folder of a Flax model, and LoRA written out in Flax nnx
on the from-scratch MiniLM encoder, against full fine-tuning and a frozen-encoder baseline.

Read beside week1_torch/environment.py: the same functions in the same order (torch adds
the Accelerate part, which has no JAX counterpart: the data_parallel lab's jit +
NamedSharding is what JAX has instead of a wrapper).
"""

from __future__ import annotations

import functools
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from safetensors.numpy import load_file, save_file

from labs import environment as spec
from week1 import charlm, convert, export, loop
from week1_jax.lib import bert, checkpoint, devices, hub, lora, optim, schedules
from week1_jax.lib import charlm as lm
from week1_jax.lib import train as trainer
from week1_jax.lib.models import dotted

# No counterpart in torch: there requires_grad picks what a method trains, and lib/train's
# generic step is the method's; here the gradient is taken of the trainable part (DiffState).
FRAMEWORK_ONLY = ("make_train_step",)

# What each method trains: LoRA its adapters and the head; full fine-tuning every parameter
# but the pooler (the head reads mean-pooled tokens, not the pooler's [CLS] summary).
TRAINABLE = {
    "lora": nnx.Any(lora.LoRAParam, nnx.PathContains("head")),
    "full": nnx.All(nnx.Param, nnx.Not(nnx.PathContains("pooler"))),
}


# --- the Hub part ---------------------------------------------------------------------------


def hub_round_trip(cfg: spec.Config, run) -> dict:
    """Train the training_loop char MLP for hub_steps (kept if a resumed run has it), export
    the run as `week1 export` does into run/hub, load the folder back: the same logits."""
    loop_cfg = spec.char_mlp_config(cfg)
    data = charlm.load_data(loop_cfg)
    folder = run.path("char_mlp")
    done = folder.exists() and checkpoint.latest_step(checkpoint.manager(folder)) == loop_cfg.steps
    if not done:
        _, history = lm.train(
            loop_cfg, data, ctx=loop.Context(checkpoint_dir=folder, show_progress=True)
        )
    step, weights = lm.restore(loop_cfg, folder)
    out = run.path("hub")
    if not (out / "README.md").exists():
        export.export_run(run.dir, out)
    trained = lm.build_model(loop_cfg, data.vocab_size, weights)
    trained.eval()
    loaded = hub.from_pretrained(out)
    x, _ = charlm.val_batches(data, loop_cfg)[0]
    diff = np.abs(np.asarray(trained(jnp.asarray(x))) - np.asarray(loaded(jnp.asarray(x))))
    return {
        "char MLP steps": step,
        "char MLP val loss": lm.validation_loss(loop_cfg, weights),
        "hub round trip max |dlogits|": float(diff.max()),
    }


# --- the LoRA part ----------------------------------------------------------------------------


class Classifier(nnx.Module):
    """MiniLM (week1_jax.lib.bert) and a linear head on its sentence embedding (the mean of the
    last layer over real tokens, L2-normalised: what all-MiniLM-L6-v2 was trained to give)."""

    def __init__(self, encoder: bert.BertModel, num_classes: int, *, rngs: nnx.Rngs):
        self.bert = encoder
        self.head = nnx.Linear(encoder.config.hidden_size, num_classes, rngs=rngs)

    def __call__(self, ids, type_ids, mask):  # each (B, T) int
        hidden, _ = self.bert(ids, type_ids, mask)  # the pooler is computed, then dropped by XLA
        return self.head(bert.sentence_embeddings(hidden[-1], mask))  # (B, K)


def _assign(model: nnx.Module, weights: dict) -> None:
    """Write `weights` ({Flax path: array}) into the model's variables of those paths."""
    flat = {dotted(path): var for path, var in nnx.to_flat_state(nnx.state(model))}
    unknown = sorted(set(weights) - set(flat))
    if unknown:
        raise ValueError(f"not in the model: {unknown[:3]}")
    for name, value in weights.items():
        if value.shape != flat[name][...].shape:
            raise ValueError(f"{name}: shape {value.shape} != {flat[name][...].shape}")
        flat[name][...] = jnp.asarray(value, flat[name][...].dtype)


def build_classifier(
    data: spec.Data, init: dict, method: str, targets=(), rank: int = 8, alpha: float = 16.0
) -> Classifier:
    """The pretrained encoder with a head from `init` (spec.adapter_init's PEFT names); with
    method "lora", LoRA on `targets`, its factors from `init` too."""
    encoder = bert.from_weights(data.config, convert.torch_to_flax(data.weights, convert.MINILM))
    model = Classifier(encoder, data.num_classes, rngs=nnx.Rngs(0))
    if method == "lora":
        lora.add_lora(encoder, targets, rank, alpha, rngs=nnx.Rngs(0))
    table = spec.lora_map(targets if method == "lora" else ())
    _assign(model, convert.torch_to_flax({name: init[name] for name, _, _ in table}, table))
    return model


def loss_fn(model: Classifier, ids, type_ids, mask, labels):
    logits = model(ids, type_ids, mask)  # (B, K)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_optimizer(model: Classifier, cfg: spec.Config, method: str) -> nnx.Optimizer:
    """From-scratch AdamW (lib/optim) on a warmup-cosine schedule over cfg.steps, on what the
    method trains. Full fine-tuning: the encoder at full_lr, the new head at lr (a head
    learning at an encoder's rate would barely move in a short run)."""

    def adamw(peak):
        schedule = schedules.warmup_cosine(peak, cfg.warmup_steps, cfg.steps, 0.0)
        return optim.adamw(schedule, weight_decay=cfg.weight_decay, mask=optim.decay_mask)

    if method == "lora":
        return nnx.Optimizer(model, adamw(cfg.lr), wrt=TRAINABLE["lora"])
    tx = optax.multi_transform({"encoder": adamw(cfg.full_lr), "head": adamw(cfg.lr)}, _parts)
    return nnx.Optimizer(model, tx, wrt=TRAINABLE["full"])


def _parts(params):
    """optax.multi_transform's labels: "head" on the head's parameters, "encoder" elsewhere."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "head" if dotted(path).startswith("head.") else "encoder", params
    )


def make_train_step(method: str):
    """The step of `method`: (model, optimizer, key, ids, type_ids, mask, labels) -> loss, the
    gradient of what the method trains, one AdamW update (lib/train jits it)."""
    trainable = TRAINABLE[method]

    def train_step(model, optimizer, key, ids, type_ids, mask, labels):
        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, trainable))
        loss, grads = grad_fn(model, ids, type_ids, mask, labels)
        optimizer.update(model, grads)
        return loss

    return train_step


# The graphdef is a static (hashable) argument: one compilation per model structure and batch
# shape, reused by every evaluation (a function jitted inside predict would recompile per call).
@functools.partial(jax.jit, static_argnums=0)
def _logits(graphdef, state, ids, type_ids, mask):
    return nnx.merge(graphdef, state)(ids, type_ids, mask)


def predict(model: Classifier, split: spec.Split, batch_size: int) -> np.ndarray:
    """(N, K) float32 logits of every sentence of `split`, jitted on the split state."""
    graphdef, state = nnx.split(model)
    out = [
        np.asarray(_logits(graphdef, state, *devices.to_device(ids, type_ids, mask)))
        for ids, type_ids, mask, _ in spec.eval_batches(split, batch_size)
    ]
    return np.concatenate(out)


@functools.partial(jax.jit, static_argnums=0)
def _embed(graphdef, state, ids, type_ids, mask):
    hidden, _ = nnx.merge(graphdef, state)(ids, type_ids, mask)
    return bert.sentence_embeddings(hidden[-1], mask)


def sentence_embeddings(model: Classifier, split: spec.Split, batch_size: int) -> np.ndarray:
    """(N, C) sentence embeddings of the model's encoder (the frozen baseline's features)."""
    graphdef, state = nnx.split(model.bert)
    out = [
        np.asarray(_embed(graphdef, state, *devices.to_device(ids, type_ids, mask)))
        for ids, type_ids, mask, _ in spec.eval_batches(split, batch_size)
    ]
    return np.concatenate(out)


def train(cfg: spec.Config, data: spec.Data, *, weights=None, methods=spec.METHODS, ctx=loop.BARE):
    """LoRA and full fine-tuning (`methods`) side by side, one step of each per step of the one
    loop (one jitted function), on the same batches, from the same head (and adapters) in
    `weights` (PEFT's names, numpy; None: spec.adapter_init); returns (models, History).

    The History's train loss is the methods' losses summed (non-finite when one is); each
    method's own is in per_step["<method>_loss"], its validation accuracy in
    evals["<method>_val_accuracy"] (spec.method_curves reads one method back). A checkpoint
    holds every method's model and optimizer state.
    """
    init = spec.adapter_init(cfg, data.config, data.num_classes) if weights is None else weights
    targets = (cfg.target_list, cfg.lora_rank, cfg.lora_alpha)
    models = {m: build_classifier(data, init, m, *targets) for m in methods}
    optimizers = {m: make_optimizer(models[m], cfg, m) for m in models}
    steps = {m: make_train_step(m) for m in models}

    def step(models, optimizers, key, *batch):  # ids, type_ids, mask (B, T), labels (B,)
        losses = {f"{m}_loss": steps[m](models[m], optimizers[m], key, *batch) for m in steps}
        return {"loss": sum(losses.values()), **losses}

    history = trainer.train(
        nnx.Dict(models),
        nnx.Dict(optimizers),
        step,
        lambda i: devices.to_device(*spec.train_batch(data, cfg, i)),
        loop.Cadence.of(cfg),
        ctx,
        seed=cfg.seed,
        evaluate=lambda: spec.val_accuracies(models, predict, data, cfg),
        label=f"jax: {' + '.join(methods)}",
    )
    return models, history


def save_adapter(model: Classifier, folder, cfg: spec.Config) -> None:
    """The trained adapter and head in PEFT's format: adapter_config.json and
    adapter_model.safetensors under PEFT's names (what PeftModel.from_pretrained reads)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {
        dotted(path): np.asarray(var[...])
        for path, var in nnx.to_flat_state(nnx.state(model, TRAINABLE["lora"]))
    }
    named = convert.flax_to_torch(weights, spec.lora_map(cfg.target_list))
    save_file({k: np.ascontiguousarray(v) for k, v in named.items()}, folder / spec.ADAPTER_WEIGHTS)
    (folder / spec.ADAPTER_CONFIG).write_text(json.dumps(spec.adapter_config(cfg), indent=2))


def load_adapter(folder, data: spec.Data) -> Classifier:
    """The pretrained encoder with a PEFT-format adapter folder's LoRA factors and head (written
    by PEFT or by save_adapter)."""
    folder = pathlib.Path(folder)
    adapter = spec.read_adapter_config(folder)
    weights = load_file(folder / spec.ADAPTER_WEIGHTS)
    return build_classifier(
        data, weights, "lora", adapter["targets"], adapter["r"], adapter["lora_alpha"]
    )


def parameter_counts(models: dict) -> tuple[dict, int]:
    """({method: its trainable parameters}, the head's parameters) of the fine-tuned models."""
    counts = {m: spec.count(jax.tree.leaves(nnx.state(models[m], TRAINABLE[m]))) for m in models}
    return counts, spec.count(jax.tree.leaves(nnx.state(models["full"].head, nnx.Param)))


def run(cfg: spec.Config, run) -> dict:
    """`week1 run environment --framework jax`: the parts cfg.parts names, in turn."""
    summary = {}
    if "hub" in cfg.part_list:
        summary |= hub_round_trip(cfg, run)
    if "lora" in cfg.part_list:
        summary |= spec.lora_part(cfg, run, "jax", sys.modules[__name__])
    if "accelerate" in cfg.part_list:
        summary["accelerate"] = (
            "Accelerate is a torch library: --framework torch runs it. JAX's own answer to what "
            "it hides is the data_parallel lab's jit over a Mesh with NamedSharding."
        )
    return summary


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare environment`: fine-tune by `case` ("lora" or "full") from `weights`
    (spec.start_weights' PEFT names, numpy); returns its Curves with the validation accuracy."""
    data = spec.load_data(cfg)
    _, history = train(cfg, data, weights=weights, methods=(case,), ctx=ctx)
    return spec.method_curves(history, case)
