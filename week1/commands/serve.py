"""`week1 serve <run or export folder> [--port] [--max_batch] [--max_wait_ms]`: a trained char-MLP
language model behind FastAPI on uvicorn, with dynamic batching, Prometheus metrics and a
graceful stop. The serving lab (labs/serving.py) explains the choices and drives it under load.

What a client sees:

    GET  /health        200 while the process is up (liveness)
    GET  /ready         200 once the model is loaded and warmed (every batch shape run once,
                        JAX's compilations included), 503 before and while stopping (readiness)
    POST /v1/generate   {"prompt", "max_tokens", "temperature", "seed"} -> {"text", ...}
    GET  /metrics       Prometheus text: requests by endpoint and status, latency, batch
                        size, queue depth, prompt length and vocabulary coverage (drift)

The model runs from an export folder (serving.json beside the exported file), never from the
training code: torch's export as ONNX on onnxruntime (torch is not imported), JAX's as
serialized StableHLO reloaded with jax.export. A training_loop run folder is exported into
<run>/serving first (by the serving lab's framework module).

Dynamic batching: requests wait in a queue; one worker takes the first, then more until
`max_batch` are together or `max_wait_ms` have passed since the first, and generates for all
of them in one series of forward passes (rows leave the batch as their max_tokens are done).
The model runs in one worker thread, so the event loop keeps accepting while a batch runs, and
what arrives meanwhile forms the next batch.

Limits (pydantic, answered 422 with the field and the rule): prompt 1..MAX_PROMPT_CHARS
characters, max_tokens 1..MAX_TOKENS, temperature a finite number in [0, 2] (0: greedy), seed
in [0, 2**32); a body over MAX_BODY_BYTES is refused with 413 before it is read whole.

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
import hashlib
import json
import math
import os
import pathlib
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
MAX_PROMPT_CHARS = 4096
MAX_TOKENS = 512
MAX_BODY_BYTES = 64 * 1024
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LENGTH_BUCKETS = (1, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
COVERAGE_BUCKETS = (0.5, 0.8, 0.9, 0.95, 0.99, 1.0)


# ---------------------------------------------------------------------------------------------
# The exported model, loaded without the training code


@dataclasses.dataclass
class Model:
    """An export folder loaded for inference: `logits(x)` maps (B, T) int ids to (B, V) float32
    next-character logits."""

    manifest: dict
    logits: object  # (np.ndarray (B, T) int) -> np.ndarray (B, V) float32
    version: str  # the exported file's sha256, first 12 hex digits

    @property
    def vocab(self) -> str:
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
        name = session.get_inputs()[0].name

        def logits(x):
            return session.run(None, {name: np.asarray(x, np.int64)})[0]

    elif manifest["format"] == "stablehlo":
        import jax
        from jax import export

        call = jax.jit(export.deserialize(bytearray(blob)).call)

        def logits(x):
            B = len(x)
            padded = np.zeros((bucket(B), x.shape[1]), np.int32)  # (B', T)
            padded[:B] = x
            return np.asarray(call(padded))[:B]

    else:
        raise UsageError(
            f"{manifest['path']}: format {manifest['format']!r}; known: onnx, stablehlo"
        )
    return Model(manifest, logits, version)


def bucket(n: int) -> int:
    """The batch shape that n rows run in under JAX: the next power of two, at least n."""
    return 1 << (n - 1).bit_length()


def warm_up(model: Model, max_batch: int) -> None:
    """Run every batch shape the server will use once (compiling JAX's), before /ready."""
    sizes = sorted({bucket(n) for n in range(1, max_batch + 1)})
    for size in sizes:
        model.logits(np.full((size, model.block_size), model.pad_id, np.int64))


def resolve(path) -> pathlib.Path:
    """The export folder to serve: `path` itself, a `week1 run serving` folder's export/, or a
    training_loop run folder's serving/, exported now (by the serving lab's framework module)
    unless it is there already for the run's newest intact checkpoint."""
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
    if saved.lab != "training_loop":
        raise UsageError(
            f"{path} is a {saved.lab!r} run; week1 serve serves training_loop runs (the "
            "char-MLP LM) and export folders"
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
            "prompt length in characters (input drift)",
            buckets=LENGTH_BUCKETS,
            registry=r,
        )
        self.coverage = Histogram(
            "week1_vocab_coverage",
            "fraction of prompt characters in the vocabulary (drift)",
            buckets=COVERAGE_BUCKETS,
            registry=r,
        )
        self.generated = Counter("week1_generated_chars", "characters generated", registry=r)
        self.info = Gauge(
            "week1_model_info",
            "the model served (value 1)",
            ["version", "format", "run"],
            registry=r,
        )


class Batcher:
    """Queued requests run together: up to `max_batch` per batch, waiting at most `max_wait_s`
    after the first for more. One worker thread runs the model."""

    def __init__(self, model: Model, max_batch: int, max_wait_s: float, metrics: Metrics):
        self.model, self.max_batch, self.max_wait_s, self.metrics = (
            model,
            max_batch,
            max_wait_s,
            metrics,
        )
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="week1-model")
        self.accepted = self.answered = 0
        self.task = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._work())

    async def submit(self, job: Job) -> tuple[np.ndarray, int]:
        """The job's generated ids and the size of the batch it ran in."""
        future = asyncio.get_running_loop().create_future()
        self.accepted += 1
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
                results = await loop.run_in_executor(
                    self.pool, generate, self.model, [job for job, _ in live]
                )
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
            problems.append(f"{field}: {e['msg']}")
    return "; ".join(problems)


def build_app(model: Model, max_batch: int = 32, max_wait_ms: float = 2.0):
    """The FastAPI app serving `model`; `app.state.batcher` and `app.state.ready` are its state
    (ready is set once the model is warm, cleared when a stop begins)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from prometheus_client import generate_latest
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

    metrics = Metrics()
    source = model.manifest.get("source", {})
    metrics.info.labels(model.version, model.manifest["format"], source.get("run", "")).set(1)

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
    app.state.batcher = Batcher(model, max_batch, max_wait_ms / 1000.0, metrics)
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

    @app.post("/v1/generate")
    async def v1_generate(body: GenerateRequest) -> GenerateResponse:
        if not app.state.ready:
            return JSONResponse(
                status_code=503, content={"detail": "not ready (starting or stopping)"}
            )
        context, coverage = encode_prompt(body.prompt, model.vocab, model.block_size, model.pad_id)
        metrics.prompt_chars.observe(len(body.prompt))
        metrics.coverage.observe(coverage)
        batcher = app.state.batcher
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

    return Guard(app, metrics)


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
