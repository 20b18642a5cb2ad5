"""Lab: the production mindset, from a trained run to a served model under load.

What it teaches
---------------
A model is not done when its loss is low: it has to be answered from, fast, by many
clients at once, without the training code, and it has to keep answering when the
traffic is odd or the process is told to stop. This lab takes the character-level
MLP LM of the training_loop lab (and, in 4, the Kim CNN of the cnn_classifier lab) through
the steps a team would take, on the parts a team would use:

1. Export, checked. torch: `torch.export.export` (an ExportedProgram, saved with
   `torch.export.save`) and from it an ONNX file (`torch.onnx.export(..., dynamo=True)`)
   that `onnxruntime` runs, with no torch in the serving process. JAX: `jax.export`
   serializes the jitted forward pass as StableHLO with the weights inside, and
   `jax.export.deserialize` reloads it in another process; the batch dimension is
   symbolic in every export. JAX has no ONNX exporter of its own (the routes through
   TensorFlow, jax2tf + tf2onnx, need TensorFlow), so JAX's portable format here is
   StableHLO. The exported logits are checked against the eager model's (F32 tier) on
   batches of 1, 7 and 64 windows before anything is served.
2. Serve. `week1 serve FOLDER` (week1/commands/serve.py): FastAPI on uvicorn, /health
   (liveness) and /ready (readiness: only after the model is loaded and every batch
   shape has run once, so no client pays for a compilation), /v1/generate, pydantic
   limits answered with 422 and the field at fault, a body limit answered with 413,
   Prometheus /metrics, and a graceful stop on SIGTERM.
3. Under load. `week1 run serving` starts the server on 127.0.0.1 once per batching
   setting (`--batching=max_batch:max_wait_ms,...`) and drives it with a bounded
   asynchronous load generator (httpx; each level stops after `requests` requests or
   `duration_s` seconds): latency percentiles and throughput per concurrency.
4. A classifier too. `week1 serve` on a cnn_classifier run folder exports its Kim CNN
   (KimCNN, week1_{jax,torch}/lib/models.py) the same two ways, with the batch and the text
   length symbolic, checks the export against the eager model on 1, 7 and 64 test texts and
   on the 7 longest (cut at max_length words, the longest input), and answers
   POST /v1/classify through the same batcher, /ready, /metrics and SIGTERM:
   {"text": "..."} -> the label, every class's probability, the words the model read, the
   vocabulary coverage and model_version; {"texts": [...]} classifies up to 64 texts in one
   request, each a row of the batch. serving.json says which kind of model a folder holds
   ("charlm" or "classifier"); a classifier's carries what turns raw text into ids without
   the training code: the tokenizer's pattern, the vocabulary (PAD, UNK, then words), the
   class names and max_length. The endpoint of the other kind answers 404, naming the right
   one. A batch's texts are padded to the next power of two of its longest (16 words at
   least, max_length at most), so JAX compiles one program per (batch, length) pair while
   warming up, before /ready.

The production mindset, in the course's terms
---------------------------------------------
- Latency budget. A p99 is the number a user feels; the mean hides the queue. Look at
  p50 vs p99 per concurrency: when clients outnumber what one batch serves, requests
  wait and p99 grows with the queue while p50 stays put for a while.
- Batching. One forward pass on 32 rows costs little more than on one (the matrix
  products are tiny and the per-call overhead dominates), so batching raises
  throughput; waiting `max_wait_ms` for a batch to fill costs latency at low load.
  The plot (throughput vs p99, one line per batching setting, a point per concurrency)
  is that trade-off: up and to the left is better. max_batch 1 is the baseline without
  batching. With max_wait_ms 0 the batcher still batches whatever queued while the last
  batch ran: under load, batches form by themselves.
- Cold start. The `starts` table gives process start to ready for each server:
  imports, loading, warm-up (JAX compiles each padded batch shape here), and the first
  request after ready. A server that is ready before it is warm moves the compile into
  its first users' latency.
- Versioning. serving.json beside the exported file names the run, its step, its config
  and the sha256 of the training data ids; the server reports the exported file's own
  hash as `model_version` in every response and in `week1_model_info` on /metrics. A
  response can always be traced to the weights and data that produced it.
- Monitoring drift. /metrics exports histograms of prompt length and of vocabulary
  coverage (the fraction of prompt characters the model's vocabulary knows; unknown ones
  are fed as padding). Training text scores 1.0; a falling coverage is traffic the model
  was not trained for, long before anyone reads a sample. For the classifier the coverage
  counts words (unknown ones are fed as <unk>), and `week1_predictions_total{label}` counts
  the answers by class: a label mix that moves is the traffic, or the world, changing.
- Rollback. The export folder is immutable and self-describing: rolling back is starting
  the server on the previous folder and waiting for /ready before moving traffic
  (readiness, not liveness, is what a load balancer should ask).
- Faults. Malformed JSON, an empty prompt, a negative max_tokens, a NaN temperature, a
  10 MB body; for /v1/classify an empty or blank text, a text over 32768 characters, a
  number where a text belongs, "text" and "texts" together: each is a 4xx with a message
  naming the field, and the server keeps serving. A client that
  hangs up does not wedge the batcher. SIGTERM closes the listening socket, finishes
  every accepted request, then exits (tests/test_serve.py runs each against a real
  server).

How to read the results
-----------------------
First the export check: every export within F32 of the eager model on each batch (the
tier is applied at each row's scale: see check_exports), else the run stops there.

Then the load table, one row per batching setting and concurrency. On this 2-core CPU the
server and the load generator share the cores (and whatever else the machine runs): the
wall-clock columns (p50/p95/p99, req/s) measure the machine as much as the server, and
the load generator itself (httpx) spends about as much CPU per request as the server does.
So read two kinds of columns:
- srv, the server's CPU milliseconds per request (from /proc, whatever the neighbours do):
  with max_batch 1 every generated character is one forward pass per request; batching
  shares each pass among the batch's requests, so srv falls as b~ (the mean batch size
  the responses report) grows. What remains at large batches is HTTP, JSON and pydantic:
  on this small char MLP they are much of srv at every b~, and on a busy shared machine
  the fall can be lost in the noise.
- b~ against conc: a batch can only hold what is queued. With few clients, b~ stays near
  1 and max_wait_ms is pure added latency (compare p50 at conc 1 across settings); with
  many, batches fill without waiting.
The plot (throughput_vs_p99.png) is the trade-off in wall-clock terms; on an idle machine
(or with the load generator on another one) it is what a capacity plan reads.

The starts table: process start to /ready (imports, loading the export, warm-up: the
ONNX server imports no framework; the JAX one imports jax and compiles one program per
padded batch shape), then the first two requests on an open connection.
`week1 bench serving` times the forward pass alone: eager (torch) or jit (JAX) against the
exports, on 1 and 32 windows.

The load test drives the char LM; the classifier goes through the same batcher and server,
one forward pass per batch instead of one per generated character.

Not covered: a GPU server (onnxruntime's CUDA execution provider, or the JAX export run on
the device, with CUDA graphs); the same command would serve there, unmeasured here.

Run it (the serving extra: scripts/setup.sh installs it):
    week1 run serving --framework torch            (trains a small model, exports, loads)
    week1 run serving --framework jax --run_dir=runs/training_loop-jax-...   (a trained run)
    week1 serve runs/serving-torch-...              (its export/; or a training_loop run)
    curl -s localhost:8000/v1/generate -H 'content-type: application/json' \
        -d '{"prompt": "ROMEO:", "max_tokens": 40, "temperature": 0.8, "seed": 1}'
    curl -s localhost:8000/metrics | grep week1_
The run folder keeps export/ (serving.json beside the model), server.log, load.json,
results.md (the tables) and throughput_vs_p99.png.

Serve a classifier (a cnn_classifier run of either framework; any variant or dataset):
    week1 run cnn_classifier --framework jax
    week1 serve runs/cnn_classifier-jax-...     (exports into its serving/, prints the check)
    curl -s localhost:8000/v1/classify -H 'content-type: application/json' \
        -d '{"text": "A gorgeous, moving film with a terrific cast."}'
    curl -s localhost:8000/v1/classify -H 'content-type: application/json' \
        -d '{"texts": ["Dull and lifeless.", "A triumph."]}'
    curl -s localhost:8000/metrics | grep -E 'week1_(predictions|vocab_coverage)'
Look for: the export check table (every row "ok") before the server says it listens; the
probabilities of a response sum to 1 over the run's classes (rotten/fresh, or the five BBC
topics); words_used stops at the run's max_length; coverage near 1 for review-like English
and falling for other text; the predictions counter by label as traffic arrives. A second
`week1 serve` on the same run reuses its serving/ until the run has a newer checkpoint.

History: docs/history.md#frameworks-2016, #bengio-2003
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

from week1 import charlm, convert, report
from week1.config import Range, from_dict, require
from week1.data import labelled, shakespeare
from week1.data.batches import window_batch
from week1.exercises import Exercise, Part
from week1.parallel import free_port
from week1.runs import read_config
from week1.timing import time_calls
from week1.tolerances import F32, measure

WEIGHT_MAP = convert.CHAR_MLP  # torch state_dict <-> Flax params (parity: ONNX vs JAX)
CLASSIFIER_WEIGHT_MAP = convert.KIM_CNN  # the same for Kim's CNN (a cnn_classifier run)
WIDTHS = convert.KIM_WIDTHS  # KimCNN's filter widths, in words
CHARLM, CLASSIFIER = "charlm", "classifier"  # serving.json's "kind": /v1/generate, /v1/classify
SERVED_LABS = ("training_loop", "serving", "cnn_classifier")  # run folders week1 serve exports
MANIFEST = "serving.json"  # what `week1 serve` reads beside the exported file
PAD_CHAR = "\n"  # left padding of prompts shorter than block_size (a line break: a fresh start)
CHECK_BATCHES = (1, 7, 64)  # batch sizes the export is checked on
MIN_WORDS = 16  # a classifier export's shortest input length: shorter texts are padded to it
LAUNCH = (sys.executable, "-m", "week1", "serve")


@dataclasses.dataclass(frozen=True)
class Config(charlm.Config):
    """The char-MLP LM (week1/charlm.py), trained briefly when no run_dir is given, and the load
    test's settings."""

    steps: int = 600  # a short run: a model worth sampling from, not a good one
    warmup_steps: int = 50
    eval_every: int = 600
    eval_batches: int = 5
    checkpoint_every: int = 0  # the last step only
    run_dir: str = ""  # a training_loop run folder to serve (its newest checkpoint); empty: train
    concurrency: str = "1,4,16,64"  # clients in flight, one load level each
    batching: str = "1:0,8:2,32:5"  # max_batch:max_wait_ms settings, one server each
    requests: int = 256  # requests per load level (at most)
    duration_s: float = 10.0  # seconds per load level (at most)
    max_tokens: int = 64  # characters generated per request (each one a forward pass)
    start_timeout_s: float = 120.0  # process start to /ready, at most

    RANGES = {
        "requests": Range(1, 100_000),
        "duration_s": Range(0, 600, low_open=True),
        "max_tokens": Range(1, 512),
        "start_timeout_s": Range(1, 1800),
    }

    def check(self) -> None:
        super().check()
        require(self.temperature <= 2, f"temperature={self.temperature}: the server takes 0..2")
        require(
            all(1 <= c <= 512 for c in self.levels()),
            f"concurrency={self.concurrency!r}: comma-separated integers in 1..512",
        )
        for max_batch, max_wait_ms in self.settings():
            require(
                1 <= max_batch <= 1024 and 0 <= max_wait_ms <= 1000,
                f"batching={self.batching!r}: each max_batch:max_wait_ms with max_batch in "
                "1..1024 and max_wait_ms in 0..1000",
            )
        require(
            not self.run_dir or (pathlib.Path(self.run_dir) / "config.json").is_file(),
            f"run_dir={self.run_dir!r}: not a run folder (no config.json)",
        )
        if self.run_dir:
            lab = read_config(self.run_dir).lab
            require(
                lab in ("training_loop", "serving"),
                f"run_dir={self.run_dir!r}: a {lab!r} run; the load test drives the char LM "
                "(training_loop runs); serve a cnn_classifier run with `week1 serve RUN_DIR` "
                "(POST /v1/classify)",
            )

    def levels(self) -> list[int]:
        try:
            return [int(c) for c in self.concurrency.split(",")]
        except ValueError:
            return [0]  # check() names the setting

    def settings(self) -> list[tuple[int, float]]:
        try:
            pairs = [item.split(":") for item in self.batching.split(",")]
            return [(int(b), float(w)) for b, w in pairs]
        except ValueError:
            return [(0, -1.0)]  # check() names the setting


