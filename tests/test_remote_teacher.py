"""A teacher behind a server, on loopback with real sockets: a real `distillrl serve-teacher` process gives the
local teacher's log-probs (to 1e-5, fp32), an OPD run through it matches a local-teacher run even when the server
is killed and restarted mid-run, and broken servers (garbage, truncated, slow, 5xx, down, another tokenizer) each
give one clear error naming the URL within a bounded time."""

from __future__ import annotations

import http.client
import json
import math
import random
import re
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner
from user_models import save_decoder

from distillrl.cli import app
from distillrl.config import ConfigError, load_config
from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.report.metrics import read_metrics
from distillrl.rollout.hf_generate import generate
from distillrl.run.trainer import train
from distillrl.scoring.frozen import FrozenScorer
from distillrl.scoring.remote import RemoteTeacher, ServerError
from distillrl.scoring.teachers import LocalTeacher
from distillrl.serve.http import TeacherServer, bind
from distillrl.serve.teacher_model import TeacherModel
from distillrl.tasks import ArithTask
from distillrl.text.sequences import Sequences, encode_pairs


def start_server(model: str, port: int = 0) -> tuple[subprocess.Popen, str]:
    """A `distillrl serve-teacher` process and its URL (read from its first line)."""
    process = subprocess.Popen([sys.executable, "-m", "distillrl.cli", "serve-teacher", "--model", model,
                                "--port", str(port), "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines = [process.stdout.readline()]  # loading ..., loaded ... in N s (progress), then serving ... at URL
    while "http://" not in lines[-1] and lines[-1] and len(lines) < 50:
        lines.append(process.stdout.readline())
    if "http://" not in lines[-1]:
        process.kill()
        raise AssertionError(f"serve-teacher did not start: {''.join(lines)}{process.stdout.read()}")
    return process, lines[-1].split(" at ")[1].split()[0]


@pytest.fixture(scope="module")
def served_teacher():
    """The module's serve-teacher process (a test may replace it: `served["process"]`)."""
    process, url = start_server("zoo:teacher")
    served = {"process": process, "url": url}
    yield served
    served["process"].kill()
    served["process"].wait()


def arith_sequences(n: int = 6, sampled: bool = True) -> Sequences:
    """Dataset solutions and, with `sampled`, student samples: left-padded rows of different lengths."""
    tokenizer = load_tokenizer("zoo:student-base")
    rng = random.Random(3)
    problems = [ArithTask().sample_train(rng) for _ in range(n)]
    given = encode_pairs(tokenizer, [p.prompt for p in problems], [p.solution for p in problems])
    if not sampled:
        return given
    torch.manual_seed(0)
    drawn = generate(load_causal_lm("zoo:student-base"), tokenizer, [p.prompt for p in problems], 1, 1.0, 24)
    return Sequences.cat([given, drawn], tokenizer.pad_token_id)


def scored(teacher, sequences: Sequences, top_k: int | None):
    rows = torch.arange(len(sequences))
    parts = list(teacher.score(sequences, rows, top_k, False, 4, 1024))
    token_logprobs = torch.zeros(len(sequences.target_ids))
    ids = torch.zeros(len(token_logprobs), top_k or 1, dtype=torch.long)
    values = torch.zeros(len(token_logprobs), (top_k or 0) + 1)
    for mask, signals in parts:
        token_logprobs[mask] = signals.token_logprobs
        if top_k:
            ids[mask], values[mask] = signals.topk_ids, signals.topk_logprobs
    return token_logprobs, ids, values


def test_served_logprobs_equal_the_local_teachers(served_teacher):
    url = served_teacher["url"]
    sequences = arith_sequences()
    remote = RemoteTeacher(url, timeout=60, rows_per_request=3, concurrency=2)
    remote.check(load_tokenizer("zoo:student-base"), "zoo:teacher")
    local = LocalTeacher(FrozenScorer(load_causal_lm("zoo:teacher")))
    for top_k in (None, 1, 5):  # k = 1: most realised tokens are outside the top-k (k + 1 entries a position)
        remote_lp, remote_ids, remote_values = scored(remote, sequences, top_k)
        local_lp, local_ids, local_values = scored(local, sequences, top_k)
        assert len(remote_lp) == len(sequences.target_ids) > 100
        torch.testing.assert_close(remote_lp, local_lp, atol=1e-5, rtol=0)
        if top_k:
            assert torch.equal(remote_ids, local_ids)
            torch.testing.assert_close(remote_values[:, :-1], local_values[:, :-1], atol=1e-5, rtol=0)
            # the tail: 1 - sum of k probabilities there, logsumexp of the rest here: equal as probabilities
            torch.testing.assert_close(remote_values[:, -1].exp(), local_values[:, -1].exp(), atol=1e-5, rtol=0)


def opd_config(tmp_path: Path, name: str, **teacher) -> object:
    text = f"""
output_dir: {tmp_path / name}
teacher: {json.dumps({"path": "zoo:teacher", **teacher})}
objective: {{name: reverse_kl, fidelity: topk, top_k: 4}}
rollout: {{prompts_per_step: 4, group_size: 2, max_new_tokens: 16}}
optim: {{steps: 3, lr: 0.003, schedule: constant}}
eval: {{every: 0, num_prompts: 4, max_new_tokens: 16}}
checkpoint: {{every: 0}}
tensorboard: false
"""
    (tmp_path / f"{name}.yaml").write_text(text)
    return load_config(tmp_path / f"{name}.yaml")


def train_metrics(run_dir: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k.startswith("train/")} for r in read_metrics(run_dir) if r["step"] > 0]


def test_an_opd_run_through_the_server_matches_a_local_run_across_a_server_restart(tmp_path, served_teacher, capfd):
    local = opd_config(tmp_path, "local")
    train(local, show_progress=False)
    url = served_teacher["url"]
    port = int(url.rsplit(":", 1)[1])
    restarted = threading.Event()

    def restart():
        served_teacher["process"] = start_server("zoo:teacher", port)[0]
        restarted.set()

    def kill_and_restart(step, record):
        if step == 1:  # killed between steps: step 2's requests find nothing listening and retry with backoff
            served_teacher["process"].kill()
            served_teacher["process"].wait()
            threading.Thread(target=restart).start()

    remote = opd_config(tmp_path, "remote", server=url, server_retries=8, server_rows_per_request=3)
    summary = train(remote, on_step=kill_and_restart, show_progress=False)
    assert restarted.is_set()
    retried = re.findall(rf"teacher.server {url}: POST /v1/completions: .*Connection refused; try 2 of 9 in 0.5 s",
                         capfd.readouterr().err)  # fmt: skip
    assert retried
    ran, expected = train_metrics(remote.output_dir), train_metrics(local.output_dir)
    assert [r["step"] for r in read_metrics(remote.output_dir) if r["step"] > 0] == [1, 2, 3]  # nothing lost
    assert len(expected) == 3
    for got, want in zip(ran, expected):
        assert got["train/response_length"] == want["train/response_length"]  # the same samples
        # the tail bucket is computed differently (1 - the sum of k probabilities from the server, the logsumexp of
        # the other tokens here): equal to ~1e-7 as a probability, which moves a loss by ~1e-5 of itself
        for key in ("train/loss", "train/reverse_kl", "train/grad_norm"):
            assert got[key] == pytest.approx(want[key], rel=1e-3), key
    assert summary["teachers"] == {}  # nothing to evaluate locally: the teacher lives in the server


def test_serve_teacher_serves_a_user_model_and_refuses_bad_requests(tmp_path):
    path = save_decoder(tmp_path / "qwen3", kind="qwen3")
    server = TeacherServer(TeacherModel(path, "cpu", max_logprobs=5), bind("127.0.0.1", 0)).start()
    url = f"http://127.0.0.1:{server.address[1]}"
    try:
        sequences = arith_sequences(4, sampled=False)
        remote = RemoteTeacher(url, timeout=30)
        remote.check(load_tokenizer("zoo:student-base"), path)
        assert remote.model == path
        remote_lp, remote_ids, _ = scored(remote, sequences, 5)
        local_lp, local_ids, _ = scored(LocalTeacher(FrozenScorer(load_causal_lm(path))), sequences, 5)
        torch.testing.assert_close(remote_lp, local_lp, atol=1e-5, rtol=0)
        assert torch.equal(remote_ids, local_ids)

        def post(path_: str, body: bytes, headers: dict | None = None) -> tuple[int, str]:
            connection = http.client.HTTPConnection("127.0.0.1", server.address[1], timeout=10)
            connection.request("POST", path_, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}").get("error", {}).get("message", "")

        completion = lambda **body: post("/v1/completions", json.dumps({"prompt": [[1, 2, 3]], "max_tokens": 1,  # noqa: E731
                                                                          "prompt_logprobs": 2, **body}).encode())
        assert completion()[0] == 200
        assert completion(prompt=[[1, 10**6]]) == (400, "prompt[0]: token id 1000000 is outside the vocabulary (0..61)")
        assert completion(prompt_logprobs=6)[0] == 400 and "--max-logprobs" in completion(prompt_logprobs=6)[1]
        assert completion(prompt="text")[0] == 400
        assert completion(prompt=[list(range(3))] * 1 + [[1] * 300])[0] == 400  # longer than the context (256)
        assert completion(max_tokens=16)[0] == 400
        assert completion(model="another")[0] == 404
        assert post("/v1/completions", b"{not json")[0] == 400
        assert post("/v1/completions", b"[1, 2]")[0] == 400
        assert post("/v1/completions", b"{}", {"Content-Length": str(1 << 30)})[0] == 413
        assert post("/v1/nothing", b"{}")[0] == 404
    finally:
        server.stop()


class FakeServer:
    """A loopback socket that answers every request with `reply(request_line, body)` (raw bytes, or None: never
    answer)."""

    def __init__(self, reply):
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                data = b""
                while b"\r\n\r\n" not in data:
                    data += self.request.recv(65536)
                head, body = data.split(b"\r\n\r\n", 1)
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)  # fmt: skip
                while len(body) < length:
                    body += self.request.recv(65536)
                answer = reply(head.split(b"\r\n")[0].decode(), body)
                if answer is None:
                    outer.hold.wait(30)
                    return
                self.request.sendall(answer)

        self.hold = threading.Event()
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def http_answer(status: int, body: bytes, length: int | None = None) -> bytes:
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {length or len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body  # fmt: skip


def tokens_of(text: str) -> bytes:
    return json.dumps({"tokens": load_tokenizer("zoo:student-base")(text, add_special_tokens=False)["input_ids"]}).encode()


MODELS = json.dumps({"object": "list", "data": [{"id": "m"}]}).encode()


def vllm_like(completions: bytes, tokenize: bytes | None = None):
    """Healthy /health, /v1/models and /tokenize (the student's tokens), then `completions` for scoring."""
    from distillrl.scoring.remote import TOKENIZER_PROBE

    tokenizer = load_tokenizer("zoo:student-base")
    probe = tokenize or tokens_of(TOKENIZER_PROBE + tokenizer.eos_token)

    def reply(request_line: str, body: bytes) -> bytes | None:
        if "/health" in request_line:
            return http_answer(200, b"")
        if "/v1/models" in request_line:
            return http_answer(200, MODELS)
        if "/tokenize" in request_line:
            return http_answer(200, probe)
        return completions(json.loads(body)) if callable(completions) else completions

    return reply


def without_logprob(request: dict) -> bytes:
    """Right lengths, but each position's entry lacks its `logprob`."""
    entries = [[None] + [{"5": {"rank": 1}}] * (len(p) - 1) for p in request["prompt"]]
    return http_answer(200, json.dumps({"choices": [{"index": i, "prompt_logprobs": e}
                                                    for i, e in enumerate(entries)]}).encode())  # fmt: skip


BROKEN = {  # what the scoring request gets -> what the error says
    "garbage": (http_answer(200, b"<html>oops</html>"), "not JSON: '<html>oops</html>'"),
    "truncated": (http_answer(200, b'{"choices": [', length=4000), "the answer was cut off after 13 bytes"),
    "slow": (None, "no complete answer within teacher.server_timeout (1.5 s)"),
    "5xx": (http_answer(503, b"busy"), "HTTP 503: busy"),
    "wrong shape": (http_answer(200, b'{"choices": [{"text": ""}]}'), "prompt_logprobs should list"),
    "no logprob": (without_logprob, "token 5: {'rank': 1} has no valid logprob"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_server_gives_one_clear_error_in_bounded_time(case):
    answer, message = BROKEN[case]
    fake = FakeServer(vllm_like(answer))
    try:
        remote = RemoteTeacher(fake.url, timeout=1.5, retries=2, rows_per_request=1, concurrency=2)
        remote.check(load_tokenizer("zoo:student-base"))
        sequences = arith_sequences(2, sampled=False)
        started = time.monotonic()
        with pytest.raises(ServerError) as error:
            list(remote.score(sequences, torch.arange(2), 3, False, 4, 1024))
        assert time.monotonic() - started < 10
        assert f"teacher.server {fake.url}" in str(error.value) and message in str(error.value), str(error.value)
        assert "\n" not in str(error.value)
    finally:
        fake.close()


def every_position(entry: str):
    """An answer whose every scored position is the raw JSON `entry` (raw: NaN, -Infinity and repeated keys stay)."""

    def answer(request: dict) -> bytes:
        choices = [f'{{"index": {i}, "prompt_logprobs": [null{(", " + entry) * (len(p) - 1)}]}}'
                   for i, p in enumerate(request["prompt"])]  # fmt: skip
        return http_answer(200, f'{{"choices": [{", ".join(choices)}]}}'.encode())

    return answer


AT = "choices[0].prompt_logprobs["  # each error names the position
HOSTILE = {  # a server's answer -> what the one-line error says
    "probabilities sum above 1": (every_position('{"5": {"logprob": -0.1}, "6": {"logprob": -0.5}, "7": -3}'),
                                  "the probabilities of its 3 tokens sum to 1.56116, more than 1"),
    "sum just past the tolerance": (every_position('{"5": -0.6931, "6": -0.6931, "7": -9}'), "sum to 1.00017, more than 1"),
    "-inf": (every_position('{"5": {"logprob": -Infinity}}'), "token 5: {'logprob': -inf} has no valid logprob"),
    "NaN": (every_position('{"5": {"logprob": NaN}}'), "token 5: {'logprob': nan} has no valid logprob"),
    "-1e300": (every_position('{"5": {"logprob": -1e300}}'), "has no valid logprob (a finite number from -3.4e38"),
    "past float32": (every_position('{"5": {"logprob": -3.5e38}}'), "token 5: {'logprob': -3.5e+38} has no valid"),
    "1e400 (inf)": (every_position('{"5": {"logprob": -1e400}}'), "token 5: {'logprob': -inf} has no valid logprob"),
    "positive": (every_position('{"5": {"logprob": 0.5}}'), "token 5: {'logprob': 0.5} has no valid logprob"),
    "past the tolerance": (every_position('{"5": {"logprob": 0.001}}'), "{'logprob': 0.001} has no valid logprob"),
    "string logprob": (every_position('{"5": {"logprob": "-0.1"}}'), "{'logprob': '-0.1'} has no valid logprob"),
    "bool logprob": (every_position('{"5": {"logprob": true}}'), "{'logprob': True} has no valid logprob"),
    "null logprob": (every_position('{"5": {"logprob": null}}'), "{'logprob': None} has no valid logprob"),
    "id -1": (every_position('{"-1": -0.1}'), "token id -1 is outside the vocabulary (0..61)"),
    "id = vocabulary": (every_position('{"62": -0.1}'), "token id 62 is outside the vocabulary (0..61)"),
    "huge id": (every_position('{"' + "9" * 40 + '": -0.1}'), f"key '{'9' * 40}' is not a token id"),
    "id with _": (every_position('{"1_0": -0.1}'), "key '1_0' is not a token id"),
    "id with a space": (every_position('{" 5": -0.1}'), "key ' 5' is not a token id"),
    "id twice": (every_position('{"5": -1.0, "05": -2.0}'), "token id 5 is listed twice"),
    "a list": (every_position('[5, -0.1]'), "is [5, -0.1], not a {token_id: {logprob, rank}} mapping"),
    "oversize (Content-Length)": (http_answer(200, b"{}", length=1 << 30),
                                  "the answer has 1073741824 bytes (Content-Length), more than the"),
    "oversize (streamed)": (b"HTTP/1.1 200 X\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                            + b" " * (3 << 20), "the answer has more than 1"),
    "nested": (http_answer(200, b"[" * 100_000 + b"]" * 100_000), "answered something that is not JSON"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_answer_is_one_line_naming_the_server_and_the_position(case):
    """Every number and id of an answer is checked before it is trained on: nothing reaches a tensor (no
    traceback, no device-side assert), and an oversize answer is refused before it is read whole."""
    answer, message = HOSTILE[case]
    fake = FakeServer(vllm_like(answer))
    try:
        remote = RemoteTeacher(fake.url, timeout=5, retries=0, rows_per_request=1)
        remote.check(load_tokenizer("zoo:student-base"))
        assert remote.vocab_size == 62
        with pytest.raises(ServerError) as error:
            list(remote.score(arith_sequences(2, sampled=False), torch.arange(2), 3, False, 4, 1024))
    finally:
        fake.close()
    text = str(error.value)
    assert text.startswith(f"teacher.server {fake.url}: POST /v1/completions") and message in text, text
    assert (AT in text) == (not case.startswith(("oversize", "nested"))) and "\n" not in text


def test_a_server_that_is_down_or_tokenises_differently_is_refused_at_start(tmp_path):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ServerError, match=rf"teacher.server http://127.0.0.1:{port}: GET /health failed 3 times .*"
                                          r"is the server running\?"):  # fmt: skip
        RemoteTeacher(f"http://127.0.0.1:{port}", retries=2).check(load_tokenizer("zoo:student-base"))
    assert time.monotonic() - started < 5  # backoff 0.5 + 1 s
    fake = FakeServer(vllm_like(b"", tokenize=tokens_of("something else")))
    try:
        with pytest.raises(ServerError, match="the server's tokenizer .* differs from the student's"):
            RemoteTeacher(fake.url, retries=0).check(load_tokenizer("zoo:student-base"))
        config = tmp_path / "c.yaml"  # the same check runs before a run loads anything or claims its directory
        config.write_text(f"output_dir: {tmp_path / 'run'}\nteacher: {{server: '{fake.url}', server_retries: 0}}\n")
        with pytest.raises(ServerError, match="teacher.server .* differs from the student's"):
            train(load_config(config), show_progress=False)
        assert not (tmp_path / "run").exists()
    finally:
        fake.close()


def test_an_unset_api_key_variable_is_refused_before_the_run_starts(tmp_path, monkeypatch):
    monkeypatch.delenv("DISTILLRL_TEST_UNSET_KEY", raising=False)
    config = tmp_path / "c.yaml"
    config.write_text(f"output_dir: {tmp_path / 'run'}\n"
                      "teacher: {server: 'http://127.0.0.1:9', server_api_key_env: DISTILLRL_TEST_UNSET_KEY}\n")  # fmt: skip
    with pytest.raises(ServerError, match=r"^teacher.server_api_key_env: the environment variable "
                                          r"DISTILLRL_TEST_UNSET_KEY is not set \(it should hold the API key of "
                                          r"http://127.0.0.1:9\)$"):  # fmt: skip
        train(load_config(config), show_progress=False)
    assert not (tmp_path / "run").exists()
    config.write_text("teacher: {server: 'http://127.0.0.1:9', server_api_key_env: 'not a name'}\n")
    with pytest.raises(ConfigError, match="c.yaml:1: teacher.server_api_key_env"):
        load_config(config)


@pytest.mark.parametrize("settings, message", [
    ("objective: {name: forward_kl}", "teacher.server: a server teacher gives fidelity sampled or topk; full"),
    ("teacher: {server: 'localhost:8000'}", "teacher.server: 'localhost:8000' is not a URL such as http://"),
    ("objective: {name: sft}\nrollout: {source: teacher}", "teacher.server: rollout.source 'teacher' samples from"),
    ("objective: {name: jsd, fidelity: topk}\nrollout: {source: speculative}", "teacher.server: rollout.source 'speculative'"),
])  # fmt: skip
def test_what_a_server_teacher_cannot_do_is_refused_at_config_time(tmp_path, settings, message):
    """Each names the file, line and field: `c.yaml:1: teacher.server: ...`."""
    config = tmp_path / "c.yaml"
    config.write_text(settings if settings.startswith("teacher") else f"teacher: {{server: 'http://127.0.0.1:9'}}\n{settings}\n")
    with pytest.raises(ConfigError, match=rf"c.yaml:1: {message}"):
        load_config(config)


def test_serve_teacher_on_a_port_in_use_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve-teacher", "--model", "zoo:teacher", "--port", str(port), "--device", "cpu"])
    assert result.exit_code == 2
    assert f"distillrl: error: --host 127.0.0.1 --port {port}: cannot listen there (Address already in use)" in result.output


def test_a_vllm_answer_is_read_as_vllm_writes_it():
    """vLLM's own shape: string token ids, `decoded_token`, the first position null, the realised token added
    (with its rank) when outside the top k, -9999.0 for an impossible token."""
    positions = [None,
                 {"7": {"logprob": -0.1, "rank": 1, "decoded_token": "a"}, "3": {"logprob": -2.5, "rank": 2}},
                 {"4": {"logprob": -0.5, "rank": 1}, "8": {"logprob": -1.2, "rank": 2},
                  "9": {"logprob": -9999.0, "rank": 61, "decoded_token": "z"}}]  # fmt: skip

    def answer(request: dict) -> bytes:
        assert request["prompt"] == [[5, 7, 9]] and request["prompt_logprobs"] == 2 and request["max_tokens"] == 1
        assert request["model"] == "m"
        return http_answer(200, json.dumps({"choices": [{"index": 0, "text": "x", "prompt_logprobs": positions}]}).encode())

    fake = FakeServer(vllm_like(answer))
    try:
        remote = RemoteTeacher(fake.url, retries=0)
        remote.check(load_tokenizer("zoo:student-base"))
        row = Sequences(input_ids=torch.tensor([[0, 5, 7, 9]]), attention_mask=torch.tensor([[0, 1, 1, 1]]),
                        completion_mask=torch.tensor([[0, 0, 1, 1]]), prompt_index=torch.tensor([0]), completions=[""],
                        prompt_width=2)  # fmt: skip
        (mask, signals), = remote.score(row, torch.tensor([0]), 2, False, 4, 1024)
    finally:
        fake.close()
    assert mask.tolist() == [True, True]
    assert signals.token_logprobs.tolist() == pytest.approx([-0.1, -9999.0])
    assert signals.topk_ids.tolist() == [[7, 3], [4, 8]]
    tails = [math.log(1 - math.exp(-0.1) - math.exp(-2.5)), math.log(1 - math.exp(-0.5) - math.exp(-1.2))]
    torch.testing.assert_close(signals.topk_logprobs, torch.tensor([[-0.1, -2.5, tails[0]], [-0.5, -1.2, tails[1]]]))
