"""What `distillrl serve-teacher` answers: a local HF model's prompt log-probs, as vLLM's OpenAI-compatible API.

    GET  /health          200 when the model is loaded
    GET  /v1/models       {"object": "list", "data": [{"id": MODEL, "max_model_len": N, ...}]}
    POST /tokenize        {"prompt": str, "add_special_tokens": bool} -> {"tokens": [...], "count": n, ...}
    POST /v1/completions  {"prompt": [[ids...], ...], "max_tokens": 1, "prompt_logprobs": k}
                          -> choices[i].prompt_logprobs = [null, {"id": {"logprob", "rank", "decoded_token"}}, ...]

Each scored position holds the k most likely tokens (ranks 1..k) and the realised token (with its rank, so k or
k + 1 entries), exactly as vLLM answers; the log-probs are the model's at temperature 1 (weights in fp32, or
bf16 with `--precision bf16`; log-softmax in float32) over the tokenizer's ids only, as the local teacher scores
them: a head padded past its tokenizer has rows no token uses, which are never normalised over, ranked or listed
(`shared_vocab_size`). This server only scores: the completion text is empty. Every problem with a request is a
BadRequest (a 4xx with a message). The HTTP side (limits, timeouts, the API key) is serve/http.py.
"""

from __future__ import annotations

import threading
import time
from http import HTTPStatus

import torch

from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.models.vocabulary import shared_vocab_size
from distillrl.run.runtime import frozen_dtype, resolve_device
from distillrl.scoring.forward import completion_logits
from distillrl.scoring.logits import default_chunk_size

MAX_REQUEST_TOKENS = 1 << 17  # prompt tokens per request at most (413)
MAX_ANSWER_ENTRIES = 1 << 19  # log-probs in one answer at most (413): ~40 MB of JSON
MAX_TOKENIZE_CHARS = 1 << 18  # characters of a /tokenize prompt at most (413)


class BadRequest(Exception):
    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


class TeacherModel:
    """The served model: prompt log-probs of token-id prompts, one forward pass at a time."""

    def __init__(self, path: str, device: str = "auto", max_logprobs: int = 20, precision: str = "fp32",
                 max_answer_entries: int = MAX_ANSWER_ENTRIES, max_tokenize_chars: int = MAX_TOKENIZE_CHARS):  # fmt: skip
        self.name = path
        self.device = resolve_device(device)
        self.model = load_causal_lm(path, dtype=frozen_dtype(precision)).to(self.device).eval()
        self.tokenizer = load_tokenizer(path)
        self.vocab_size = shared_vocab_size(self.tokenizer, [self.model])  # the ids served: no padding row
        self.max_model_len = getattr(self.model.config, "max_position_embeddings", None) or 1 << 20
        self.max_logprobs = max_logprobs
        self.max_answer_entries = max_answer_entries
        self.max_tokenize_chars = max_tokenize_chars
        self.decoded = self.tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))
        self.lock = threading.Lock()

    @torch.no_grad()
    def prompt_logprobs(self, prompts: list[list[int]], k: int) -> list[list[dict | None]]:
        """For each prompt: None, then for each later position j {id: {logprob, rank, decoded_token}} of the top-k
        tokens and the realised token prompts[i][j]; rank = 1 + the number of tokens more likely. The log-probs are
        log_softmax over ids [0, vocab_size) (the tokenizer's; padding rows of the head are dropped before it)."""
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
            logits = completion_logits(self.model, input_ids, attention_mask, scored, vocab_size=self.vocab_size)
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
            raise BadRequest(f"model {str(model)[:80]!r} is not served here (serving {self.name!r})", HTTPStatus.NOT_FOUND)
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
            if len(prompt) < 2:
                raise BadRequest(f"prompt[{index}]: 1 token; a prompt needs 2 or more (the first has no log-prob)")
            bad = next((t for t in prompt if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise BadRequest(f"prompt[{index}]: token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})")
        k = body.get("prompt_logprobs")
        most = min(self.max_logprobs, self.vocab_size)
        if k is None or isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= most:
            raise BadRequest(f"prompt_logprobs: expected an integer from 0 to {most} (--max-logprobs), "
                             f"got {str(k)[:40]}; this server only scores prompts")  # fmt: skip
        max_tokens = body.get("max_tokens", 1)
        if isinstance(max_tokens, bool) or max_tokens not in (0, 1):
            raise BadRequest(f"max_tokens: this server only scores prompts; use 1 (got {str(max_tokens)[:40]})")
        self.check_answer_size(prompts, k)
        scored = self.prompt_logprobs(prompts, k)
        choices = [{"index": i, "text": "", "logprobs": None, "finish_reason": "length", "prompt_logprobs": entries}
                   for i, entries in enumerate(scored)]  # fmt: skip
        return {"id": f"cmpl-{time.monotonic_ns()}", "object": "text_completion", "created": int(time.time()),
                "model": self.name, "choices": choices,
                "usage": {"prompt_tokens": total, "completion_tokens": 0, "total_tokens": total}}  # fmt: skip

    def check_answer_size(self, prompts: list[list[int]], k: int) -> None:
        """Refuse (413), before any forward pass, a request whose answer would hold more than max_answer_entries
        log-probs: sum over prompts of (len - 1) scored positions x (k + 1) entries each, at most."""
        entries = sum(len(p) - 1 for p in prompts) * (k + 1)
        if entries > self.max_answer_entries:
            fit = self.max_answer_entries // ((max(len(p) for p in prompts) - 1) * (k + 1))
            advice = (f"send at most {fit} rows of up to {max(len(p) for p in prompts)} tokens per request "
                      "(teacher.server_rows_per_request)" if fit else "ask fewer prompt_logprobs")  # fmt: skip
            raise BadRequest(f"the answer would hold {entries} log-probs ({len(prompts)} rows x positions x up to "
                             f"{k + 1}), more than {self.max_answer_entries} (--max-answer-entries); {advice}",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)  # fmt: skip

    def tokenize(self, body: dict) -> dict:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest("prompt: expected a string")
        if len(prompt) > self.max_tokenize_chars:
            raise BadRequest(f"prompt: {len(prompt)} characters, more than {self.max_tokenize_chars} for /tokenize",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)  # fmt: skip
        add_special = body.get("add_special_tokens", True)
        if not isinstance(add_special, bool):
            raise BadRequest("add_special_tokens: expected true or false")
        tokens = self.tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
        return {"count": len(tokens), "max_model_len": self.max_model_len, "tokens": tokens}

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "distillrl",
                                            "max_model_len": self.max_model_len}]}  # fmt: skip