# ---------------------------------------------------------------------------------------------
# The model to serve: a training_loop run's, or a short run of this lab's own


@dataclasses.dataclass(frozen=True)
class Classifier:
    """What serving reads of a cnn_classifier run's config.json: the labelled corpus and
    vocabulary it was trained on (week1.data.labelled) and the sizes of its KimCNN."""

    dataset: str
    split_seed: int
    min_count: int
    max_vocab: int
    n_embd: int
    n_maps: int
    max_length: int  # words a text is cut to (the longest input the model reads)


@dataclasses.dataclass(frozen=True)
class Source:
    """Where the served weights come from: the model's settings and what versions them."""

    cfg: charlm.Config | Classifier  # the model's sizes and how it was trained
    run: str  # the run folder's name
    framework: str
    step: int

    @property
    def kind(self) -> str:
        return CLASSIFIER if isinstance(self.cfg, Classifier) else CHARLM


def read_run(run_dir) -> tuple[charlm.Config | Classifier, str]:
    """A training_loop (or serving) run folder's char-LM settings, or a cnn_classifier run
    folder's Classifier, and its framework (config.json)."""
    saved = read_config(run_dir)
    require(
        saved.lab in SERVED_LABS,
        f"run_dir={str(run_dir)!r}: a {saved.lab!r} run; serving takes training_loop and "
        "cnn_classifier runs",
    )
    kind = Classifier if saved.lab == "cnn_classifier" else charlm.Config
    names = {f.name for f in dataclasses.fields(kind)}
    cfg = from_dict(kind, {k: v for k, v in saved.config.items() if k in names})
    return cfg, saved.framework


