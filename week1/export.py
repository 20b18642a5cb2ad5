"""A trained lab model as a Hugging Face Hub folder (week1/hub.py), and its upload: what
`week1 export RUN_DIR DIR` and `week1 push DIR --repo-id NAME` do, and what the environment
lab shows. The framework's library is imported when a run of it is exported.

export: the run's config.json names the lab and the framework; the newest intact checkpoint
of the run (every run checkpoints its last step, so a finished run exports its final
weights) is restored by that framework's lib/charlm.py (a broken or refused newer one is
skipped, saying so; the command names the step it exported, and the step the run reached
when the two differ), for every lab listed in EXPORTABLE; its weights are written under
torch state_dict names with config.json (torch: PyTorchModelHubMixin.save_pretrained; Flax:
the same files), and a model card README.md (huggingface_hub.ModelCard): the metrics of
summary.json, the config, the framework, the lab's parity numbers (from a `week1 parity
--json` document given with --parity) and the command that trained it. The folder loads in
either framework: `CharMLPHub.from_pretrained(DIR)` (week1_torch.lib.hub) or
`week1_jax.lib.hub.from_pretrained(DIR)`.

push: `HfApi.create_repo` then `upload_folder`. Without a token (HF_TOKEN or `hf auth
login`) or without a network it refuses in one line (exit 2) before sending anything.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib
import shlex

from week1 import catalog, checkpoints, hub
from week1.config import UsageError, as_dict, from_dict
from week1.runs import read_config

# Labs whose runs export, and where their checkpoints are inside the run folder.
EXPORTABLE = {"training_loop": "checkpoints", "environment": "char_mlp"}


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a run folder says about itself."""

    dir: pathlib.Path
    lab: str
    framework: str  # "jax" or "torch"
    compile: bool  # torch.compile was asked for
    config: dict  # the lab Config's fields in effect (after any resume's --steps)
    started_with: dict  # the settings the run was started with
    resumes: list  # each `week1 resume`: at, from_step, changed
    summary: dict


def read_run(run_dir) -> RunInfo:
    """A run folder's config.json and summary.json (week1/runs.py: today's or an older
    layout); a UsageError in one line otherwise."""
    run_dir = pathlib.Path(run_dir)
    saved = read_config(run_dir)
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    return RunInfo(run_dir, saved.lab, saved.framework, saved.compile, saved.config,
                   saved.started_with, saved.resumes, summary)  # fmt: skip


def training_command(info: RunInfo) -> str:
    """The commands that trained the model: `week1 run` with the settings the run started with
    that differ from the lab's defaults, then one `week1 resume` per resume that changed its
    steps (a longer run's schedule differs from a run started that long)."""
    defaults = as_dict(catalog.spec(info.lab).Config())
    words = ["week1", "run", info.lab, "--framework", info.framework]
    words += ["--compile"] if info.compile else []
    words += [f"--{k}={v}" for k, v in info.started_with.items() if defaults.get(k) != v]
    lines = [shlex.join(words)]
    for resume in info.resumes:
        steps = resume.get("changed", {}).get("steps")
        more = [f"--steps={steps[1]}"] if steps else []
        at = f"  # from step {resume.get('from_step')}"
        lines.append(shlex.join(["week1", "resume", f"runs/{info.dir.name}", *more]) + at)
    return "\n".join(lines)


def parity_rows(lab: str, parity_path) -> list[tuple]:
    """The lab's parity families (what is compared, tier, comparisons, max abs, max rel,
    headroom) from a `week1 parity --json` document; [] without one."""
    if parity_path is None:
        return []
    from week1.commands import parity

    doc = parity.load(str(parity_path))
    mine = [c for c in doc["comparisons"] if parity.lab_of(c) == lab]
    return [
        (f.compared, f.tier, f.n, parity.fmt(f.max_abs), parity.fmt(f.max_rel))
        + (parity.fmt_headroom(f.headroom),)
        for f in parity.families(mine)
    ]


