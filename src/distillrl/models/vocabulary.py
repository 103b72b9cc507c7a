"""One vocabulary shared by the models of a run: tokenizers compared by content, padded output heads.

Token-level distillation compares distributions over one vocabulary, so a teacher (or reference) must tokenize
exactly as the student does: the same tokens with the same ids, the same merges and the same special tokens. Two
tokenizers of the same size with other merges are different vocabularies. The number of output rows may differ:
models are often padded beyond their tokenizer (Qwen2.5-7B has 152,064 rows, Qwen2.5-0.5B 151,936, for one
tokenizer of 151,665 tokens). Rows past the tokenizer's length belong to no token: distillrl never samples them
and scores every model over the tokenizer's range only (`shared_vocab_size`). A head may also stop short of
the tokenizer (ids it never emits, e.g. an EOS outside a benchmark model's vocabulary): then the shared range
ends with the shortest head, and teacher and student must have the same rows.
"""

from __future__ import annotations

import json

from transformers import PreTrainedTokenizerBase

from distillrl.models.loading import ModelLoadError, load_tokenizer, model_config


def tokenizer_content(tokenizer: PreTrainedTokenizerBase) -> dict[str, object]:
    """What decides a tokenizer's ids: its vocabulary, its merges (BPE) and its added and special tokens."""
    content: dict[str, object] = {"special": sorted(str(t) for t in tokenizer.all_special_tokens)}
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer: its vocabulary (added tokens included)
        return content | {"vocab": sorted(tokenizer.get_vocab().items())}
    state = json.loads(backend.to_str())
    model = state.get("model") or {}
    vocab = model.get("vocab")
    content["vocab"] = sorted(vocab.items()) if isinstance(vocab, dict) else vocab  # WordPiece/BPE dict, Unigram list
    content["merges"] = [" ".join(m) if isinstance(m, list) else m for m in model.get("merges") or []]
    content["added"] = sorted((t["id"], t["content"], bool(t.get("special"))) for t in state.get("added_tokens") or [])
    return content


def vocabulary_difference(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> str | None:
    """None when the tokenizers have the same content, else what differs first, in words."""
    first, second = tokenizer_content(a), tokenizer_content(b)
    if first == second:
        return None
    if first.get("vocab") != second.get("vocab"):
        return f"other tokens ({len(a)} vs {len(b)} tokens)"
    if first.get("merges") != second.get("merges"):
        return f"the same {len(a)} tokens but other merges (text splits into other tokens)"
    return "other added or special tokens"


def check_same_vocabulary(student: str, other: str, role: str) -> None:
    """`other` (named by `role`, e.g. `teacher.path`) must have the student's tokenizer, by content. Their output
    heads may differ by padding rows past the tokenizer (never used), not below it."""
    student_tokenizer = load_tokenizer(student)
    difference = vocabulary_difference(load_tokenizer(other), student_tokenizer)
    if difference:
        raise ModelLoadError(f"{role} {other} uses a different tokenizer from the student {student}: {difference}; "
                             "token-level distillation needs one shared vocabulary")  # fmt: skip
    rows, student_rows = model_config(other).vocab_size, model_config(student).vocab_size
    if rows != student_rows and min(rows, student_rows) < len(student_tokenizer):
        raise ModelLoadError(f"{role} {other} has {rows} output rows and the student {student} {student_rows}, fewer "
                             f"than the tokenizer's {len(student_tokenizer)} tokens: the ids past the shorter head "
                             "cannot be scored")  # fmt: skip


def output_rows(model) -> int:
    """The number of rows (ids) of a model's output head."""
    return model.get_output_embeddings().weight.shape[0]


def shared_vocab_size(tokenizer: PreTrainedTokenizerBase, models: list) -> int:
    """The ids the models score alike: [0, min(len(tokenizer), rows of each head)); padding rows lie past it."""
    return min([len(tokenizer), *(output_rows(model) for model in models)])


def padding_ids(tokenizer: PreTrainedTokenizerBase, model) -> list[int]:
    """The output rows of `model` that no token of `tokenizer` uses (empty for an unpadded head)."""
    return list(range(len(tokenizer), output_rows(model)))
