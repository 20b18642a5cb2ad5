"""`week1 serve` against a real server on 127.0.0.1, started and stopped by the tests (bounded in
time): readiness, generation, batching, metrics, and the faults of labs/serving.py's handout:
bad requests get a 4xx with a message and the server keeps serving, a client that hangs up
does not wedge the batcher, SIGTERM under load loses no accepted request. Then the same server
on a classifier export: /v1/classify, its bad requests, its metrics, a cnn_classifier run folder.

The models are a small char-MLP and a small KimCNN exported by the torch lab module (ONNX on
onnxruntime: the server process imports no framework, so it starts in a second or two).
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

import numpy as np
import pytest
import torch

from labs import serving as spec
from week1 import charlm
from week1.cli import main
from week1.commands import serve
from week1.config import as_dict
from week1.data import labelled
from week1.tolerances import F32, assert_close
from week1_torch import serving as torch_lab
from week1_torch.lib import charlm as torch_lm
from week1_torch.lib.models import KimCNN

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


def serving(folder, tmp_path_factory):
    """A server on `folder` for a module's tests (yields its URL), stopped by SIGTERM after
    them: it must exit as a stop by that signal does."""
    log = tmp_path_factory.mktemp("log") / "server.log"
    running = start(folder, log)
    yield running.url
    status = spec.stop_server(running.process, timeout_s=30.0)
    assert status == 128 + signal.SIGTERM, log.read_text()[-2000:]


@pytest.fixture(scope="module")
def server(folder, tmp_path_factory):
    yield from serving(folder, tmp_path_factory)


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


# --- a classifier export: POST /v1/classify ------------------------------------------------

CLS = spec.Classifier("polarity", split_seed=0, min_count=2, max_vocab=30000, n_embd=8,
                      n_maps=4, max_length=32)  # fmt: skip


@pytest.fixture(scope="module")
def classifier_folder(extra, tmp_path_factory):
    corpus = spec.load_labelled(CLS)
    torch.manual_seed(0)
    model = KimCNN(corpus.vocab.size, CLS.n_embd, CLS.n_maps, corpus.num_classes,
                   widths=spec.WIDTHS, init_range=0.25, dropout=0.0)  # fmt: skip
    out = tmp_path_factory.mktemp("classifier")
    return torch_lab.export(model, out, spec.Source(CLS, "test", "torch", 0))


@pytest.fixture(scope="module")
def classifier_server(classifier_folder, tmp_path_factory):
    yield from serving(classifier_folder, tmp_path_factory)


def classify(url, **body):
    return httpx.post(f"{url}/v1/classify", json=body, timeout=30.0)


def expected(folder, texts: list[str]) -> list[np.ndarray]:
    """The export's class probabilities for `texts`, one at a time, computed here with the
    server's own functions (encode_text, classify)."""
    model = serve.load_model(folder)
    manifest = model.manifest
    pattern = re.compile(manifest["tokenizer"]["pattern"])
    index = {w: i for i, w in enumerate(manifest["vocab"])}
    return [
        serve.classify(model, [serve.encode_text(t, pattern, index, manifest)[0]])[0] for t in texts
    ]


def test_classify_answers_a_label_and_the_probabilities_of_the_export(
    classifier_server, classifier_folder
):
    text = "A gorgeous, moving film; the best of the year."
    answer = classify(classifier_server, text=text)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    (want,) = expected(classifier_folder, [text])
    labels = list(labelled.POLARITY_LABELS)
    assert list(got["probabilities"]) == labels
    assert_close("classify", "probabilities", np.array(list(got["probabilities"].values())), want,
                 F32)  # fmt: skip
    assert got["label"] == labels[int(np.argmax(want))]
    assert got["words_used"] == 12 and got["coverage"] == 1.0
    assert got["model_version"] == serve.load_model(classifier_folder).version


def test_classify_many_texts_in_one_request(classifier_server, classifier_folder):
    """ "texts": one prediction per text, in order; a text over max_length words is cut there."""
    texts = ["Dull.", "A triumph of a film!", "word " * 100, "zzzqqq xxyyzz"]
    got = classify(classifier_server, texts=texts).json()
    predictions = got["predictions"]
    assert [p["words_used"] for p in predictions] == [2, 6, CLS.max_length, 2]
    assert predictions[3]["coverage"] == 0.0  # no word in the vocabulary
    for p, want in zip(predictions, expected(classifier_folder, texts), strict=True):
        assert_close("classify texts", "probabilities", np.array(list(p["probabilities"].values())),
                     want, F32)  # fmt: skip
    assert 1 <= got["batch_size"] <= MAX_BATCH


