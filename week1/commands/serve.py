"""`week1 serve <run or export folder> [--port] [--max_batch] [--max_wait_ms]`: a trained model
behind FastAPI on uvicorn, with dynamic batching, Prometheus metrics and a graceful stop: the
char-MLP language model (training_loop) or Kim's CNN text classifier (cnn_classifier),
whichever the folder holds. The serving lab (labs/serving.py) explains the choices and drives
the LM under load.

What a client sees:

    GET  /health        200 while the process is up (liveness)
    GET  /ready         200 once the model is loaded and warmed (every batch shape run once,
                        JAX's compilations included), 503 before and while stopping (readiness)
    POST /v1/generate   the LM: {"prompt", "max_tokens", "temperature", "seed"} -> {"text", ...}
    POST /v1/classify   the classifier: {"text": "..."} -> {"label", "probabilities", ...}, or
                        {"texts": [...]} -> {"predictions": [{"label", "probabilities", ...}]}
    GET  /metrics       Prometheus text: requests by endpoint and status, latency, batch
                        size, queue depth, input length and vocabulary coverage (drift), and
                        the classifier's predictions by label
The endpoint of the other kind of model answers 404 saying which one this server has.

The model runs from an export folder (serving.json beside the exported file: its "kind",
charlm or classifier), never from the training code: torch's export as ONNX on onnxruntime
(torch is not imported), JAX's as serialized StableHLO reloaded with jax.export. A
training_loop or cnn_classifier run folder is exported into <run>/serving first, and checked
against the eager model (by the serving lab's framework module).

Dynamic batching: requests wait in a queue; one worker takes the first, then more until
`max_batch` are together or `max_wait_ms` have passed since the first, and runs them all at
once: the LM generates in one series of forward passes (rows leave the batch as their
max_tokens are done), the classifier classifies in one forward pass (each text of a "texts"
request is one row). The model runs in one worker thread, so the event loop keeps accepting
while a batch runs, and what arrives meanwhile forms the next batch.

Limits (pydantic, answered 422 with the field and the rule): prompt 1..MAX_PROMPT_CHARS
characters, max_tokens 1..MAX_TOKENS, temperature a finite number in [0, 2] (0: greedy), seed
in [0, 2**32); a text to classify 1..MAX_TEXT_CHARS characters with at least one word, "texts"
1..MAX_TEXTS of them (a text longer than the model's max_length words is cut there, as in
training); a body over MAX_BODY_BYTES is refused with 413 before it is read whole.

SIGTERM (or Ctrl-C): /ready turns 503, the listening socket closes (new connections are
refused), every accepted request is answered, then the batcher stops and one line reports
how many requests were accepted and answered. The exit status is week1's for a stop by signal
(143 / 130).

No `from __future__ import annotations` here: FastAPI reads the request models from the
handlers' annotations, and they are defined inside build_app (so that importing this module
needs neither FastAPI nor pydantic).
"""

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import pathlib
import re
import shutil
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from week1 import catalog, checkpoints
from week1.config import UsageError
from week1.runs import read_config