@functools.cache
def load_labelled(cls: Classifier) -> labelled.Labelled:
    """The classifier's corpus: its splits, vocabulary and class names, as the run made them."""
    return labelled.prepare(
        cls.dataset, seed=cls.split_seed, min_count=cls.min_count, max_size=cls.max_vocab
    )


def load_corpus() -> shakespeare.CharCorpus:
    return shakespeare.prepare()


def check_batches(corpus: shakespeare.CharCorpus, block_size: int) -> list[np.ndarray]:
    """Windows of the held-out last tenth of the text, one batch per size of CHECK_BATCHES:
    x (B, T) int32."""
    val = corpus.split(0.1)[1]
    return [window_batch(val, block_size, b, 12345, b)[0] for b in CHECK_BATCHES]


def classifier_batches(cls: Classifier) -> list[tuple[np.ndarray, np.ndarray]]:
    """Texts of the test split as the classifier's input at the longest length, T =
    max(max_length, MIN_WORDS) words: the first B texts for each B of CHECK_BATCHES, then the
    7 longest (cut at max_length). Each (ids (B, T) int64, lengths (B,) int64)."""
    test = load_labelled(cls).splits["test"]
    longest = np.argsort(-np.asarray(test["length"]), kind="stable")[:7]
    T = max(cls.max_length, MIN_WORDS)
    batches = []
    for rows in [np.arange(b) for b in CHECK_BATCHES] + [longest]:
        picked = test[rows]
        lengths = np.minimum(picked["length"], cls.max_length).astype(np.int64)  # (B,)
        ids = np.full((len(rows), T), labelled.PAD, np.int64)  # (B, T)
        for i, (row, n) in enumerate(zip(picked["ids"], lengths, strict=True)):
            ids[i, :n] = row[:n]
        batches.append((ids, lengths))
    return batches


