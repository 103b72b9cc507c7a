"""`distillrl serve-teacher`: a local HF model behind the part of vLLM's OpenAI-compatible API a teacher needs.

    GET  /health          200 when the model is loaded
    GET  /v1/models       {"object": "list", "data": [{"id": MODEL, "max_model_len": N, ...}]}
    POST /tokenize        {"prompt": str, "add_special_tokens": bool} -> {"tokens": [...], "count": n, ...}
    POST /v1/completions  {"prompt": [[ids...], ...], "max_tokens": 1, "prompt_logprobs": k}
                          -> choices[i].prompt_logprobs = [null, {"id": {"logprob", "rank", "decoded_token"}}, ...]

Each scored position holds the k most likely tokens (ranks 1..k) and the realised token (with its rank, so k or
k + 1 entries), exactly as vLLM answers; the log-probs are the model's at temperature 1 (weights in fp32, or
bf16 with `--precision bf16`; log-softmax in float32). This server
only scores: the completion text is empty. Requests that are too large or malformed get a 4xx with a message
({"error": {"message", "type", "code"}}).

Built on the standard library's ThreadingHTTPServer: no dependency, and the model's forward passes run one at a
time under a lock anyway (the server's throughput is the model's).
"""

from __future__ import annotations

import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from distillrl.scoring.forward import completion_logits
from distillrl.scoring.logits import default_chunk_size

MAX_REQUEST_BYTES = 16 << 20  # a request body larger than this is refused (413)
MAX_REQUEST_TOKENS = 1 << 17  # prompt tokens per request at most (413)


class BadRequest(Exception):
    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


class TeacherModel:
    """The served model: prompt log-probs of token-id prompts, one forward pass at a time."""

    def __init__(self, path: str, device: str = "auto", max_logprobs: int = 20, precision: str = "fp32"):
        from distillrl.models.loading import load_causal_lm, load_tokenizer
        from distillrl.runtime import frozen_dtype, resolve_device

        self.name = path
        self.device = resolve_device(device)
        self.model = load_causal_lm(path, dtype=frozen_dtype(precision)).to(self.device).eval()
        self.tokenizer = load_tokenizer(path)
        self.vocab_size = self.model.get_output_embeddings().weight.shape[0]
        self.max_model_len = getattr(self.model.config, "max_position_embeddings", None) or 1 << 20
        self.max_logprobs = max_logprobs
        self.decoded = self.tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))
        self.lock = threading.Lock()

    @torch.no_grad()
    def prompt_logprobs(self, prompts: list[list[int]], k: int) -> list[list[dict | None]]:
        """For each prompt: None, then for each later position j {id: {logprob, rank, decoded_token}} of the top-k
        tokens and the realised token prompts[i][j]; rank = 1 + the number of tokens more likely."""
        width = max(len(p) for p in prompts)
        input_ids = torch.zeros(len(prompts), width, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, prompt in enumerate(prompts):  # left padding, as the trainer's sequences
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention_mask[row, width - len(prompt) :] = 1
        scored = attention_mask.clone()
        scored[torch.arange(len(prompts)), width - torch.tensor([len(p) for p in prompts])] = 0  # first token
        input_ids, attention_mask, scored = (t.to(self.device) for t in (input_ids, attention_mask, scored))
        with self.lock:
            logits = completion_logits(self.model, input_ids, attention_mask, scored)
            targets = input_ids[:, 1:][scored[:, 1:].bool()]
            chunk = default_chunk_size(self.vocab_size)
            realised, ranks, top_ids, top_values = [], [], [], []
            for start in range(0, len(logits), chunk):
                log_probs = torch.log_softmax(logits.project(logits.hidden[start : start + chunk]), dim=-1)
                value = log_probs.gather(-1, targets[start : start + chunk, None])
                realised.append(value.squeeze(-1))
                ranks.append((log_probs > value).sum(-1) + 1)
                if k:
                    top = log_probs.topk(k, dim=-1)
                    top_ids.append(top.indices)
                    top_values.append(top.values)
        realised, ranks, targets = torch.cat(realised).tolist(), torch.cat(ranks).tolist(), targets.tolist()
        top_ids = torch.cat(top_ids).tolist() if k else [[]] * len(targets)
        top_values = torch.cat(top_values).tolist() if k else [[]] * len(targets)
        out, n = [], 0
        for prompt in prompts:
            entries: list[dict | None] = [None]
            for _ in prompt[1:]:
                entry = {str(t): {"logprob": v, "rank": r + 1, "decoded_token": self.decoded[t]}
                         for r, (t, v) in enumerate(zip(top_ids[n], top_values[n]))}  # fmt: skip
                if str(targets[n]) not in entry:
                    entry[str(targets[n])] = {"logprob": realised[n], "rank": ranks[n],
                                              "decoded_token": self.decoded[targets[n]]}  # fmt: skip
                entries.append(entry)
                n += 1
            out.append(entries)
        return out

    def completions(self, body: dict) -> dict:
        """The answer to a /v1/completions request (validated here: every problem is a BadRequest)."""
        model = body.get("model")
        if model is not None and model != self.name:
            raise BadRequest(f"model {model!r} is not served here (serving {self.name!r})", HTTPStatus.NOT_FOUND)
        prompts = body.get("prompt")
        if isinstance(prompts, list) and prompts and all(isinstance(t, int) and not isinstance(t, bool) for t in prompts):
            prompts = [prompts]
        if (not isinstance(prompts, list) or not prompts
                or not all(isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
                           for p in prompts)):  # fmt: skip
            raise BadRequest("prompt: expected a non-empty list of token ids or a list of such lists (this server "
                             "scores token ids, not text)")  # fmt: skip
        total = sum(len(p) for p in prompts)
        if total > MAX_REQUEST_TOKENS:
            raise BadRequest(f"prompt: {total} tokens in one request, more than {MAX_REQUEST_TOKENS}; send fewer "
                             "prompts per request", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)  # fmt: skip
        for index, prompt in enumerate(prompts):
            if len(prompt) > self.max_model_len:
                raise BadRequest(f"prompt[{index}]: {len(prompt)} tokens, longer than the model's context "
                                 f"({self.max_model_len})")  # fmt: skip
            bad = next((t for t in prompt if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise BadRequest(f"prompt[{index}]: token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})")
        k = body.get("prompt_logprobs")
        if k is None or isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= self.max_logprobs:
            raise BadRequest(f"prompt_logprobs: expected an integer from 0 to {self.max_logprobs} (--max-logprobs), "
                             f"got {k!r}; this server only scores prompts")  # fmt: skip
        max_tokens = body.get("max_tokens", 1)
        if max_tokens not in (0, 1) or isinstance(max_tokens, bool):
            raise BadRequest(f"max_tokens: this server only scores prompts; use 1 (got {max_tokens!r})")
        scored = self.prompt_logprobs(prompts, k)
        choices = [{"index": i, "text": "", "logprobs": None, "finish_reason": "length", "prompt_logprobs": entries}
                   for i, entries in enumerate(scored)]  # fmt: skip
        return {"id": f"cmpl-{time.monotonic_ns()}", "object": "text_completion", "created": int(time.time()),
                "model": self.name, "choices": choices,
                "usage": {"prompt_tokens": total, "completion_tokens": 0, "total_tokens": total}}  # fmt: skip

    def tokenize(self, body: dict) -> dict:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest("prompt: expected a string")
        add_special = body.get("add_special_tokens", True)
        if not isinstance(add_special, bool):
            raise BadRequest("add_special_tokens: expected true or false")
        tokens = self.tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
        return {"count": len(tokens), "max_model_len": self.max_model_len, "tokens": tokens}

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "distillrl",
                                            "max_model_len": self.max_model_len}]}  # fmt: skip


