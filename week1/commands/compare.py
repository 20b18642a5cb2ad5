"""`week1 compare <lab>`: both frameworks from the same initial weights on the same batches.

Torch initialises the model; its weights are converted to Flax through the
lab's literal WEIGHT_MAP, so the two runs start identical and see the same
numpy batches. The loss curves should overlap to float32 rounding; the speeds
(JAX jit, torch eager, torch.compile) are measured in this one run and
reported as ratios.
"""

from __future__ import annotations

import numpy as np

from week1 import catalog, convert, report
from week1.runs import Run


def compare(lab_id: str, cfg, runs_root="runs", compile: bool = True) -> dict:
    spec = catalog.spec(lab_id)
    if not hasattr(spec, "WEIGHT_MAP"):
        raise catalog.UsageError(
            f"lab {lab_id!r} has no training run to compare; try `week1 parity` or `week1 "
            "bench` for it"
        )
    jax_lab = catalog.framework_module(lab_id, "jax")
    torch_lab = catalog.framework_module(lab_id, "torch")
    from week1_torch.lib.models import get_weights

    with Run(lab_id, "compare", cfg, root=runs_root, tensorboard=False) as run:
        data = spec.load_data(cfg)
        torch_weights = get_weights(torch_lab.build_model(cfg, data.vocab_size))
        jax_weights = convert.torch_to_flax(torch_weights, spec.WEIGHT_MAP)
        histories = {
            "jax (jit)": jax_lab.train(cfg, data, weights=jax_weights, show_progress=True)[1],
            "torch (eager)": torch_lab.train(cfg, data, weights=torch_weights, show_progress=True)[
                1
            ],
        }
        if compile:
            histories["torch.compile"] = torch_lab.train(
                cfg, data, weights=torch_weights, show_progress=True, compile=True
            )[1]
        jax_loss = np.array(histories["jax (jit)"].train_loss)
        torch_loss = np.array(histories["torch (eager)"].train_loss)
        max_abs = float(np.abs(jax_loss - torch_loss).max())
        max_rel = float((np.abs(jax_loss - torch_loss) / np.abs(torch_loss)).max())
        base = histories["jax (jit)"].steps_per_s
        baseline = spec.unigram_baseline(data)
        rows = [
            (
                name,
                h.train_loss[-1],
                h.val_loss[-1],
                h.steps_per_s,
                h.steps_per_s / base,
                h.first_step_s,
            )
            for name, h in histories.items()
        ]
        report.table(
            f"{lab_id}: {cfg.steps} steps, same weights and batches (unigram baseline "
            f"{baseline:.3f} nats)",
            [
                "framework",
                "final train loss",
                "final val loss",
                "steps/s",
                "speed vs JAX",
                "first step s",
            ],
            rows,
        )
        report.console.print(
            f"largest train-loss difference JAX vs torch over {len(jax_loss)} steps: "
            f"{max_abs:.3g} abs, {max_rel:.3g} rel"
        )
        window = max(1, cfg.steps // 60)
        styles = {"jax (jit)": "-", "torch (eager)": "--", "torch.compile": ":"}
        curves = {
            f"{name} train (mean of {window})": (h.steps, report.smooth(h.train_loss, window))
            for name, h in histories.items()
        }
        curves.update({f"{name} val": (h.val_steps, h.val_loss) for name, h in histories.items()})
        # Steps where the losses are bit-identical have no place on a log axis: left out (NaN).
        gap = {
            name: (
                h.steps,
                np.where(
                    np.array(h.train_loss) == jax_loss,
                    np.nan,
                    np.abs(np.array(h.train_loss) - jax_loss),
                ),
            )
            for name, h in histories.items()
            if name != "jax (jit)"
        }
        png = report.plot_panels(
            run.path("loss_curves.png"),
            [
                report.Panel(
                    curves,
                    "cross-entropy (nats)",
                    styles={
                        label: styles[name] + ("o" if label.endswith("val") else "")
                        for name in histories
                        for label in curves
                        if label.startswith(name)
                    },
                ),
                report.Panel(
                    gap,
                    "|loss - JAX loss| (equal: not shown)",
                    logy=True,
                    styles={n: "." for n in gap},
                ),
            ],
            title=f"{lab_id}: JAX vs torch from the same weights",
            xlabel="step",
        )
        summary = {
            "unigram_baseline": baseline,
            "max_abs_loss_diff": max_abs,
            "max_rel_loss_diff": max_rel,
            **{f"{name}/{k}": v for name, h in histories.items() for k, v in h.summary().items()},
        }
        run.close(summary=summary)
    report.console.print(f"loss curves: {run.final / png.name}\nrun folder: {run.final}")
    return summary
