"""`week1 serve` against a real server on 127.0.0.1, started and stopped by the tests (bounded in
time): readiness, generation, batching, metrics, and the faults of labs/serving.py's handout:
bad requests get a 4xx with a message and the server keeps serving, a client that hangs up
does not wedge the batcher, SIGTERM under load loses no accepted request.

The model is a small char-MLP exported by the torch lab module (ONNX on onnxruntime: the
server process imports no framework, so it starts in a second or two).
"""

import asyncio
import dataclasses
import hashlib
import json
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from labs import serving as spec
from week1 import charlm
from week1.cli import main
from week1.commands import serve
from week1.config import as_dict
from week1.tolerances import F32, assert_close
from week1_torch import serving as torch_lab
from week1_torch.lib import charlm as torch_lm

try:
    import httpx
except ImportError:  # no serving extra: the tests that need it skip (the `extra` fixture)
    httpx = None

EXTRA = ("fastapi", "uvicorn", "httpx", "onnxruntime", "onnxscript", "prometheus_client")
CFG = charlm.Config(n_hidden=32, n_embd=8)  # small: the server's speed is not under test here
MAX_BATCH = 8
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def extra():
    for name in EXTRA:
        pytest.importorskip(name)


@pytest.fixture(scope="module")
def folder(extra, tmp_path_factory):
    model = torch_lm.build_model(CFG, spec.load_corpus().vocab_size)
    out = tmp_path_factory.mktemp("export")
    return torch_lab.export(model, out, spec.Source(CFG, "test", "torch", 0))


def start(folder, log_path):
    return spec.start_server(folder, MAX_BATCH, 2.0, log_path, timeout_s=60.0)


@pytest.fixture(scope="module")
def server(folder, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "server.log"
    running = start(folder, log)
    yield running.url
    status = spec.stop_server(running.process, timeout_s=30.0)
    assert status == 128 + signal.SIGTERM, log.read_text()[-2000:]


def generate(url, timeout=30.0, **body):
    return httpx.post(f"{url}/v1/generate", json=body, timeout=timeout)


def test_health_ready_and_the_model_version(server, folder):
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    ready = httpx.get(f"{server}/ready")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == serve.load_model(folder).version


def test_served_text_is_what_the_export_generates(server, folder):
    """Greedy and sampled generation over HTTP equal serve.generate on the same export run here
    (the same numpy sampling, seeded per request)."""
    model = serve.load_model(folder)
    for temperature in (0.0, 0.9):
        body = {"prompt": "ROMEO:", "max_tokens": 20, "temperature": temperature, "seed": 7}
        answer = generate(server, **body).json()
        context, _ = serve.encode_prompt("ROMEO:", model.vocab, model.block_size, model.pad_id)
        (ids,) = serve.generate(model, [serve.Job(context, 20, temperature, 7)])
        assert answer["text"] == "".join(model.vocab[i] for i in ids)
        assert len(answer["text"]) == 20


BAD = [
    ("malformed JSON", b'{"prompt": "ROMEO', 422, "malformed JSON"),
    ("empty prompt", b'{"prompt": ""}', 422, "prompt: String should have at least 1"),
    ("negative max_tokens", b'{"prompt": "a", "max_tokens": -3}', 422, "max_tokens"),
    ("NaN temperature", b'{"prompt": "a", "temperature": NaN}', 422, "temperature: .*finite"),
    ("unknown field", b'{"prompt": "a", "top_k": 5}', 422, "top_k: Extra inputs"),
    ("10 MB body", b'{"prompt": "' + b"a" * 10_000_000 + b'"}', 413, "limit is 65536 bytes"),
]


@pytest.mark.parametrize("body, status, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_request_gets_a_4xx_with_a_message_and_the_server_keeps_serving(
    server, body, status, message
):
    response = httpx.post(f"{server}/v1/generate", content=body, headers=JSON, timeout=30.0)
    assert response.status_code == status
    assert re.search(message, response.json()["detail"]), response.json()
    assert generate(server, prompt="ROMEO:", max_tokens=3).status_code == 200


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(server):
    chunks = (b"x" * 16384 for _ in range(64))  # 1 MB, no Content-Length
    response = httpx.post(f"{server}/v1/generate", content=chunks, headers=JSON, timeout=30.0)
    assert response.status_code == 413
    assert generate(server, prompt="a", max_tokens=2).status_code == 200


async def _concurrent(url, n, **body):
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        return await asyncio.gather(
            *(client.post("/v1/generate", json={**body, "seed": i}) for i in range(n))
        )


def test_concurrent_requests_run_in_batches_of_at_most_max_batch(server):
    responses = asyncio.run(_concurrent(server, 24, prompt="To be", max_tokens=32))
    sizes = [r.json()["batch_size"] for r in responses]
    assert all(r.status_code == 200 for r in responses)
    assert max(sizes) > 1 and max(sizes) <= MAX_BATCH, sizes


def metric(text: str, name: str) -> float:
    """The value of one sample line ("name{labels} value") of Prometheus text."""
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.rsplit(" ", 1)[1])


def test_metrics_count_requests_latency_batches_queue_and_drift(server):
    before = httpx.get(f"{server}/metrics").text
    generate(server, prompt="\u20ac" * 10, max_tokens=2)  # no character in the vocabulary
    generate(server, prompt="", max_tokens=2)
    text = httpx.get(f"{server}/metrics").text
    low = 'week1_vocab_coverage_bucket{le="0.5"}'
    assert metric(text, low) == metric(before, low) + 1
    invalid = 'week1_requests_total{endpoint="/v1/generate",status="422"}'
    assert metric(text, invalid) >= 1
    for name in (
        'week1_request_latency_seconds_count{endpoint="/v1/generate"}',
        "week1_batch_size_count",
        "week1_prompt_chars_count",
    ):
        assert metric(text, name) > 0, name
    assert metric(text, "week1_queue_depth") == 0