MANIFEST = "serving.json"  # beside the exported model file(s)
CHARLM, CLASSIFIER = "charlm", "classifier"  # serving.json's "kind" (no kind: an older charlm)
ENDPOINTS = {CHARLM: "/v1/generate", CLASSIFIER: "/v1/classify"}
SERVED_LABS = ("training_loop", "cnn_classifier")  # run folders exported before serving
MAX_PROMPT_CHARS = 4096
MAX_TOKENS = 512
MAX_TEXT_CHARS = 32768  # a BBC article is 25k characters at most
MAX_TEXTS = 64
MAX_BODY_BYTES = 64 * 1024
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LENGTH_BUCKETS = (1, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
COVERAGE_BUCKETS = (0.5, 0.8, 0.9, 0.95, 0.99, 1.0)


# ---------------------------------------------------------------------------------------------
# The exported model, loaded without the training code


@dataclasses.dataclass
class Model:
    """An export folder loaded for inference: `logits(*inputs)` maps the LM's x (B, T) int ids
    to (B, V) float32 next-character logits, or the classifier's ids (B, T) and lengths (B,)
    to (B, C) class logits."""

    manifest: dict
    logits: object  # (np.ndarray int, ...) -> np.ndarray (B, V or C) float32
    version: str  # the exported file's sha256, first 12 hex digits

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", CHARLM)

    @property
    def vocab(self) -> str | list[str]:
        """The LM's characters (a string), or the classifier's words (id -> word)."""
        return self.manifest["vocab"]

    @property
    def block_size(self) -> int:
        return self.manifest["block_size"]

    @property
    def pad_id(self) -> int:
        return self.manifest["pad_id"]


def read_manifest(folder) -> dict:
    """serving.json of an export folder; a UsageError naming what is missing otherwise."""
    path = pathlib.Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        (folder_file := pathlib.Path(folder) / manifest["file"]).stat()
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(
            f"{str(folder)!r} is not an export folder (no readable {MANIFEST} naming an exported "
            "file beside it)"
        ) from None
    manifest["path"] = str(folder_file)
    return manifest


def load_model(folder) -> Model:
    """The export in `folder`: ONNX on onnxruntime, or serialized StableHLO on jax.export. JAX
    compiles once per batch shape, so its batches are padded up to a power of two: a few
    shapes, all compiled by warm_up before the server is ready."""
    manifest = read_manifest(folder)
    blob = pathlib.Path(manifest["path"]).read_bytes()
    version = hashlib.sha256(blob).hexdigest()[:12]
    if manifest["format"] == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
        session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def logits(*inputs):
            feed = {n: np.asarray(a, np.int64) for n, a in zip(names, inputs, strict=True)}
            return session.run(None, feed)[0]

    elif manifest["format"] == "stablehlo":
        import jax
        from jax import export

        call = jax.jit(export.deserialize(bytearray(blob)).call)

        def logits(*inputs):
            B = len(inputs[0])
            padded = [np.zeros((bucket(B), *a.shape[1:]), np.int32) for a in inputs]  # (B', ...)
            for p, a in zip(padded, inputs, strict=True):
                p[:B] = a
            return np.asarray(call(*padded))[:B]

    else:
        raise UsageError(
            f"{manifest['path']}: format {manifest['format']!r}; known: onnx, stablehlo"
        )
    return Model(manifest, logits, version)


def bucket(n: int) -> int:
    """The batch shape that n rows run in under JAX: the next power of two, at least n."""
    return 1 << (n - 1).bit_length()


def text_bucket(n: int, min_length: int, max_length: int) -> int:
    """The padded length a batch whose longest text has n words runs at: the next power of two,
    min_length at least (the export's shortest), max(max_length, min_length) at most; a few
    shapes, so JAX compiles a few programs."""
    return max(min_length, min(bucket(n), max_length))


def warm_up(model: Model, max_batch: int) -> None:
    """Run every input shape the server will use once (compiling JAX's), before /ready: each
    batch size, and for the classifier each padded text length with it."""
    sizes = sorted({bucket(n) for n in range(1, max_batch + 1)})
    for size in sizes:
        if model.kind == CHARLM:
            model.logits(np.full((size, model.block_size), model.pad_id, np.int64))
            continue
        low, high = model.manifest["min_length"], model.manifest["max_length"]
        for length in sorted({text_bucket(n, low, high) for n in range(1, high + 1)}):
            model.logits(np.full((size, length), model.pad_id, np.int64), np.ones(size, np.int64))


def resolve(path) -> pathlib.Path:
    """The export folder to serve: `path` itself, a `week1 run serving` folder's export/, or a
    training_loop or cnn_classifier run folder's serving/, exported now (by the serving lab's
    framework module, which checks the export against the eager model) unless it is there
    already for the run's newest intact checkpoint."""
    path = pathlib.Path(path)
    if (path / MANIFEST).is_file():
        return path
    if (path / "export" / MANIFEST).is_file():  # a `week1 run serving` folder
        return path / "export"
    if not (path / "config.json").is_file():
        raise UsageError(
            f"{str(path)!r} is neither an export folder ({MANIFEST}) nor a run folder (config.json)"
        )
    saved = read_config(path)
    if saved.lab not in SERVED_LABS:
        raise UsageError(
            f"{path} is a {saved.lab!r} run; week1 serve serves training_loop runs (the "
            "char-MLP LM), cnn_classifier runs (Kim's CNN) and export folders"
        )
    framework = saved.framework
    newest = checkpoints.latest_intact_quietly(
        checkpoints.candidates_in(framework, path / "checkpoints")
    )
    if newest is None:
        raise UsageError(f"{path} has no intact checkpoint to serve")
    out = path / "serving"
    if (out / MANIFEST).is_file() and read_manifest(out)["source"]["step"] == newest:
        return out
    # Export aside, then swap it in: a crash leaves the previous export (or none), never half.
    aside = path / "serving.tmp"
    shutil.rmtree(aside, ignore_errors=True)
    print(f"week1 serve: exporting {path} (step {newest}) to {out}", file=sys.stderr)
    catalog.framework_module("serving", framework).export_run(path, aside)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(aside, out)
    return out


# ---------------------------------------------------------------------------------------------
# Generation: numpy around the exported forward pass, the same for every export format


def encode_prompt(
    prompt: str, vocab: str, block_size: int, pad_id: int
) -> tuple[np.ndarray, float]:
    """The model's context for `prompt`: its last `block_size` characters as ids, left-padded
    with `pad_id` when shorter; characters outside the vocabulary become `pad_id`. Returns the
    context (T,) int64 and the vocabulary coverage: the fraction of the prompt's characters the
    vocabulary knows (a drift signal: it falls when the traffic is not the training text)."""
    index = {c: i for i, c in enumerate(vocab)}
    ids = [index.get(c, -1) for c in prompt]
    coverage = sum(i >= 0 for i in ids) / max(len(ids), 1)
    window = [pad_id] * max(block_size - len(ids), 0) + [i if i >= 0 else pad_id for i in ids]
    return np.array(window[-block_size:], np.int64), coverage


@dataclasses.dataclass
class Job:
    """One request's generation: context (T,), how many characters, how to sample them."""

    context: np.ndarray
    max_tokens: int
    temperature: float
    seed: int


def sample(logits: np.ndarray, temperatures: np.ndarray, rngs: list) -> np.ndarray:
    """One id per row: row i drawn from softmax(logits[i] / temperatures[i]) by inverse CDF in
    float64 with one uniform from rngs[i], or argmax where the temperature is 0. Vectorised
    over the batch (a Python loop per row would hold the GIL that the event loop needs)."""
    u = np.array([rng.random() for rng in rngs])  # (b,)
    greedy = temperatures == 0
    z = logits.astype(np.float64) / np.where(greedy, 1.0, temperatures)[:, None]  # (b, V)
    cdf = np.cumsum(np.exp(z - z.max(axis=1, keepdims=True)), axis=1)
    cdf /= cdf[:, -1:]
    drawn = np.minimum((cdf <= u[:, None]).sum(axis=1), logits.shape[1] - 1)
    return np.where(greedy, logits.argmax(axis=1), drawn)


def generate(model: Model, jobs: list[Job]) -> list[np.ndarray]:
    """Generate for every job in one batch: each step runs the rows that still want characters
    through the model at once, samples one id for each and slides its window."""
    contexts = np.stack([job.context for job in jobs])  # (B, T)
    temperatures = np.array([job.temperature for job in jobs])  # (B,)
    wanted = np.array([job.max_tokens for job in jobs])  # (B,)
    rngs = [np.random.default_rng(job.seed) for job in jobs]
    out = np.zeros((len(jobs), wanted.max()), np.int64)  # (B, N)
    for step in range(wanted.max()):
        rows = np.flatnonzero(wanted > step)  # (b,)
        ids = sample(model.logits(contexts[rows]), temperatures[rows], [rngs[r] for r in rows])
        out[rows, step] = ids
        contexts[rows] = np.concatenate([contexts[rows, 1:], ids[:, None]], axis=1)  # (b, T)
    return [out[b, :n] for b, n in enumerate(wanted)]


# ---------------------------------------------------------------------------------------------
# Classification: numpy around the exported forward pass


def encode_text(text: str, pattern: re.Pattern, index: dict, manifest: dict) -> tuple[list, float]:
    """A text as the classifier's word ids, as training encoded it: the tokenizer's words of the
    lower-cased text, unknown ones as unk_id, cut to max_length words. Returns the ids and the
    vocabulary coverage: the fraction of the text's words the vocabulary knows (drift)."""
    words = pattern.findall(text.lower() if manifest["tokenizer"]["lowercase"] else text)
    unk = manifest["unk_id"]
    ids = [index.get(w, unk) for w in words]
    coverage = sum(i != unk for i in ids) / max(len(ids), 1)
    return ids[: manifest["max_length"]], coverage


def classify(model: Model, rows: list[list]) -> list[np.ndarray]:
    """Class probabilities (softmax in float64) for every row of word ids, in one forward pass:
    the rows padded with pad_id to the batch's text_bucket, their lengths beside them."""
    lengths = np.array([len(r) for r in rows], np.int64)  # (B,)
    T = text_bucket(int(lengths.max()), model.manifest["min_length"], model.manifest["max_length"])
    ids = np.full((len(rows), T), model.pad_id, np.int64)  # (B, T)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    z = model.logits(ids, lengths).astype(np.float64)  # (B, C)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return list(p / p.sum(axis=1, keepdims=True))


# ---------------------------------------------------------------------------------------------
# Metrics and the dynamic batcher


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "week1_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "week1_request_latency_seconds",
            "request latency, arrival to response",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "week1_batch_size", "requests per model batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("week1_queue_depth", "requests waiting for a batch", registry=r)
        self.prompt_chars = Histogram(
            "week1_prompt_chars",
            "prompt (LM) or text (classifier) length in characters (input drift)",
            buckets=LENGTH_BUCKETS,
            registry=r,
        )
        self.coverage = Histogram(
            "week1_vocab_coverage",
            "fraction of the input's characters (LM) or words (classifier) in the vocabulary "
            "(drift)",
            buckets=COVERAGE_BUCKETS,
            registry=r,
        )
        self.generated = Counter("week1_generated_chars", "characters generated", registry=r)
        self.predicted = Counter(
            "week1_predictions", "texts classified, by predicted label (drift)", ["label"],
            registry=r,
        )  # fmt: skip
        self.info = Gauge(
            "week1_model_info",
            "the model served (value 1)",
            ["version", "format", "kind", "run"],
            registry=r,
        )


class Batcher:
    """Queued jobs run together: up to `max_batch` per batch, waiting at most `max_wait_s`
    after the first for more. One worker thread runs `work` (a list of jobs -> a list of their
    results: generate or classify, the model bound)."""

    def __init__(self, work, max_batch: int, max_wait_s: float, metrics: Metrics):
        self.work, self.max_batch, self.max_wait_s, self.metrics = (
            work,
            max_batch,
            max_wait_s,
            metrics,
        )
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="week1-model")
        self.accepted = self.answered = 0  # requests, counted by the handlers
        self.task = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._work())

    async def submit(self, job) -> tuple[object, int]:
        """The job's result (generated ids, class probabilities) and the size of the batch it
        ran in."""
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((job, future))
        self.metrics.queue_depth.set(self.queue.qsize())
        return await future

    async def _next_batch(self) -> list:
        batch = [await self.queue.get()]
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(left):
                    batch.append(await self.queue.get())
            except TimeoutError:
                break
        self.metrics.queue_depth.set(self.queue.qsize())
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            live = [(job, fut) for job, fut in batch if not fut.done()]  # a cancelled waiter
            if not live:
                continue
            self.metrics.batch_size.observe(len(live))
            try:
                results = await loop.run_in_executor(self.pool, self.work, [job for job, _ in live])
            except Exception as err:  # the model failed: every waiter hears it, the loop goes on
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for (_, fut), ids in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result((ids, len(live)))

    async def stop(self) -> None:
        """After uvicorn has answered every accepted request: end the worker and its thread."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.pool.shutdown(wait=True)


# ---------------------------------------------------------------------------------------------
# The app


class Guard:
    """ASGI middleware: counts every request by endpoint and status with its latency (422s and
    413s included), and refuses a body over `limit` bytes with 413 before reading it whole
    (by Content-Length, or while it streams in for a chunked body)."""

    def __init__(self, app, metrics: Metrics, limit: int = MAX_BODY_BYTES):
        self.app, self.metrics, self.limit = app, metrics, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint, start, status = scope["path"], time.perf_counter(), [500]
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._too_large(send, length.decode(errors="replace"))
            status[0] = 413
        else:
            received = [0]

            async def counted_receive():
                # A chunked body that grows past the limit: answer 413 now, and tell the app
                # the client left (whatever it answers to that is dropped below).
                message = await receive()
                received[0] += len(message.get("body", b""))
                if received[0] > self.limit and status[0] != 413:
                    status[0] = 413
                    await self._too_large(send, f"over {self.limit}")
                    return {"type": "http.disconnect"}
                return message

            async def recorded_send(message):
                if status[0] == 413:
                    return
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            await self.app(scope, counted_receive, recorded_send)
        if endpoint not in ("/metrics", "/health", "/ready"):
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    async def _too_large(self, send, length: str) -> None:
        body = json.dumps(
            {"detail": f"request body of {length} bytes; the limit is {self.limit} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def validation_message(errors: list[dict]) -> str:
    """pydantic's errors as one line: each field and its rule ("max_tokens: Input should be
    greater than or equal to 1"), or where the JSON broke."""
    problems = []
    for e in errors:
        if e["type"] == "json_invalid":
            problems.append(
                f"malformed JSON at character {e['loc'][-1]}: {e['ctx'].get('error', e['msg'])}"
            )
        else:
            field = ".".join(str(p) for p in e["loc"][1:]) or "body"
            # A validator's own sentence, without pydantic's "Value error, " before it.
            message = str(e["ctx"]["error"]) if e["type"] == "value_error" else e["msg"]
            problems.append(f"{field}: {message}")
    return "; ".join(problems)