def handler_for(teacher: TeacherModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "distillrl-serve-teacher"

        def log_message(self, format, *args):  # quiet: one line per request would flood a training log
            pass

        def answer(self, status: HTTPStatus, payload: dict | None) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def refuse(self, message: str, status: HTTPStatus) -> None:
            self.answer(status, {"error": {"message": message, "type": status.phrase.replace(" ", ""), "code": status}})

        def do_GET(self):
            if self.path == "/health":
                self.answer(HTTPStatus.OK, None)
            elif self.path == "/v1/models":
                self.answer(HTTPStatus.OK, teacher.models())
            elif self.path in ("/v1/completions", "/tokenize"):
                self.refuse(f"{self.path} takes POST", HTTPStatus.METHOD_NOT_ALLOWED)
            else:
                self.refuse(f"no endpoint {self.path}", HTTPStatus.NOT_FOUND)

        def do_POST(self):
            routes = {"/v1/completions": teacher.completions, "/tokenize": teacher.tokenize}
            if self.path not in routes:
                return self.refuse(f"no endpoint {self.path} for POST", HTTPStatus.NOT_FOUND)
            try:
                length = self.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    raise BadRequest("a Content-Length header is required", HTTPStatus.LENGTH_REQUIRED)
                if int(length) > MAX_REQUEST_BYTES:
                    self.close_connection = True
                    raise BadRequest(f"the request has {int(length)} bytes, more than {MAX_REQUEST_BYTES}",
                                     HTTPStatus.REQUEST_ENTITY_TOO_LARGE)  # fmt: skip
                try:
                    body = json.loads(self.rfile.read(int(length)))
                except (json.JSONDecodeError, UnicodeDecodeError) as error:
                    raise BadRequest(f"the body is not valid JSON ({error})") from None
                if not isinstance(body, dict):
                    raise BadRequest("the body must be a JSON object")
                self.answer(HTTPStatus.OK, routes[self.path](body))
            except BadRequest as error:
                self.refuse(str(error), error.status)

    return Handler


def make_server(teacher: TeacherModel, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), handler_for(teacher))
    server.daemon_threads = True
    return server