def check_inputs(source: Source) -> list[tuple[np.ndarray, ...]]:
    """The inputs the export is checked on, each a tuple of the model's arguments: (x,) for
    the char LM (check_batches), (ids, lengths) for the classifier (classifier_batches)."""
    if source.kind == CLASSIFIER:
        return classifier_batches(source.cfg)
    return [(x,) for x in check_batches(load_corpus(), source.cfg.block_size)]


def bench_batches(block_size: int) -> list[np.ndarray]:
    """`week1 bench serving`: a batch of 1 window and one of 32 (a server's batch)."""
    val = load_corpus().split(0.1)[1]
    return [window_batch(val, block_size, b, 54321, b)[0] for b in (1, 32)]


def time_forwards(forwards: dict, block_size: int, sync) -> dict:
    """`week1 bench serving`: each forward pass (name -> windows (B, T) -> logits) timed on
    bench_batches; {"<name>, batch <B>": Timing}."""
    return {
        f"{name}, batch {len(x)}": time_calls(lambda: forward(x), sync)
        for x in bench_batches(block_size)
        for name, forward in forwards.items()
    }


def manifest(fmt: str, file: str, source: Source, exporter: str) -> dict:
    """serving.json: the kind of model, the format and file, the vocabulary, the model's sizes,
    and the version of what was exported (run, step, settings, data hash)."""
    if source.kind == CLASSIFIER:
        return classifier_manifest(fmt, file, source, exporter)
    corpus = load_corpus()
    return {
        "kind": CHARLM,
        "format": fmt,
        "file": file,
        "architecture": "CharMLP",
        "vocab": corpus.chars,
        "pad_id": corpus.chars.index(PAD_CHAR),
        "block_size": source.cfg.block_size,
        "n_embd": source.cfg.n_embd,
        "n_hidden": source.cfg.n_hidden,
        "exporter": exporter,
        "source": {
            "framework": source.framework,
            "run": source.run,
            "step": source.step,
            "config": dataclasses.asdict(source.cfg),
            "data": "shakespeare characters",
            "data_ids_sha256": hashlib.sha256(corpus.ids.tobytes()).hexdigest(),
        },
    }