BAD_CLASSIFY = [
    ("empty text", b'{"text": ""}', 422, "text: String should have at least 1 character"),
    ("only spaces", b'{"text": "   "}', 422, "text: no words in it"),
    ("too long", b'{"text": "' + b"a" * (serve.MAX_TEXT_CHARS + 1) + b'"}', 422,
     "text: String should have at most 32768 characters"),
    ("a number", b'{"text": 5}', 422, "text: Input should be a valid string"),
    ("texts a string", b'{"texts": "good"}', 422, "texts: Input should be a valid list"),
    ("texts empty", b'{"texts": []}', 422, "texts: List should have at least 1 item"),
    ("a text in texts empty", b'{"texts": ["good", ""]}', 422, "texts.1: String should have"),
    ("neither", b'{}', 422, 'body: give "text" \\(a string\\) or "texts"'),
    ("both", b'{"text": "a", "texts": ["b"]}', 422, 'body: give "text"'),
    ("a list body", b'["good"]', 422, "body: Input should be a valid dictionary"),
    ("malformed JSON", b'{"text": "good', 422, "malformed JSON"),
    ("unknown field", b'{"text": "good", "top_k": 1}', 422, "top_k: Extra inputs"),
    ("10 MB body", b'{"text": "' + b"a" * 10_000_000 + b'"}', 413, "limit is 65536 bytes"),
]  # fmt: skip


@pytest.mark.parametrize(
    "body, status, message", [b[1:] for b in BAD_CLASSIFY], ids=[b[0] for b in BAD_CLASSIFY]
)
def test_a_bad_classify_request_gets_a_4xx_with_a_message_and_the_server_keeps_serving(
    classifier_server, body, status, message
):
    response = httpx.post(f"{classifier_server}/v1/classify", content=body, headers=JSON,
                          timeout=30.0)  # fmt: skip
    assert response.status_code == status
    assert re.search(message, response.json()["detail"]), response.json()
    assert classify(classifier_server, text="good").status_code == 200


def test_the_endpoint_of_the_other_kind_of_model_is_a_404_naming_the_right_one(
    server, classifier_server
):
    lm = httpx.post(f"{server}/v1/classify", json={"text": "good"}, timeout=30.0)
    assert lm.status_code == 404
    assert "has a character LM; POST /v1/generate" in lm.json()["detail"]
    cls = generate(classifier_server, prompt="ROMEO:")
    assert cls.status_code == 404
    assert "text classifier (rotten, fresh); POST /v1/classify" in cls.json()["detail"]


async def _concurrent_classify(url, n):
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        return await asyncio.gather(
            *(client.post("/v1/classify", json={"text": f"film number {i}"}) for i in range(n))
        )


def test_classify_requests_share_batches_and_the_metrics_count_them(classifier_server):
    before = httpx.get(f"{classifier_server}/metrics").text
    responses = asyncio.run(_concurrent_classify(classifier_server, 24))
    assert all(r.status_code == 200 for r in responses)
    sizes = [r.json()["batch_size"] for r in responses]
    assert max(sizes) > 1 and max(sizes) <= MAX_BATCH, sizes
    text = httpx.get(f"{classifier_server}/metrics").text

    def predicted(text):
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("week1_predictions_total{")
        )

    assert predicted(text) == predicted(before) + 24
    assert 'kind="classifier"' in text  # week1_model_info
    ok = 'week1_requests_total{endpoint="/v1/classify",status="200"}'
    assert metric(text, ok) >= 24


def test_a_cnn_classifier_run_folder_is_exported_checked_then_served(extra, tmp_path):
    """`week1 serve RUN_DIR` on a cnn_classifier run: its newest checkpoint exported into
    RUN_DIR/serving (checked against the eager model on the way), the manifest names the kind,
    classes, lengths and vocabulary, and the served logits are the trained model's."""
    from labs import cnn_classifier as cnn_spec
    from week1 import loop
    from week1_torch import cnn_classifier as cnn_lab

    cfg = cnn_spec.Config(steps=2, batch_size=8, n_embd=8, n_maps=4, max_length=32,
                          warmup_steps=1, eval_every=2, eval_batch_size=64)  # fmt: skip
    data = cnn_spec.load_data(cfg)
    ctx = loop.Context(checkpoint_dir=tmp_path / "checkpoints")
    model, _ = cnn_lab.train(cfg, data, ctx=ctx)
    config = {"lab": "cnn_classifier", "framework": "torch", "config": as_dict(cfg)}
    (tmp_path / "config.json").write_text(json.dumps(config))
    folder = serve.resolve(tmp_path)
    assert folder == tmp_path / "serving"
    manifest = serve.read_manifest(folder)
    assert manifest["kind"] == "classifier" and manifest["labels"] == ["rotten", "fresh"]
    assert manifest["max_length"] == 32 and manifest["vocab"] == list(data.corpus.vocab.words)
    assert (manifest["source"]["step"], manifest["source"]["run"]) == (2, tmp_path.name)
    ids, lengths = spec.classifier_batches(spec.read_run(tmp_path)[0])[2]
    served = serve.load_model(folder).logits(ids, lengths)
    eager = torch_lab.eager_logits(model, ids, lengths)  # dropout off
    assert_close("serve cnn_classifier RUN_DIR", "logits", served, eager, F32)
