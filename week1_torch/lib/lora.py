r"""LoRA (Hu et al., 2021) in torch through PEFT: `LoraConfig` + `get_peft_model`.

    y = x W^T + b + (alpha / r) (x A^T) B^T     W (out, in), b: frozen; A (r, in), B (out, r)

PEFT finds every Linear whose name ends in one of `target_modules`, wraps it in
a `lora.Linear` holding lora_A and lora_B (A random, B zero: the wrapped model
starts as the pretrained one), freezes everything else, and keeps a trainable
copy of each module named in `modules_to_save` (here the classifier head).
`save_pretrained` writes only what was trained: adapter_config.json and
adapter_model.safetensors. Read beside week1_jax/lib/lora.py, the same
construction written out in Flax nnx.

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
