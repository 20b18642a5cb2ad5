r"""LoRA (Hu et al., 2021) in torch through PEFT: `LoraConfig` + `get_peft_model`.

    y = x W^T + b + (alpha / r) (x A^T) B^T     W (out, in), b: frozen; A (r, in), B (out, r)

PEFT finds every Linear whose name ends in one of `target_modules`, wraps it in
a `lora.Linear` holding lora_A and lora_B (A random, B zero: the wrapped model
starts as the pretrained one), freezes everything else, and keeps a trainable
copy of each module named in `modules_to_save` (here the classifier head).
`save_pretrained` writes only what was trained: adapter_config.json and
adapter_model.safetensors. Read beside week1_jax/lib/lora.py, the same
construction written out in Flax nnx.

For serving, the adapter is folded into the layer it wraps (merge_lora, written out here and
checked against PEFT's `merge_and_unload`): W' = W + (alpha / r) B A, one matrix, so the merged
model costs exactly what the pretrained one costs.

Reference: Hu et al. (2021), arXiv:2106.09685; PEFT's docs, "LoRA".
"""

from __future__ import annotations


def add_lora(model, targets: tuple[str, ...], rank: int, alpha: float, modules_to_save=("head",)):
    """`model` as a PeftModel with LoRA adapters on the Linear layers named `targets` (dropout
    0: the same function in training as in evaluation, and the same as week1_jax's).

    peft is imported here, not with the module: importing it sets TORCHINDUCTOR_CACHE_DIR.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=list(targets),
        lora_dropout=0.0,
        bias="none",
        modules_to_save=list(modules_to_save),
    )
    return get_peft_model(model, config)


def merged_weight(weight, lora_a, lora_b, scaling: float):
    """The adapter folded into the frozen weight, torch's Linear layout:

        W' = W + s B A       W (out, in), A (r, in), B (out, r), s = alpha / r

    x W'^T = x W^T + s (x A^T) B^T: the same output as the wrapped layer, one product instead
    of three. Reference: Hu et al. (2021), section 4.1 ("no additional inference latency").
    """
    return weight + scaling * (lora_b @ lora_a)  # (out, r) @ (r, in) -> (out, in)


def merge_lora(model) -> dict:
    """{module name (the base model's, as merge_and_unload names it): merged weight} for every
    LoRA-wrapped Linear of a PeftModel (its "default" adapter), the model left unchanged."""
    from peft.tuners.lora import LoraLayer

    return {
        name.removeprefix("base_model.model.") + ".weight": merged_weight(
            module.base_layer.weight.detach(),
            module.lora_A["default"].weight.detach(),
            module.lora_B["default"].weight.detach(),
            module.scaling["default"],
        )
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    }
