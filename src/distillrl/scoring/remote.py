"""A teacher behind a server: the vLLM-compatible completions API with `prompt_logprobs`.

Each request scores a few finished sequences: `POST /v1/completions` with `prompt` a list of token-id lists,
`max_tokens: 1` and `prompt_logprobs: k` (0 for the realised token only). The answer's
`choices[i].prompt_logprobs` has one entry per prompt token: null for the first, then
`{token_id: {logprob, rank, ...}}` holding the k most likely tokens and the realised one (k or k + 1 entries).
That is what `vllm serve MODEL` serves, and what `distillrl serve-teacher` (distillrl/serve/) serves.

Transport: the standard library's http.client, kept over httpx: the deadline is for the whole answer (the socket's
timeout is re-set to what is left before each receive), which httpx's per-phase timeouts do not give, and the
answer is read one receive at a time, so its size is judged as it streams. One connection per request, so a
restarted server is simply reconnected to. Requests run `concurrency` at a time; a connection error or a 5xx
answer is retried with backoff (0.5, 1, 2, 4, 8, 8 ... s) up to `retries` times (each retry is a line on
stderr); an answer slower than `timeout` (in total, not per read), a 4xx, an answer larger than expected (a
scoring answer: ANSWER_BASE_BYTES + ANSWER_ENTRY_BYTES per log-prob asked, positions x (k + 1); any other:
ANSWER_BASE_BYTES), or one that is not the format above is a ServerError (a UserError that names the URL) at once.

Key: with `api_key_env`, every request sends `Authorization: Bearer $VARIABLE` (vLLM's `--api-key`, serve-teacher's
`--api-key`); the key is read from the environment only, never from the config or written to a log.

Every number of an answer is checked before it is used (parse_position): a log-prob is finite, within float32
(|x| <= 3.4e38) and <= 1e-4 (then clipped to 0); the probabilities listed at one position sum to <= 1 + 1e-4;
a token id is a decimal integer in [0, vocab_size), listed once.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlsplit

import torch
from torch import Tensor

from distillrl.core.errors import UserError, one_line
from distillrl.scoring.teachers import TeacherSignals, real_token_rows, row_parts
from distillrl.scoring.topk import tail_from_topk
from distillrl.text.sequences import Sequences

TOKENIZER_PROBE = "Teacher check: 3+(4*2)=11, [1, 2] sorted; ünïcödé ✓ 日本語\n\tend."
MAX_BACKOFF = 8.0  # seconds between two tries at most
ANSWER_BASE_BYTES = 1 << 20  # an answer may hold this many bytes, plus ANSWER_ENTRY_BYTES per log-prob asked
ANSWER_ENTRY_BYTES = 512  # vLLM's entries take ~90 bytes ({"17": {"logprob": ..., "rank": ..., "decoded_token": ...}})
LOGPROB_TOLERANCE = 1e-4  # a log-prob up to this above 0, and probabilities summing up to 1 + this, are rounding
FLOAT32_MAX = 3.4e38
TOKEN_ID = re.compile(r"-?[0-9]{1,18}")


class ServerError(UserError):
    """A teacher server that cannot be used: unreachable, too slow, or answering something else than expected."""


def backoff_seconds(attempt: int) -> float:
    """Wait before try `attempt + 1` (attempt 0-based): min(0.5 * 2^attempt, 8) seconds."""
    return min(0.5 * 2**attempt, MAX_BACKOFF)


@dataclass
class RemoteTeacher:
    url: str  # e.g. http://127.0.0.1:8000
    timeout: float = 120.0
    retries: int = 6
    concurrency: int = 4
    rows_per_request: int = 8
    field: str = "teacher.server"  # the config field named in errors
    api_key_env: str | None = None  # the environment variable that holds the server's API key
    vocab_size: int | None = None  # ids a server may name: [0, vocab_size) (the student's; `check` bounds it)
    model: str | None = None  # the served model's id (from /v1/models at `check`)

    def __post_init__(self):
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerError(f"{self.field}: {self.url!r} is not an http(s)://HOST[:PORT] URL")
        self.base_path = parts.path.rstrip("/")
        self.headers = {}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env, "")
            if not key:
                raise ServerError(f"{self.field}_api_key_env: the environment variable {self.api_key_env} is not set "
                                  f"(it should hold the API key of {self.url})")  # fmt: skip
            self.headers["Authorization"] = f"Bearer {key}"

    def where(self) -> str:
        return f"{self.field} {self.url}"

    # --- one HTTP exchange -------------------------------------------------------------------------------------
    def _exchange(self, method: str, path: str, body: dict | None, cap: int) -> tuple[int, bytes]:
        """(status, body bytes) of one request; the whole answer must arrive within `timeout` seconds, and hold
        at most `cap` bytes (a ServerError as soon as its Content-Length or what has arrived says more)."""
        parts = urlsplit(self.url)
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        deadline = time.monotonic() + self.timeout
        connection = connection_class(parts.hostname, parts.port, timeout=self.timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = self.headers | ({"Content-Type": "application/json"} if payload is not None else {})
            connection.request(method, self.base_path + path, body=payload, headers=headers)
            sock = connection.sock  # kept: getresponse hands a closing connection's socket to the response
            sock.settimeout(max(deadline - time.monotonic(), 1e-3))
            response = connection.getresponse()
            if response.length is not None and response.length > cap:
                raise self._too_large(method, path, f"{response.length} bytes (Content-Length)", cap)
            chunks, size = [], 0
            while True:  # read1: one receive at a time, so a trickling answer still meets the deadline
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = response.read1(1 << 16)
                if not chunk:
                    break
                size += len(chunk)
                if size > cap:
                    raise self._too_large(method, path, f"more than {size} bytes", cap)
                chunks.append(chunk)
            if response.length:  # the server promised more than it sent
                raise http.client.IncompleteRead(b"".join(chunks), response.length)
            return response.status, b"".join(chunks)
        finally:
            connection.close()

    def _too_large(self, method: str, path: str, size: str, cap: int) -> ServerError:
        return ServerError(f"{self.where()}: {method} {path}: the answer has {size}, more than the {cap} expected "
                           "for what was asked; is this a vLLM-compatible server?")  # fmt: skip

    def request(self, method: str, path: str, body: dict | None = None, cap: int = ANSWER_BASE_BYTES) -> object:
        """The JSON answer of `method path` (with retries; at most `cap` bytes); a ServerError naming the URL
        when there is none."""
        started = time.monotonic()
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                print(f"{self.where()}: {method} {path}: {last}; try {attempt + 1} of {self.retries + 1} in "
                      f"{backoff_seconds(attempt - 1):g} s", file=sys.stderr, flush=True)  # fmt: skip
                time.sleep(backoff_seconds(attempt - 1))
            try:
                status, data = self._exchange(method, path, body, cap)
            except (TimeoutError, socket.timeout):
                raise ServerError(f"{self.where()}: {method} {path} got no complete answer within "
                                  f"{self.field}_timeout ({self.timeout:g} s)") from None  # fmt: skip
            except http.client.IncompleteRead as error:
                last = f"the answer was cut off after {len(error.partial)} bytes"
                continue
            except (OSError, http.client.HTTPException) as error:
                last = one_line(error)
                continue
            text = data.decode("utf-8", errors="replace")
            if status >= 500:
                last = f"HTTP {status}: {text[:200]}"
                continue
            if status in (401, 403):
                advice = (f"is the key in ${self.api_key_env} ({self.field}_api_key_env) the server's?" if self.api_key_env
                          else f"set {self.field}_api_key_env to the name of an environment variable that holds its "
                          "API key")  # fmt: skip
                raise ServerError(f"{self.where()}: {method} {path} was refused (HTTP {status}: {text[:120]}); {advice}")
            if status >= 400:
                raise ServerError(f"{self.where()}: {method} {path} was refused (HTTP {status}: {text[:300]})")
            if path == "/health":
                return None
            try:
                return json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                raise ServerError(f"{self.where()}: {method} {path} answered something that is not JSON: "
                                  f"{text[:80]!r}") from None  # fmt: skip
        raise ServerError(f"{self.where()}: {method} {path} failed {self.retries + 1} times over "
                          f"{time.monotonic() - started:.0f} s (last: {last}); is the server running? "
                          f"({self.field}_retries sets the retries)")  # fmt: skip

    # --- readiness and the tokenizer check -----------------------------------------------------------------------
    def check(self, tokenizer, preferred_model: str | None = None) -> None:
        """The server is up (`/health`), serves a model (`/v1/models`; `preferred_model` when it is one of them, else
        the first) and tokenises a probe string exactly as the student's tokenizer does (`/tokenize`). The ids it
        may name are bounded by the tokenizer's length (and `vocab_size` when given)."""
        self.vocab_size = min(len(tokenizer), self.vocab_size or len(tokenizer))
        self.request("GET", "/health")
        models = self.request("GET", "/v1/models")
        listed = models.get("data", []) if isinstance(models, dict) else []
        ids = [item.get("id") for item in listed if isinstance(item, dict)] if isinstance(listed, list) else []
        if not ids or not all(isinstance(i, str) for i in ids):
            raise ServerError(f"{self.where()}: GET /v1/models lists no model ({str(models)[:120]})")
        self.model = preferred_model if preferred_model in ids else ids[0]
        probe = TOKENIZER_PROBE + (tokenizer.eos_token or "")
        answer = self.request("POST", "/tokenize", {"model": self.model, "prompt": probe, "add_special_tokens": False})
        served = answer.get("tokens") if isinstance(answer, dict) else None
        expected = tokenizer(probe, add_special_tokens=False)["input_ids"]
        if served != expected:
            raise ServerError(f"{self.where()}: the server's tokenizer ({self.model}) differs from the student's: "
                              f"{probe!r} is {str(served)[:80]} there and {str(expected)[:80]} here; token-level "
                              "distillation needs one shared vocabulary")  # fmt: skip

    # --- scoring ----------------------------------------------------------------------------------------------
    def prompt_logprobs(self, token_rows: list[list[int]], k: int) -> list[list]:
        """Each row's `prompt_logprobs` list (one entry per token), in row order, from one completions request."""
        body = {"prompt": token_rows, "max_tokens": 1, "prompt_logprobs": k}
        if self.model is not None:
            body["model"] = self.model
        asked = sum(len(row) for row in token_rows) * (k + 1)
        answer = self.request("POST", "/v1/completions", body, ANSWER_BASE_BYTES + ANSWER_ENTRY_BYTES * asked)
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or len(choices) != len(token_rows):
            raise ServerError(f"{self.where()}: POST /v1/completions: expected {len(token_rows)} choices, got "
                              f"{str(answer)[:120]}")  # fmt: skip
        indices = [choice.get("index", i) if isinstance(choice, dict) else None for i, choice in enumerate(choices)]
        if sorted(indices, key=str) != sorted(range(len(choices)), key=str):
            raise ServerError(f"{self.where()}: POST /v1/completions: the choices' `index` fields are {indices}, not "
                              f"0..{len(choices) - 1}")  # fmt: skip
        by_index = dict(zip(indices, choices))
        out = []
        for i, ids in enumerate(token_rows):
            entries = by_index[i].get("prompt_logprobs")
            if not isinstance(entries, list) or len(entries) != len(ids):
                raise ServerError(f"{self.where()}: POST /v1/completions: choices[{i}].prompt_logprobs should list "
                                  f"{len(ids)} positions (does the server support prompt_logprobs?)")
            out.append(entries)
        return out

    def _score_part(self, rows: list[tuple[list[int], list[int]]], k: int | None) -> tuple[list[float], list[list]]:
        """Realised-token log-probs and (with k) each position's top-k (id, log-prob) list, over the scored
        positions of `rows`."""
        answers = self.prompt_logprobs([ids for ids, _ in rows], k or 0)
        realised, top = [], []
        for row, ((ids, positions), entries) in enumerate(zip(rows, answers)):
            for j in positions:
                where = f"{self.where()}: POST /v1/completions: choices[{row}].prompt_logprobs[{j}]"
                parsed = parse_position(entries[j], where, self.vocab_size)
                if ids[j] not in parsed:
                    raise ServerError(f"{where} has no entry for the realised token {ids[j]}")
                realised.append(parsed[ids[j]])
                if k:
                    best = sorted(parsed.items(), key=lambda item: -item[1])[:k]
                    if len(best) < k:
                        raise ServerError(f"{where} has {len(best)} tokens, fewer than the {k} asked (prompt_logprobs)")
                    top.append(best)
        return realised, top

    def score(self, sequences: Sequences, rows: Tensor, top_k: int | None, full: bool, rows_per_pass: int,
              chunk_size: int, tokens_per_pass: int | None = None) -> Iterator[tuple[Tensor, TeacherSignals]]:  # fmt: skip
        """All of `rows` at once: requests of `rows_per_request` sequences, `concurrency` in flight."""
        if len(rows) == 0:
            return
        device = sequences.input_ids.device
        parts = [real_token_rows(sequences, part) for part in row_parts(rows.cpu(), self.rows_per_request)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._score_part, part, top_k) for part in parts]
            try:
                results = [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        mask = torch.isin(sequences.sequence_index, rows)
        realised = [value for part, _ in results for value in part]
        if len(realised) != int(mask.sum()):
            raise ServerError(f"{self.where()}: scored {len(realised)} tokens, expected {int(mask.sum())}")
        signals = TeacherSignals(torch.tensor(realised, dtype=torch.float32, device=device))
        if top_k:
            top = [position for _, part in results for position in part]
            ids = torch.tensor([[token for token, _ in position] for position in top], dtype=torch.long)
            values = torch.tensor([[value for _, value in position] for position in top], dtype=torch.float64)
            ids, values = ids.reshape(-1, top_k), values.reshape(-1, top_k)
            signals.topk_ids = ids.to(device)
            signals.topk_logprobs = torch.cat([values.float(), tail_from_topk(values)], dim=-1).to(device)
        yield mask, signals


def parse_position(entry: object, where: str, vocab_size: int) -> dict[int, float]:
    """{token id: log-prob} of one `prompt_logprobs` entry ({"17": {"logprob": -0.1, "rank": 1, ...}, ...}),
    checked: each id a decimal integer in [0, vocab_size), listed once; each log-prob a finite number with
    |x| <= 3.4e38 (float32's range) and x <= 1e-4 (clipped to 0); sum of exp(log-prob) <= 1 + 1e-4."""
    if not isinstance(entry, dict) or not entry:
        raise ServerError(f"{where} is {str(entry)[:60]}, not a {{token_id: {{logprob, rank}}}} mapping")
    parsed = {}
    for key, value in entry.items():
        logprob = value.get("logprob") if isinstance(value, dict) else value
        if not TOKEN_ID.fullmatch(key):
            raise ServerError(f"{where}: key {key[:40]!r} is not a token id")
        token = int(key)
        if not 0 <= token < vocab_size:
            raise ServerError(f"{where}: token id {token} is outside the vocabulary (0..{vocab_size - 1})")
        if token in parsed:
            raise ServerError(f"{where}: token id {token} is listed twice")
        if (isinstance(logprob, bool) or not isinstance(logprob, (int, float))
                or not -FLOAT32_MAX <= logprob <= LOGPROB_TOLERANCE):  # NaN and +-inf fail the comparison  # fmt: skip
            raise ServerError(f"{where}: token {key}: {str(value)[:60]} has no valid logprob (a finite number from "
                              f"-3.4e38 to 0)")  # fmt: skip
        parsed[token] = float(min(logprob, 0.0))
    total = math.fsum(math.exp(value) for value in parsed.values())
    if total > 1 + LOGPROB_TOLERANCE:
        raise ServerError(f"{where}: the probabilities of its {len(parsed)} tokens sum to {total:.6g}, more than 1")
    return parsed
