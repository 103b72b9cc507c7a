"""`distillrl serve-teacher` facing a hostile client, on loopback with real sockets: one server process (a tiny
Qwen3 whose head is padded past its tokenizer, an API key, a 1 s request timeout, a queue of 4) takes slowloris
connections, a flood, a 100 MiB body, a short body, oversize and malformed requests; each is refused or dropped
in bounded time, with bounded memory, no traceback and (with --log-requests) one log line per request, while good
requests are answered with the local teacher's log-probs."""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch
from test_remote_teacher import scored
from user_models import save_user_model

from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.scoring.frozen import FrozenScorer
from distillrl.scoring.remote import RemoteTeacher, ServerError
from distillrl.scoring.teachers import LocalTeacher
from distillrl.text.sequences import encode_pairs

KEY = "s3cret-key"
PADDED_ROWS = 64
REQUEST_TIMEOUT = 3.0
MAX_ANSWER_ENTRIES = 3000


class Served:
    """A serve-teacher process (with --log-requests unless `log_requests` is False): its URL, port, and the lines of
    its stderr (read on a thread)."""

    def __init__(self, model: str, log_requests: bool = True):
        env = os.environ | {"DISTILLRL_API_KEY": KEY}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "distillrl.cli", "serve-teacher", "--model", model, "--port", "0", "--device", "cpu",
             "--request-timeout", str(REQUEST_TIMEOUT), "--max-queue", "4", "--max-logprobs", "400",
             "--max-answer-entries", str(MAX_ANSWER_ENTRIES), *(["--log-requests"] if log_requests else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        started = time.monotonic()
        progress = [self.process.stderr.readline()]  # at once "loading ...", then once loaded "loaded ... in N s"
        first_line = time.monotonic() - started
        while not progress[-1].startswith("loaded ") and progress[-1] and len(progress) < 20:
            progress.append(self.process.stderr.readline())
        assert progress[0] == f"loading {model} (fp32, device cpu) ...\n", progress
        assert first_line < 0.6 * (time.monotonic() - started), progress  # before torch is imported, not after
        assert re.fullmatch(rf"loaded {re.escape(model)} onto cpu in \d+\.\d s \(\d+ token ids\)\n", progress[-1]), \
            progress  # fmt: skip
        line = self.process.stdout.readline()
        if "http://" not in line:
            self.process.kill()
            raise AssertionError(f"serve-teacher did not start: {line}{self.process.stderr.read()}")
        assert "requests need the API key" in line
        self.url = line.split(" at ")[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True).start()

    def rss_kb(self, field: str = "VmRSS") -> int:
        status = open(f"/proc/{self.process.pid}/status").read()
        return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1))

    def request(self, method: str, path: str, body: bytes | dict | None = None, key: str | None = KEY,
                headers: dict | None = None, timeout: float = 10) -> tuple[int, dict, dict]:  # fmt: skip
        """(status, JSON answer or {}, headers) of one request."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            sent = (headers or {}) | ({"Authorization": f"Bearer {key}"} if key else {})
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            answer = response.read()
            return response.status, json.loads(answer) if answer else {}, {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_user_model(tmp_path_factory.mktemp("padded") / "qwen3", padded_rows=PADDED_ROWS)


@pytest.fixture(scope="module")
def served(model_path):
    server = Served(model_path)
    yield server
    server.process.kill()
    server.process.wait()


def completion(prompt: list[list[int]], k: int = 2) -> dict:
    return {"prompt": prompt, "max_tokens": 1, "prompt_logprobs": k}


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Everything a raw exchange gets back until the server closes (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_the_api_key_guards_every_endpoint_but_health(served, model_path, monkeypatch):
    for key in (None, "wrong", KEY[:-1]):
        for method, path, body in [("GET", "/v1/models", None), ("POST", "/v1/completions", completion([[1, 2]])),
                                   ("POST", "/tokenize", {"prompt": "hi"}), ("GET", "/nothing", None)]:  # fmt: skip
            status, answer, headers = served.request(method, path, body, key=key)
            assert (status, headers.get("www-authenticate")) == (401, "Bearer"), (key, path)
            assert answer["error"]["message"] == "this server needs its API key: Authorization: Bearer KEY"
    assert served.request("GET", "/health", key=None)[0] == 200  # liveness probes need no key
    assert served.request("GET", "/v1/models")[0] == 200
    assert served.request("POST", "/tokenize", {"prompt": "hi"})[1]["count"] > 0
    assert served.request("GET", "/nothing")[0] == 404

    tokenizer = load_tokenizer(model_path)
    with pytest.raises(ServerError) as refused:
        RemoteTeacher(served.url, retries=0).check(tokenizer)
    assert str(refused.value) == (f"teacher.server {served.url}: GET /v1/models was refused (HTTP 401: "
                                  '{"error": {"message": "this server needs its API key: Authorization: Bearer KEY", '
                                  '"type": "Unauthorized", "code": 401}}); set teacher.server_api_key_env to the name of '
                                  "an environment variable that holds its API key")  # fmt: skip
    monkeypatch.delenv("TEACHER_KEY", raising=False)
    with pytest.raises(ServerError, match="^teacher.server_api_key_env: the environment variable TEACHER_KEY is not "
                                          f"set \\(it should hold the API key of {served.url}\\)$"):  # fmt: skip
        RemoteTeacher(served.url, api_key_env="TEACHER_KEY")
    monkeypatch.setenv("TEACHER_KEY", "wrong")
    with pytest.raises(ServerError, match=r"HTTP 401: .*; is the key in \$TEACHER_KEY \(teacher.server_api_key_env\)"):
        RemoteTeacher(served.url, retries=0, api_key_env="TEACHER_KEY").check(tokenizer)
    monkeypatch.setenv("TEACHER_KEY", KEY)
    remote = RemoteTeacher(served.url, retries=0, api_key_env="TEACHER_KEY")
    remote.check(tokenizer)
    assert remote.model == model_path and remote.vocab_size == len(tokenizer)


def user_sequences(tokenizer):
    prompts = ["The quick brown fox", "Hello world, ", "A teacher scores", "Numbers: 1 2 3"]
    return encode_pairs(tokenizer, prompts, [" jumps over the lazy dog.", "again!", " tokens.", " 4 5 6"])


def test_a_padded_head_is_served_over_the_tokenizers_range_as_the_local_teacher_scores_it(served, model_path,
                                                                                       monkeypatch):  # fmt: skip
    tokenizer, model = load_tokenizer(model_path), load_causal_lm(model_path)
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer) + PADDED_ROWS
    monkeypatch.setenv("TEACHER_KEY", KEY)
    remote = RemoteTeacher(served.url, api_key_env="TEACHER_KEY", rows_per_request=2)
    remote.check(tokenizer)
    local = LocalTeacher(FrozenScorer(model, vocab_size=len(tokenizer)))
    sequences = user_sequences(tokenizer)
    remote_lp, remote_ids, remote_values = scored(remote, sequences, 5)
    local_lp, local_ids, local_values = scored(local, sequences, 5)
    assert len(remote_lp) == len(sequences.target_ids) > 10
    torch.testing.assert_close(remote_lp, local_lp, atol=1e-5, rtol=0)
    assert torch.equal(remote_ids, local_ids)
    torch.testing.assert_close(remote_values[:, :-1], local_values[:, :-1], atol=1e-5, rtol=0)

    # every token of the tokenizer at a few positions: probabilities summing to 1, no padding row among them
    prompt = tokenizer("The quick brown fox")["input_ids"][:4]  # 3 positions x V + 1 entries: within the cap
    status, answer, _ = served.request("POST", "/v1/completions", completion([prompt], k=len(tokenizer)))
    assert status == 200
    for entry in answer["choices"][0]["prompt_logprobs"][1:]:
        ids = [int(token) for token in entry]
        assert sorted(ids) == list(range(len(tokenizer)))  # ranks 1..V over the tokenizer's ids only
        assert sum(torch.tensor([v["logprob"] for v in entry.values()], dtype=torch.float64).exp()) == pytest.approx(
            1, abs=1e-5)  # fmt: skip


def test_slowloris_and_a_flood_leave_a_good_request_answered_within_2_s(served):
    """300 connections that send a partial head and trickle one header line every 0.2 s, and 1,000 concurrent
    requests: the flood is answered (200 or 503 with Retry-After: none reset), /v1/models answers in under 2 s
    during it, and a scoring request in under 2 s after it; the server drops the trickling connections at the
    head deadline."""
    slow = [socket.create_connection(("127.0.0.1", served.port), timeout=5) for _ in range(300)]
    for sock in slow:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    stop = threading.Event()
    dropped = []

    def trickle():
        for _ in range(100):  # 20 s at most
            for sock in slow:
                if sock not in dropped:
                    try:
                        sock.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        dropped.append(sock)
            if stop.wait(0.2):
                return

    trickler = threading.Thread(target=trickle)
    trickler.start()
    body = json.dumps(completion([[1, 2, 3, 4]])).encode()
    request = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: "
               f"application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body  # fmt: skip

    async def one() -> str:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), 20)
            writer.close()
            head = answer.split(b"\r\n\r\n")[0].decode()
            return head.split()[1] + (" retry" if "retry-after: 1" in head.lower() else "") if head else "empty"
        except OSError as error:
            return type(error).__name__

    async def flood() -> list[str]:
        return await asyncio.gather(*(one() for _ in range(1000)))

    receiving, sending = multiprocessing.get_context("fork").Pipe(duplex=False)

    def run_flood() -> None:  # in its own process: the measuring client below does not share its interpreter
        started = time.monotonic()
        outcomes = asyncio.run(flood())
        sending.send((outcomes, time.monotonic() - started))

    flooding = multiprocessing.get_context("fork").Process(target=run_flood)
    try:
        flooding.start()
        time.sleep(0.3)
        started = time.monotonic()
        assert served.request("GET", "/v1/models", timeout=5)[0] == 200
        during = time.monotonic() - started
        assert receiving.poll(60), "the flood did not end"
        results, flood_seconds = receiving.recv()
        flooding.join(10)
        started = time.monotonic()
        status, answer, _ = served.request("POST", "/v1/completions", completion([[5, 6, 7, 8]]), timeout=5)
        after = time.monotonic() - started
        assert status == 200 and len(answer["choices"][0]["prompt_logprobs"]) == 4
        time.sleep(REQUEST_TIMEOUT + 0.5)  # past the head deadline of every trickling connection
    finally:
        stop.set()
        trickler.join()
        for sock in slow:
            sock.close()
    print(f"during the flood: /v1/models in {during:.3f} s; after it: a scoring request in {after:.3f} s; "
          f"flood: {({r: results.count(r) for r in set(results)})} in {flood_seconds:.2f} s; dropped: {len(dropped)}")
    assert during < 2 and after < 2
    assert len(results) == 1000 and set(results) <= {"200", "503 retry"} and results.count("200") >= 4
    assert len(dropped) == 300  # each closed by the server once its head was late


def test_a_100_mib_body_is_refused_with_bounded_memory(served):
    """Declared (Content-Length) or streamed (chunked, no length): 413 and the connection closed, and the server's
    peak memory grows by less than 50 MB."""
    peak = served.rss_kb("VmHWM")
    head = f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
    chunk = b"[" + b"1," * (1 << 19)  # 1 MiB of a JSON array, never closed

    for framing in (f"Content-Length: {100 << 20}\r\n\r\n", "Transfer-Encoding: chunked\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall((head + framing).encode())
            answered = []
            reader = threading.Thread(target=lambda: answered.append(sock.recv(65536)))
            reader.start()
            sent = 0
            try:
                for _ in range(100):
                    piece = chunk if "Length" in framing else b"%x\r\n" % len(chunk) + chunk + b"\r\n"
                    sock.sendall(piece)
                    sent += len(chunk)
            except OSError:  # the server closed the connection after its 413
                pass
            reader.join(10)
        assert answered and answered[0].startswith(b"HTTP/1.1 413 "), answered
        assert sent < 100 << 20 or "Length" in framing  # the chunked body was cut off
    growth = served.rss_kb("VmHWM") - peak
    print(f"peak RSS growth for two 100 MiB bodies: {growth / 1024:.1f} MB")
    assert growth < 50 << 10


def test_a_short_body_is_dropped_at_the_body_deadline(served):
    started = time.monotonic()
    answer = raw(served.port, (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                               "Content-Length: 100\r\n\r\n{\"prompt\": ").encode(), timeout=10)  # fmt: skip
    waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ") and b"the body did not arrive within 3 s (--request-timeout)" in answer
    assert REQUEST_TIMEOUT <= waited < REQUEST_TIMEOUT + 1.5  # then closed: raw() read until the server closed


def test_requests_are_logged_only_with_log_requests(served, model_path):
    quiet = Served(model_path, log_requests=False)
    try:
        assert quiet.request("GET", "/v1/models")[0] == 200 and quiet.request("GET", "/nothing")[0] == 404
    finally:
        quiet.process.terminate()
        quiet.process.wait()
    assert not [line for line in quiet.lines if line.startswith(("GET ", "POST "))], quiet.lines
    served.lines.clear()
    assert served.request("GET", "/v1/models")[0] == 200
    time.sleep(0.2)
    assert any(re.fullmatch(r"GET /v1/models 200 rows=- tokens=- \d+\.\d ms\n", line) for line in served.lines)


def test_oversize_and_malformed_requests_get_a_clean_4xx_and_one_log_line_each(served, model_path):
    served.lines.clear()
    padding_id = len(load_tokenizer(model_path))  # the first padded row
    prompt = list(range(1, 101))  # 99 scored positions x 21 entries = 2079 per row; 3000 at most
    status, answer, _ = served.request("POST", "/v1/completions", completion([prompt] * 4, k=20))
    assert status == 413
    assert answer["error"]["message"] == ("the answer would hold 8316 log-probs (4 rows x positions x up to 21), "
                                          "more than 3000 (--max-answer-entries); send at most 1 rows of up to 100 "
                                          "tokens per request (teacher.server_rows_per_request)")  # fmt: skip
    status, answer, _ = served.request("POST", "/tokenize", {"prompt": "x" * (1 << 19)})
    assert (status, answer["error"]["message"]) == (413, "prompt: 524288 characters, more than 262144 for /tokenize")
    bad = {
        "1-token prompt": (json.dumps(completion([[5]])), 400, "prompt[0]: 1 token; a prompt needs 2 or more"),
        "nested JSON": ("[" * 100_000 + "]" * 100_000, 400, "the body is not valid JSON"),
        "nested object": ('{"prompt": ' + "[" * 50_000 + "]" * 50_000 + "}", 400, "the body is not valid JSON"),
        "float ids": (json.dumps(completion([[1.5, 2]])), 400, "prompt: expected a non-empty list of token ids"),
        "string k": (json.dumps({"prompt": [[1, 2]], "prompt_logprobs": "5"}), 400, "prompt_logprobs: expected"),
        "list k": (json.dumps({"prompt": [[1, 2]], "prompt_logprobs": [5] * 1000}), 400, "prompt_logprobs: expected"),
        "negative id": (json.dumps(completion([[1, -2]])), 400, "prompt[0]: token id -2 is outside the vocabulary"),
        "padding id": (json.dumps(completion([[1, padding_id]])), 400, f"prompt[0]: token id {padding_id} is outside"),
        "array": ("[1, 2]", 400, "the body must be a JSON object"),
        "not utf-8": (b"\xff\xfe{}", 400, "the body is not valid JSON"),
    }
    for case, (body, want_status, message) in bad.items():
        data = body if isinstance(body, bytes) else body.encode()
        status, answer, _ = served.request("POST", "/v1/completions", data)
        assert status == want_status and message in answer["error"]["message"], (case, status, answer)
    request = f"POST /tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n"
    answer = raw(served.port, f"{request}Content-Length: 12x\r\n\r\n{{}}".encode())  # h11 refuses it
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(b"Invalid HTTP request received."), answer[:200]
    try:  # a 1 MiB head: h11 refuses it past 16 KiB and closes (with unread data: a reset, often before the 400)
        answer = raw(served.port, f"{request}X-Big: {'x' * (1 << 20)}\r\n\r\n{{}}".encode())
    except ConnectionResetError:
        answer = b"HTTP/1.1 400 reset"
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    time.sleep(0.2)
    lines = [line for line in served.lines if line.startswith("POST ")]
    assert re.fullmatch(r"POST /v1/completions 413 rows=4 tokens=400 \d+\.\d ms\n", lines[0])
    assert re.fullmatch(r"POST /tokenize 413 rows=- tokens=- \d+\.\d ms\n", lines[1])
    assert len(lines) == 2 + len(bad)  # one line per request that reached the app (not those h11 refused)
    assert not any("Traceback" in line or "Exception" in line for line in served.lines), "".join(served.lines)