def classifier_manifest(fmt: str, file: str, source: Source, exporter: str) -> dict:
    """serving.json of a classifier: what turns a raw text into the model's input (the
    tokenizer's pattern over the lower-cased text, the vocabulary: PAD, UNK, then words), the
    class names, the lengths, and the version (run, step, settings, hash of the training ids)."""
    cls = source.cfg
    corpus = load_labelled(cls)
    train_ids = np.concatenate(list(corpus.splits["train"]["ids"])).astype(np.int32)
    return {
        "kind": CLASSIFIER,
        "format": fmt,
        "file": file,
        "architecture": "KimCNN",
        "tokenizer": {"pattern": labelled.TOKEN_PATTERN, "lowercase": True},
        "vocab": list(corpus.vocab.words),
        "pad_id": labelled.PAD,
        "unk_id": labelled.UNK,
        "labels": list(corpus.label_names),
        "max_length": cls.max_length,
        "min_length": MIN_WORDS,
        "widths": list(WIDTHS),
        "n_embd": cls.n_embd,
        "n_maps": cls.n_maps,
        "exporter": exporter,
        "source": {
            "framework": source.framework,
            "run": source.run,
            "step": source.step,
            "config": dataclasses.asdict(cls),
            "data": f"{cls.dataset} training split (week1.data.labelled)",
            "data_ids_sha256": hashlib.sha256(train_ids.tobytes()).hexdigest(),
        },
    }


def write_manifest(folder, content: dict) -> pathlib.Path:
    path = pathlib.Path(folder) / MANIFEST
    path.write_text(json.dumps(content, indent=2, sort_keys=True))
    return path