def not_ready():
    """503: the server is starting or stopping (a load balancer sends the request elsewhere)."""
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=503, content={"detail": "not ready (starting or stopping)"})


def build_app(model: Model, max_batch: int = 32, max_wait_ms: float = 2.0):
    """The FastAPI app serving `model`: /v1/generate for a char LM (add_generate), /v1/classify
    for a classifier (add_classify), the other endpoint answering 404 with what this server
    has; `app.state.batcher` and `app.state.ready` are its state (ready is set once the model
    is warm, cleared when a stop begins)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from prometheus_client import generate_latest

    metrics = Metrics()
    source = model.manifest.get("source", {})
    metrics.info.labels(
        model.version, model.manifest["format"], model.kind, source.get("run", "")
    ).set(1)
    work = functools.partial(generate if model.kind == CHARLM else classify, model)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.get_running_loop().run_in_executor(None, warm_up, model, max_batch)
        app.state.batcher.start()
        app.state.ready = True
        yield
        app.state.ready = False
        await app.state.batcher.stop()
        b = app.state.batcher
        print(
            f"week1 serve: stopped: {b.accepted} requests accepted, {b.answered} answered",
            file=sys.stderr,
            flush=True,
        )

    app = FastAPI(title="week1 serve", lifespan=lifespan)
    app.state.ready = False
    app.state.batcher = Batcher(work, max_batch, max_wait_ms / 1000.0, metrics)
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        return JSONResponse(status_code=422, content={"detail": validation_message(err.errors())})

    @app.get("/health")
    async def health():
        return {"status": "ok", "model_version": model.version}

    @app.get("/ready")
    async def ready():
        if not app.state.ready:
            return JSONResponse(status_code=503, content={"ready": False})
        return {"ready": True, "model_version": model.version}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(generate_latest(metrics.registry).decode())

    served = ENDPOINTS[model.kind]
    (other,) = (endpoint for kind, endpoint in ENDPOINTS.items() if kind != model.kind)
    if model.kind == CHARLM:
        has = "a character LM"
    else:
        has = f"a text classifier ({', '.join(model.manifest['labels'])})"

    @app.post(other)
    async def other_kind():
        detail = f"{other} is not served here: this server has {has}; POST {served}"
        return JSONResponse(status_code=404, content={"detail": detail})

    (add_generate if model.kind == CHARLM else add_classify)(app, model, metrics)
    return Guard(app, metrics)


def add_generate(app, model: Model, metrics: Metrics) -> None:
    """POST /v1/generate: a prompt's continuation, sampled by the char LM."""
    from pydantic import BaseModel, ConfigDict, Field

    class GenerateRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
        max_tokens: int = Field(default=32, ge=1, le=MAX_TOKENS)
        temperature: float = Field(default=0.8, ge=0.0, le=2.0, allow_inf_nan=False)
        seed: int = Field(default=0, ge=0, lt=2**32)

    class GenerateResponse(BaseModel):
        text: str
        prompt_chars_used: int  # the characters of context the model saw (block_size at most)
        coverage: float  # fraction of the prompt's characters in the vocabulary
        batch_size: int  # requests in the batch this one ran in
        model_version: str

    @app.post("/v1/generate")
    async def v1_generate(body: GenerateRequest) -> GenerateResponse:
        if not app.state.ready:
            return not_ready()
        context, coverage = encode_prompt(body.prompt, model.vocab, model.block_size, model.pad_id)
        metrics.prompt_chars.observe(len(body.prompt))
        metrics.coverage.observe(coverage)
        batcher = app.state.batcher
        batcher.accepted += 1
        ids, batch_size = await batcher.submit(
            Job(context, body.max_tokens, body.temperature, body.seed)
        )
        batcher.answered += 1
        metrics.generated.inc(len(ids))
        return GenerateResponse(
            text="".join(model.vocab[i] for i in ids),
            prompt_chars_used=min(len(body.prompt), model.block_size),
            coverage=coverage,
            batch_size=batch_size,
            model_version=model.version,
        )