def model_card(info: RunInfo, config: dict, metrics: dict, settings: dict, parity_path=None):
    """The card (huggingface_hub.ModelCard): YAML metadata, then what the model is, how to load
    it in either framework, its metrics, the settings it was trained with, parity numbers and
    the command that trained it."""
    from huggingface_hub import ModelCard, ModelCardData

    week1 = config["week1"]
    data = ModelCardData(
        library_name="week1",
        license="mit",
        tags=["week1", "character-level", "language-model", info.framework],
        pipeline_tag="text-generation",
    )
    lines = [
        f"# {config['architectures'][0]} from week1's `{info.lab}` lab",
        "",
        f"A character-level MLP language model (Bengio et al. 2003) trained in "
        f"**{info.framework}** on Shakespeare for {week1['step']} steps, exported by "
        "`week1 export`. The weights are stored under torch state_dict names; the same folder "
        "loads in either framework:",
        "",
        "```python",
        "from week1_torch.lib.hub import CharMLPHub        # PyTorchModelHubMixin",
        "model = CharMLPHub.from_pretrained(folder_or_repo_id)",
        "from week1_jax.lib import hub                     # Flax nnx, the same files",
        "model = hub.from_pretrained(folder)",
        "```",
        "",
        "The vocabulary (id -> character) is `config.json`'s `week1.vocab`.",
        "",
        "## Training",
        "",
        "```",
        training_command(info),
        "```",
        "",
        "## Metrics",
        "",
        *_markdown_table(["metric", "value"], [(k, f"{v:.6g}") for k, v in metrics.items()]),
        "",
        "## Config",
        "",
        f"The training_loop settings of the model (`{info.lab}` run `{info.dir.name}`):",
        "",
        *_markdown_table(["setting", "value"], list(settings.items())),
        "",
        "## Parity",
        "",
    ]
    rows = parity_rows(info.lab, parity_path)
    if rows:
        lines += [
            f"From `{pathlib.Path(parity_path).name}`: each family's worst difference between "
            "the two frameworks (or against the reference) and its headroom (1 = at the tier's "
            "limit).",
            "",
            *_markdown_table(["compared", "tier", "n", "max abs", "max rel", "headroom"], rows),
        ]
    else:
        lines.append(
            f"No parity document was given. `week1 parity {info.lab} --json parity.json`, then "
            f"`week1 export RUN DIR --parity parity.json`, puts its numbers here."
        )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def _markdown_table(columns: list[str], rows: list) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def exported_step_note(info: RunInfo, step: int) -> str:
    """What `week1 export` says about the step it exported: the step, and the run's own last
    step and status when the weights are not the end of a finished run."""
    reached, status = info.summary.get("step"), info.summary.get("status", "unknown")
    said = f"step {step}"
    if isinstance(reached, int) and reached > step:
        said += f" (the run reached step {reached}; step {step} is its newest usable checkpoint)"
    if status != "ok":
        said += f"; the run's status is {status!r}"
    return said


def export_run(run_dir, out_dir, parity_path=None) -> pathlib.Path:
    """Write the run's model as a Hub folder in `out_dir` (created; must be empty if it
    exists); returns the folder. The step exported is config.json's `week1.step`."""
    info = read_run(run_dir)
    if info.lab not in EXPORTABLE:
        raise UsageError(
            f"{info.lab} runs do not export yet; exportable: {', '.join(EXPORTABLE)} "
            "(week1/export.py)"
        )
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"{str(out_dir)!r} exists and is not an empty folder")
    if parity_path is not None and not pathlib.Path(parity_path).is_file():
        raise UsageError(f"--parity {str(parity_path)!r}: no such file")
    from week1 import charlm

    spec = catalog.spec(info.lab)
    lab_cfg = from_dict(spec.Config, info.config)
    # The environment lab trains the char LM as one of its parts, with settings of its own.
    loop_cfg = spec.char_mlp_config(lab_cfg) if hasattr(spec, "char_mlp_config") else lab_cfg
    checkpoint_dir = info.dir / EXPORTABLE[info.lab]
    if (
        checkpoints.latest_intact_quietly(checkpoints.candidates_in(info.framework, checkpoint_dir))
        is None
    ):
        raise UsageError(
            f"{info.dir} has no intact checkpoint to export (status: "
            f"{info.summary.get('status', 'unknown')}); train it again: "
            f"{training_command(info).splitlines()[0]}"
        )
    lm = importlib.import_module(f"week1_{info.framework}.lib.charlm")
    step, weights = lm.restore(loop_cfg, checkpoint_dir)
    data = charlm.load_data(loop_cfg)
    corpus = data.corpus
    metrics = {
        "validation loss (nats/char, at export)": lm.validation_loss(loop_cfg, weights),
        "unigram baseline (nats/char)": charlm.unigram_baseline(data),
    }
    metrics |= {
        f"run summary: {k}": v for k, v in info.summary.items() if isinstance(v, (int, float))
    }
    config = hub.model_config(
        "CharMLP",
        {
            "vocab_size": corpus.vocab_size,
            "block_size": loop_cfg.block_size,
            "n_embd": loop_cfg.n_embd,
            "n_hidden": loop_cfg.n_hidden,
            "dropout": loop_cfg.dropout,
        },
        lab=info.lab,
        framework=info.framework,
        compile=info.compile,
        step=step,
        vocab=corpus.chars,
        run=info.dir.name,
        weights="torch state_dict names, float32",
    )
    importlib.import_module(f"week1_{info.framework}.lib.hub").save_pretrained(
        weights, out_dir, config
    )
    model_card(info, config, metrics, as_dict(loop_cfg), parity_path).save(out_dir / hub.CARD)
    return out_dir


def push(folder, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Create the repo (if needed) and upload the folder; returns the commit URL. A UsageError
    in one line without a token or a network, before anything is sent."""
    from huggingface_hub import HfApi, get_token

    hub.read_config(folder)  # a model folder, or a one-line refusal
    token = token or get_token()
    if not token:
        raise UsageError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login`; nothing was sent"
        )
    api = HfApi(token=token)
    try:
        api.whoami()
    except Exception as err:  # offline, DNS, proxy, revoked token: all end here
        raise UsageError(
            f"cannot reach the Hub with this token ({type(err).__name__}); nothing was sent"
        ) from None
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        repo_id=repo_id, folder_path=str(folder), commit_message="week1 export"
    )
    return str(commit.commit_url if hasattr(commit, "commit_url") else commit)