def hang_up(url: str, body: bytes, sent: int) -> None:
    """Send a POST whose body is `body` but only its first `sent` bytes, then close the
    connection without reading the answer."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        "POST /v1/generate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5.0) as conn:
        conn.sendall(head.encode() + body[:sent])


def test_clients_that_hang_up_do_not_wedge_the_batcher(server):
    """20 clients leave right after sending long requests (queued, generated for nobody), 5
    leave halfway through their body; then a new request is answered and the queue drains."""
    body = json.dumps({"prompt": "ROMEO:", "max_tokens": 512}).encode()
    for k in range(25):
        hang_up(server, body, len(body) if k < 20 else len(body) // 2)
    start = time.perf_counter()
    assert generate(server, timeout=30.0, prompt="ROMEO:", max_tokens=4).status_code == 200
    while metric(httpx.get(f"{server}/metrics").text, "week1_queue_depth") > 0:
        assert time.perf_counter() - start < 30.0, "the queue did not drain"
        time.sleep(0.1)


async def _load_until_refused(url, clients: int, stop_after_s: float):
    """`clients` loops of requests until the server refuses the connection; returns the status
    of every response and the number of transport errors (requests never answered)."""
    statuses, errors = [], [0]
    start = time.perf_counter()

    async def loop(client):
        while time.perf_counter() - start < stop_after_s:
            try:
                r = await client.post("/v1/generate", json={"prompt": "To be", "max_tokens": 64})
            except httpx.TransportError:
                errors[0] += 1
                return
            statuses.append(r.status_code)

    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        await asyncio.gather(*(loop(client) for _ in range(clients)))
    return statuses, errors[0]


def test_sigterm_under_load_answers_every_accepted_request(folder, tmp_path):
    log = tmp_path / "server.log"
    running = start(folder, log)

    async def scenario():
        load = asyncio.create_task(_load_until_refused(running.url, 32, stop_after_s=20.0))
        await asyncio.sleep(1.0)
        running.process.send_signal(signal.SIGTERM)
        return await load

    statuses, errors = asyncio.run(scenario())
    status = running.process.wait(30)
    text = log.read_text()
    accepted, answered = map(
        int, re.search(r"(\d+) requests accepted, (\d+) answered", text).groups()
    )
    assert status == 128 + signal.SIGTERM, text[-2000:]
    assert set(statuses) <= {200, 503}, statuses  # 503: arrived while stopping, not accepted
    assert accepted == answered == statuses.count(200) > 0, (accepted, answered, statuses)
    assert errors > 0  # the clients saw the server go: the load did run into the stop
    with pytest.raises(httpx.ConnectError):  # and nothing listens any more
        generate(running.url, prompt="a")


def test_a_training_loop_run_folder_is_exported_then_served(extra, tmp_path):
    """`week1 serve RUN_DIR`: the run's newest checkpoint, exported into RUN_DIR/serving, kept
    while it is the newest, exported again once the run has a newer one."""
    from week1 import loop

    cfg = charlm.Config(steps=2, n_hidden=32, n_embd=8, warmup_steps=1, eval_batches=1)
    data = charlm.load_data(cfg)
    model, _ = torch_lm.train(cfg, data, ctx=loop.Context(checkpoint_dir=tmp_path / "checkpoints"))
    config = {"lab": "training_loop", "framework": "torch", "config": as_dict(cfg)}
    (tmp_path / "config.json").write_text(json.dumps(config))
    folder = serve.resolve(tmp_path)
    assert folder == tmp_path / "serving"
    source = serve.read_manifest(folder)["source"]  # what versions the served model
    assert (source["framework"], source["run"], source["step"]) == ("torch", tmp_path.name, 2)
    assert source["data_ids_sha256"] == hashlib.sha256(data.corpus.ids.tobytes()).hexdigest()
    x = spec.check_batches(spec.load_corpus(), cfg.block_size)[1]
    served, eager = serve.load_model(folder).logits(x), torch_lab.eager_logits(model, x)
    assert_close("serve RUN_DIR", "logits", served, eager, F32)
    written = (folder / "model.onnx").stat().st_mtime_ns
    assert (
        serve.resolve(tmp_path) == folder and (folder / "model.onnx").stat().st_mtime_ns == written
    )
    longer = dataclasses.replace(cfg, steps=3)
    ctx = loop.Context(checkpoint_dir=tmp_path / "checkpoints", resume=True)
    torch_lm.train(longer, data, ctx=ctx)
    assert serve.read_manifest(serve.resolve(tmp_path))["source"]["step"] == 3
    assert not (tmp_path / "serving.tmp").exists()


def test_bad_command_lines_are_one_line_usage_errors(extra, tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert "neither an export folder" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--max_batch", "0"]) == 2
    assert "--max_batch 0" in capsys.readouterr().err


def test_the_cli_and_the_lab_modules_import_without_the_serving_extra():
    """Only `week1 serve` and the serving lab's run need the extra, and they import it when
    called: the command line (and `week1 list`) work without it. (The framework modules
    import onnxruntime inside reload() alone.)"""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {EXTRA!r}:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import week1.cli, week1.commands.serve, labs.serving\n"
        "sys.exit(week1.cli.main(['list']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "serving" in result.stdout