def add_classify(app, model: Model, metrics: Metrics) -> None:
    """POST /v1/classify: the class probabilities of one text ("text") or of several ("texts",
    each its own row in the batcher), encoded as training encoded them (encode_text)."""
    from typing import Annotated

    from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

    manifest = model.manifest
    pattern = re.compile(manifest["tokenizer"]["pattern"])
    index = {w: i for i, w in enumerate(model.vocab)}
    labels = manifest["labels"]

    def has_words(text: str) -> str:
        if not encode_text(text, pattern, index, manifest)[0]:
            raise ValueError("no words in it (only spaces)")
        return text

    Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS), AfterValidator(has_words)]

    class ClassifyRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: Text | None = None
        texts: list[Text] | None = Field(default=None, min_length=1, max_length=MAX_TEXTS)

        @model_validator(mode="after")
        def one_of_text_and_texts(self):
            if (self.text is None) == (self.texts is None):
                raise ValueError(
                    f'give "text" (a string) or "texts" (a list of 1 to {MAX_TEXTS} strings), '
                    "one of the two"
                )
            return self

    class Prediction(BaseModel):
        label: str  # the most probable class
        probabilities: dict[str, float]  # every class, in the model's order
        words_used: int  # the words the model read (max_length at most)
        coverage: float  # fraction of the text's words in the vocabulary

    class ClassifyResponse(Prediction):
        batch_size: int  # rows in the batch this text ran in
        model_version: str

    class ClassifyManyResponse(BaseModel):
        predictions: list[Prediction]
        batch_size: int  # rows in the largest batch one of these texts ran in
        model_version: str

    @app.post("/v1/classify")
    async def v1_classify(body: ClassifyRequest) -> ClassifyResponse | ClassifyManyResponse:
        if not app.state.ready:
            return not_ready()
        texts = [body.text] if body.texts is None else body.texts
        rows = []
        for text in texts:
            ids, coverage = encode_text(text, pattern, index, manifest)
            metrics.prompt_chars.observe(len(text))
            metrics.coverage.observe(coverage)
            rows.append((ids, coverage))
        batcher = app.state.batcher
        batcher.accepted += 1
        answers = await asyncio.gather(*(batcher.submit(ids) for ids, _ in rows))
        batcher.answered += 1
        predictions = []
        for (ids, coverage), (probs, _) in zip(rows, answers, strict=True):
            label = labels[int(np.argmax(probs))]
            metrics.predicted.labels(label).inc()
            probabilities = dict(zip(labels, map(float, probs), strict=True))
            predictions.append(Prediction(label=label, probabilities=probabilities,
                                          words_used=len(ids), coverage=coverage))  # fmt: skip
        batch_size = max(size for _, size in answers)
        if body.texts is None:
            return ClassifyResponse(
                **predictions[0].model_dump(), batch_size=batch_size, model_version=model.version
            )
        return ClassifyManyResponse(
            predictions=predictions, batch_size=batch_size, model_version=model.version
        )