def check_exports(
    inputs: list[tuple], eager: list[np.ndarray], exported: dict[str, list[np.ndarray]]
) -> dict:
    """Each export's logits against the eager model's on every check input, F32 tier at the
    scale of each row: a row whose largest |logit| is s > 1 is divided by s first. Two float32
    computations in different orders differ by rounding at the scale of the row's large terms
    (a trained model's logits reach tens), so a logit near 0 beside them cannot be held to 1e-5
    of itself; at s <= 1 (an initialised model, the parity tests) this is plain F32. Prints the
    table (each input as B x T, with the longest text's words), raises if one is outside,
    returns the worst absolute difference."""
    rows = []
    for name, outs in exported.items():
        for xs, ref, out in zip(inputs, eager, outs, strict=True):
            scale = np.maximum(np.abs(ref).max(axis=1, keepdims=True), 1.0)  # (B, 1)
            diff = measure(out / scale, ref / scale, F32)
            worst = float(np.abs(out - ref).max())
            shape = " x ".join(map(str, xs[0].shape))  # the LM's x, the classifier's ids
            if len(xs) > 1:  # the classifier's lengths
                shape += f" ({xs[1].max()} words)"
            rows.append((name, shape, worst, diff.headroom, "ok" if diff.ok else "NO"))
    report.table(
        "exported vs eager logits (F32 tier at each row's scale; headroom 1 = at the limit)",
        ["export", "input B x T (longest text)", "max |diff|", "headroom", "within"],
        rows,
    )
    bad = [row for row in rows if row[-1] != "ok"]
    if bad:
        raise RuntimeError(f"an export disagrees with the eager model: {bad[0]}")
    return {"export_max_abs_diff": max(row[2] for row in rows)}


def export_checked(lab, model, folder, source: Source) -> dict:
    """Export `model` into `folder` with the framework module `lab`, reload the export (as the
    server does) and check it against the eager model on check_inputs (check_exports: raises
    if one disagrees); the worst difference."""
    lab.export(model, folder, source)
    inputs = check_inputs(source)
    eager = [lab.eager_logits(model, *xs) for xs in inputs]
    exported = {name: [f(*xs) for xs in inputs] for name, f in lab.reload(folder).items()}
    return check_exports(inputs, eager, exported)


def export_run(lab, run_dir, folder) -> pathlib.Path:
    """`week1 serve RUN_DIR` with the framework module `lab`: the run's newest checkpoint,
    exported into `folder` and checked against the eager model (export_checked: an export that
    disagrees is never served)."""
    model, source = lab.restore_run(run_dir)
    export_checked(lab, model, folder, source)
    return pathlib.Path(folder)


def run(cfg: Config, run, lab) -> dict:
    """`week1 run serving`, for the framework module `lab`: the model (cfg.run_dir's newest
    checkpoint, or this run's own short training, checkpointed and resumable), exported into
    the run folder's export/, the export checked against the eager model, then served and
    loaded (load_test)."""
    model, source = lab.restore_run(cfg.run_dir) if cfg.run_dir else lab.train_model(cfg, run)
    if run.should_stop():
        return {"trained_steps": source.step}
    folder = run.path("export")
    checked = export_checked(lab, model, folder, source)
    return {"served_step": source.step, **checked, **load_test(cfg, folder, run)}


# ---------------------------------------------------------------------------------------------
# A server process and a bounded load generator


@dataclasses.dataclass
class Server:
    process: subprocess.Popen
    url: str
    start_to_ready_s: float


def start_server(folder, max_batch: int, max_wait_ms: float, log_path, timeout_s: float) -> Server:
    """`week1 serve FOLDER` on 127.0.0.1 in a process of its own; returns once /ready says 200
    (the time from process start to then is the cold start)."""
    import httpx

    port = free_port()
    command = [
        *LAUNCH,
        str(folder),
        "--port",
        str(port),
        "--max_batch",
        str(max_batch),
        "--max_wait_ms",
        str(max_wait_ms),
    ]
    start = time.perf_counter()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - start < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}); see {log_path}")
        try:
            if httpx.get(f"{url}/ready", timeout=1.0).status_code == 200:
                return Server(process, url, time.perf_counter() - start)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    stop_server(process)
    raise RuntimeError(f"the server was not ready after {timeout_s:g} s; see {log_path}")


