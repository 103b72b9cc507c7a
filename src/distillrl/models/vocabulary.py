"""One vocabulary shared by the models of a run: tokenizers compared by content, padded output heads.

Token-level distillation compares distributions over one vocabulary, so a teacher (or reference) must tokenize
exactly as the student does: the same tokens with the same ids (added tokens included) and the same merges
(`vocabulary_difference`); which of them is EOS or pad is each model's own. Two tokenizers of the same size with
other merges are different vocabularies. The number of output rows may differ:
models are often padded beyond their tokenizer (Qwen2.5-7B has 152,064 rows, Qwen2.5-0.5B 151,936, for one
tokenizer of 151,665 tokens). Rows past the tokenizer's length belong to no token: distillrl never samples them
and scores every model over the tokenizer's range only (`shared_vocab_size`). A head may also stop short of
the tokenizer (ids it never emits, e.g. an EOS outside a benchmark model's vocabulary): then the shared range
ends with the shortest head, and teacher and student must have the same rows.
"""

from __future__ import annotations

import json

from transformers import PreTrainedTokenizerBase

from distillrl.models.loading import ModelLoadError
from distillrl.models.model_files import ModelFiles


def backend_state(tokenizer: PreTrainedTokenizerBase) -> dict:
    """A fast tokenizer's `tokenizer.json` as a dict (empty for a slow tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return json.loads(backend.to_str()) if backend is not None else {}


def token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[int, str]:
    """What each id means: id -> token, over the vocabulary and the added tokens (special ones included)."""
    return {index: token for token, index in tokenizer.get_vocab().items()}


def first_difference(mine: list, theirs: list) -> int:
    """The first index at which two lists differ (the shorter one's length when one extends the other)."""
    return next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))


def vocabulary_difference(other: PreTrainedTokenizerBase, student: PreTrainedTokenizerBase,
                          name: str) -> str | None:  # fmt: skip
    """None when `other` (called `name` in the message) gives every text the student's ids, else the first
    difference in words, naming the token.

    Compared, in order: what each id means (the vocabulary and the added tokens with their ids); the merges (BPE:
    the same tokens, another split of the same text); the scores of a Unigram vocabulary; the normalizer and the
    pre-tokenizer (they change what text reaches the model's splitting, e.g. lower-casing or digit splitting).
    Not compared: which token plays EOS, pad or BOS, and whether an added token is flagged special. A base model
    stops at `<|endoftext|>` and its instruct twin at `<|im_end|>` over the very same ids, and a student without a
    pad token pads with its EOS: both keep every id's meaning. The decoder and post-processor are not compared
    either: a run scores the student's own token ids, which the teacher reads by the same table."""
    state, student_state = backend_state(other), backend_state(student)
    theirs, mine = token_ids(other), token_ids(student)
    if theirs != mine:
        ids = sorted(set(theirs) | set(mine))
        index = next(i for i in ids if theirs.get(i) != mine.get(i))
        meaning = {side: repr(table[index]) if index in table else "no token" for side, table in
                   (("other", theirs), ("student", mine))}  # fmt: skip
        return (f"id {index} is {meaning['other']} in {name} and {meaning['student']} in the student "
                f"({len(theirs)} vs {len(mine)} tokens)")
    model, student_model = state.get("model") or {}, student_state.get("model") or {}
    merges = [" ".join(m) if isinstance(m, list) else m for m in model.get("merges") or []]
    student_merges = [" ".join(m) if isinstance(m, list) else m for m in student_model.get("merges") or []]
    if merges != student_merges:
        index = first_difference(merges, student_merges)
        merge, student_merge = (repr(m[index]) if index < len(m) else "none" for m in (merges, student_merges))
        return (f"the same {len(mine)} tokens but other merges: merge {index} is {merge} in {name} and "
                f"{student_merge} in the student (text splits into other tokens)")
    if model.get("type") == "Unigram" and model.get("vocab") != student_model.get("vocab"):
        index = first_difference(model["vocab"], student_model["vocab"])
        return (f"the same {len(mine)} tokens but other scores: token {model['vocab'][index][0]!r} (id {index}) "
                "scores otherwise (text splits into other tokens)")
    for part in ("normalizer", "pre_tokenizer"):
        if state.get(part) != student_state.get(part):
            return (f"the same {len(mine)} tokens but another {part.replace('_', '-')} ({describe(state.get(part))} "
                    f"in {name}, {describe(student_state.get(part))} in the student): text splits into other tokens")
    return None


def describe(part: dict | None) -> str:
    """A normalizer or pre-tokenizer by its type (`Sequence[NFC, Lowercase]`), `none` when absent."""
    if not part:
        return "none"
    inner = part.get("normalizers") or part.get("pretokenizers")
    return f"{part.get('type')}[{', '.join(describe(p) for p in inner)}]" if inner else str(part.get("type"))


def check_same_vocabulary(student: str, other: str, role: str, files: ModelFiles | None = None) -> None:
    """`other` (named by `role`, e.g. `teacher.path`) must have the student's tokenizer, by content. Their output
    heads may differ by padding rows past the tokenizer (never used), not below it. `files`: the run's ModelFiles."""
    files = files or ModelFiles()
    student_tokenizer = files.tokenizer(student)
    difference = vocabulary_difference(files.tokenizer(other), student_tokenizer, role)
    if difference:
        raise ModelLoadError(f"{role} {other} uses a different tokenizer from the student {student}: {difference}; "
                             "token-level distillation needs one shared vocabulary")  # fmt: skip
    rows, student_rows = files.config(other).vocab_size, files.config(student).vocab_size
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