def serve(
    path, port: int = 8000, host: str = "127.0.0.1", max_batch: int = 32, max_wait_ms: float = 2.0
) -> int:
    """`week1 serve`: load, warm, serve until SIGTERM/SIGINT, finish what was accepted."""
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise UsageError(
            f"week1 serve needs the serving extra ({err.name} is missing): "
            "pip install -c constraints.txt -e '.[serving]'"
        ) from None
    if not 1 <= max_batch <= 1024:
        raise UsageError(f"--max_batch {max_batch}: allowed 1..1024")
    if not (math.isfinite(max_wait_ms) and 0 <= max_wait_ms <= 1000):
        raise UsageError(f"--max_wait_ms {max_wait_ms}: allowed 0..1000")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: allowed 0..65535")
    folder = resolve(path)
    try:
        with socket.socket() as probe:  # say it now, not after loading and warming the model
            probe.bind((host, port))
    except OSError as err:
        raise UsageError(
            f"--port {port}: cannot listen on {host}:{port} ({err.strerror})"
        ) from None
    model = load_model(folder)
    guarded = build_app(model, max_batch, max_wait_ms)
    app = guarded.app

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            app.state.ready = False  # /ready says so at once; uvicorn then stops accepting
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        guarded,
        host=host,
        port=port,
        log_level=os.environ.get("WEEK1_SERVE_LOG", "warning"),
        timeout_graceful_shutdown=60,
        lifespan="on",
    )
    server = Server(config)
    print(
        f"week1 serve: {model.manifest['format']} model {model.version} on http://{host}:{port} "
        f"(max_batch {max_batch}, max_wait_ms {max_wait_ms:g})",
        file=sys.stderr,
        flush=True,
    )
    server.run()
    return 0 if server.started else 1