def stop_server(process: subprocess.Popen, timeout_s: float = 60.0) -> int:
    """SIGTERM, then wait for the graceful stop (SIGKILL after `timeout_s`); the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def prompts(corpus: shakespeare.CharCorpus, n: int, seed: int) -> list[str]:
    """n prompts: windows of the held-out text, 1 to 64 characters long."""
    val = corpus.split(0.1)[1]
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 65, size=n)
    starts = rng.integers(0, len(val) - 64, size=n)
    return [corpus.decode(val[s : s + k]) for s, k in zip(starts, lengths, strict=True)]


@dataclasses.dataclass
class Load:
    """What one load level measured."""

    concurrency: int
    ok: int  # requests answered 200
    failed: int
    wall_s: float
    latencies_s: list
    batch_sizes: list

    def row(self) -> dict:
        ms = np.asarray(self.latencies_s) * 1000.0
        p50, p95, p99 = (np.percentile(ms, q) if len(ms) else float("nan") for q in (50, 95, 99))
        return {
            "concurrency": self.concurrency,
            "requests": self.ok,
            "failed": self.failed,
            "p50_ms": float(p50),
            "p95_ms": float(p95),
            "p99_ms": float(p99),
            "req_per_s": self.ok / self.wall_s if self.wall_s > 0 else 0.0,
            "mean_batch": float(np.mean(self.batch_sizes)) if self.batch_sizes else 0.0,
        }


async def drive(url: str, concurrency: int, bodies: list[dict], duration_s: float) -> Load:
    """`concurrency` clients send bodies[i] in turn, each waiting for its answer before the next,
    until every body was sent or `duration_s` passed (bounded in count and in time)."""
    import httpx

    latencies, batch_sizes, failed = [], [], [0]
    order = itertools.count()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:

        async def client_loop():
            while time.perf_counter() - start < duration_s:
                i = next(order)
                if i >= len(bodies):
                    return
                sent = time.perf_counter()
                try:
                    response = await client.post("/v1/generate", json=bodies[i])
                except httpx.HTTPError:
                    failed[0] += 1
                    continue
                if response.status_code != 200:
                    failed[0] += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                batch_sizes.append(response.json()["batch_size"])

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return Load(
        concurrency, len(latencies), failed[0], time.perf_counter() - start, latencies, batch_sizes
    )


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, seconds) of process `pid` (Linux /proc; NaN elsewhere), or of
    this process. On a shared machine the wall clock measures the neighbours too; the CPU
    time a request costs does not."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def first_requests_ms(url: str, body: dict) -> tuple[float, float]:
    """The latencies of the first and the second request a fresh server answers after /ready,
    on one open connection (so neither pays for connecting)."""
    import httpx

    times = []
    with httpx.Client(base_url=url, timeout=60.0) as client:
        client.get("/health").raise_for_status()
        for _ in range(2):
            sent = time.perf_counter()
            client.post("/v1/generate", json=body).raise_for_status()
            times.append((time.perf_counter() - sent) * 1000.0)
    return times[0], times[1]


def load_test(cfg: Config, folder, run) -> dict:
    """For each batching setting: start `week1 serve` on `folder`, time its start, drive every
    concurrency level, stop it with SIGTERM. Prints the tables, writes load.json and
    throughput_vs_p99.png in the run folder; returns the summary's numbers."""
    texts = prompts(load_corpus(), cfg.requests, cfg.seed)
    bodies = [
        {"prompt": t, "max_tokens": cfg.max_tokens, "temperature": cfg.temperature, "seed": i}
        for i, t in enumerate(texts)
    ]
    rows, starts = [], []
    for max_batch, max_wait_ms in cfg.settings():
        if run.should_stop():
            break
        setting = f"{max_batch}:{max_wait_ms:g}"
        server = start_server(
            folder, max_batch, max_wait_ms, run.path("server.log"), cfg.start_timeout_s
        )
        try:
            first, second = first_requests_ms(server.url, bodies[0])
            starts.append((setting, server.start_to_ready_s, first, second))
            for concurrency in cfg.levels():
                if run.should_stop():
                    break
                server_cpu, client_cpu = cpu_seconds(server.process.pid), cpu_seconds()
                load = asyncio.run(drive(server.url, concurrency, bodies, cfg.duration_s))
                per_request = 1000.0 / max(load.ok, 1)
                rows.append(
                    {
                        "max_batch": max_batch,
                        "max_wait_ms": max_wait_ms,
                        **load.row(),
                        "server_cpu_ms": (cpu_seconds(server.process.pid) - server_cpu)
                        * per_request,
                        "client_cpu_ms": (cpu_seconds() - client_cpu) * per_request,
                    }
                )
                report.console.print(
                    f"  {setting} c={concurrency}: {load.ok} ok, p99 {rows[-1]['p99_ms']:.1f} ms"
                )
        finally:
            status = stop_server(server.process)
        require(status in (0, 128 + signal.SIGTERM), f"the server exited with status {status}")
    return report_load(rows, starts, run)


LOAD_COLUMNS = {  # row key -> (column, format); times in ms ("ms": one decimal below 100)
    "max_batch": ("batch", "d"),
    "max_wait_ms": ("wait", "g"),
    "concurrency": ("conc", "d"),
    "requests": ("ok", "d"),
    "failed": ("fail", "d"),
    "p50_ms": ("p50", "ms"),
    "p95_ms": ("p95", "ms"),
    "p99_ms": ("p99", "ms"),
    "req_per_s": ("req/s", ".0f"),
    "mean_batch": ("b~", ".1f"),
    "server_cpu_ms": ("srv", ".2f"),
    "client_cpu_ms": ("cli", ".2f"),
}
START_COLUMNS = ("batch:wait", "start to ready s", "1st request ms", "2nd request ms")


def load_tables(rows: list[dict], starts: list[tuple]) -> tuple[list, list]:
    """The load rows and the starts as formatted cells (for the console and results.md)."""

    def cell(value, fmt: str) -> str:
        if fmt == "ms":
            fmt = ".1f" if value < 100 else ".0f"
        return format(value, fmt)

    load = [[cell(r[k], f) for k, (_, f) in LOAD_COLUMNS.items()] for r in rows]
    start = [[s[0], f"{s[1]:.2f}", f"{s[2]:.1f}", f"{s[3]:.1f}"] for s in starts]
    return load, start


def report_load(rows: list[dict], starts: list[tuple], run) -> dict:
    """Tables on the console and in results.md, the rows in load.json, the plot; the summary."""
    load, start = load_tables(rows, starts)
    columns = [c for c, _ in LOAD_COLUMNS.values()]
    report.compact_table(
        "under load: batch = max_batch, wait = max_wait_ms, conc = clients, b~ = mean batch,\n"
        "srv / cli = CPU ms per request of the server / the load generator; times in ms",
        columns,
        load,
    )
    report.compact_table("starts: process start to /ready, then two requests", START_COLUMNS, start)
    markdown = [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(row) + " |" for row in load),
        "",
        "| " + " | ".join(START_COLUMNS) + " |",
        "|" + "---|" * len(START_COLUMNS),
        *("| " + " | ".join(row) + " |" for row in start),
    ]
    run.path("results.md").write_text("\n".join(markdown) + "\n")
    run.path("load.json").write_text(json.dumps({"rows": rows, "starts": starts}, indent=1))
    series = {}
    for r in rows:
        xs, ys = series.setdefault(
            f"max_batch {r['max_batch']}, wait {r['max_wait_ms']:g} ms", ([], [])
        )
        xs.append(r["p99_ms"])
        ys.append(r["req_per_s"])
    report.plot_grid(
        run.path("throughput_vs_p99.png"),
        [report.Panel(series, "requests / s", styles={k: "-o" for k in series})],
        title="the batching trade-off: a point per concurrency level (log p99 axis)",
        xlabel="p99 latency (ms)",
    )
    summary = {"cold_start_s": starts[0][1] if starts else float("nan")}
    if rows:
        best = max(rows, key=lambda r: r["req_per_s"])
        summary |= {
            "best_req_per_s": best["req_per_s"],
            "best_at_max_batch": best["max_batch"],
            "best_at_concurrency": best["concurrency"],
            "failed_requests": sum(r["failed"] for r in rows),
        }
    return summary


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "export",
        hints=(
            (
                "Serving runs a program, not your Python: trace the eager model once into a "
                "portable artefact with a dynamic batch dimension."
            ),
            (
                "jax: jax.export.export(jax.jit(forward)) on a ShapeDtypeStruct whose batch is "
                "symbolic (jax.export.symbolic_shape). torch: torch.export.export with a Dim for "
                "the batch. Keep the function's return value as the docstring says."
            ),
        ),
        jax=Part(
            "week1_jax/serving.py::export",
            "test_serving.py::test_jax_export_reloaded_in_a_fresh_process_equals_eager",
        ),
        torch=Part(
            "week1_torch/serving.py::export", "test_serving.py::test_torch_exports_equal_eager"
        ),
    ),
)
