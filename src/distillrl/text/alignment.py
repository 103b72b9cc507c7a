"""Two tokenizations of one text, aligned on the byte offsets where both have a token boundary.

Each token id means a byte string (`token_byte_table`): ByteLevel BPE (GPT-2, Qwen, Llama 3) spells bytes with
the printable characters of GPT-2's byte map (`Ġ` = b" "); SentencePiece-style vocabularies (Metaspace, Unigram)
write a space as `▁` and unknown bytes as `<0xNN>` (byte fallback); character and word vocabularies are their
token strings in UTF-8; an added token (`<|im_end|>`, `<think>`) is its content. The table is read from the
token strings, never from `decode`: decoding strips a SentencePiece token's leading space and turns a byte that
ends mid-character into U+FFFD, while the table gives every token of a completion the bytes it adds in context.

`align` walks both sides' cumulative byte ends. With e^S_i (student) and e^T_j (teacher) the end offsets and
C = {e^S_i} ∩ {e^T_j} \\ {0} (restricted to the longest common byte prefix of the two spellings) sorted as
c_1 < ... < c_n, chunk k holds the tokens whose end lies in (c_{k-1}, c_k]: the minimal chunks on common
boundaries, each spelling the same bytes on both sides. Student tokens past c_n (a completion cut
mid-character, whose tail the teacher cannot read) form one last student-only chunk; teacher tokens past c_n are
in no chunk (-1). A zero-width token joins the chunk of the token before it. With `closed`, the last token of
each side is an end of turn (the student's stop token, the teacher's own): the two form one chunk of their own.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING

from distillrl.core.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BYTE_PROBES = ("12345 + 678 = 7023", "a  b   c    d", "\tx\t\ty", "one\n\ntwo\n", "日本語の文", "emoji 🙂👍🏽 ok",
               "Ünïcode ＡＢ")  # digits, runs of spaces, tabs, newlines, CJK, emoji, case and full width (NFKC)


def gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's printable character of each byte, inverted: character -> byte (the ByteLevel pre-tokenizer's map)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(char): byte for byte, char in zip(printable, chars)}


def component_types(part: dict | None) -> set[str]:
    """The types of a tokenizer.json component and of the components it chains (a `Sequence`)."""
    if not part:
        return set()
    inner = part.get("decoders") or part.get("pretokenizers") or []
    return {part.get("type"), *(t for p in inner for t in component_types(p))}


def token_byte_table(tokenizer: PreTrainedTokenizerBase) -> list[bytes]:
    """The bytes each id of a fast tokenizer spells (module docstring); UserError for a slow tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError(f"teacher.tokenizer own needs fast tokenizers (tokenizer.json); {type(tokenizer).__name__} "
                        "is a slow one")  # fmt: skip
    state = json.loads(backend.to_str())
    kinds = component_types(state.get("decoder")) | component_types(state.get("pre_tokenizer"))
    byte_level, byte_fallback = "ByteLevel" in kinds, "ByteFallback" in kinds or state["model"].get("byte_fallback")
    decoder = gpt2_byte_decoder()
    added = tokenizer.added_tokens_decoder
    table = []
    for index, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if token is None:
            table.append(b"")
        elif index in added:
            table.append(added[index].content.encode())
        elif byte_level:
            table.append(bytes(decoder[c] for c in token))
        elif byte_fallback and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", token):
            table.append(bytes([int(token[3:5], 16)]))
        else:
            table.append(token.replace("\u2581", " ").encode())
    return table


def check_round_trip(tokenizer: PreTrainedTokenizerBase, table: list[bytes], name: str) -> None:
    """Each of BYTE_PROBES, encoded and spelled back through `table`, must be its own bytes; else a UserError
    naming `name` and the probe (a normalizer that changes text, a dummy prefix space, an unknown token)."""
    for probe in BYTE_PROBES:
        ids = tokenizer(probe, add_special_tokens=False)["input_ids"]
        spelled = b"".join(table[i] for i in ids)
        if spelled != probe.encode():
            raise UserError(f"{name}: its tokenizer does not give back the text it reads, so the two tokenizers "
                            f"cannot be aligned on bytes: probe {probe!r} comes back as "
                            f"{spelled.decode('utf-8', 'replace')!r}")  # fmt: skip


def valid_text(data: bytes) -> str:
    """The longest prefix of `data` that is valid UTF-8, as text (a completion cut mid-character loses its tail)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        return data[: error.start].decode("utf-8")


@dataclass(frozen=True)
class Alignment:
    """Chunks of two tokenizations of one text (module docstring)."""

    student_chunk: list[int]  # the chunk of each student token
    teacher_chunk: list[int]  # the chunk of each teacher token, -1 for one past the last common boundary
    num_chunks: int


def common_prefix_length(a: bytes, b: bytes) -> int:
    """The number of leading bytes `a` and `b` share."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def align(student: list[bytes], teacher: list[bytes], closed: bool = False) -> Alignment:
    """Minimal chunks on the common byte boundaries of the student's and the teacher's token byte strings (module
    docstring); `closed`: each side's last token is an end of turn, paired in a chunk of its own."""
    body_s, body_t = (student[:-1], teacher[:-1]) if closed else (student, teacher)
    ends_s = list(accumulate(len(b) for b in body_s))
    ends_t = list(accumulate(len(b) for b in body_t))
    shared = common_prefix_length(b"".join(body_s), b"".join(body_t))
    common = sorted({e for e in ends_s if 0 < e <= shared} & {e for e in ends_t if 0 < e})
    student_chunk = [bisect.bisect_left(common, e) for e in ends_s]
    teacher_chunk = [k if k < len(common) else -1 for k in (bisect.bisect_left(common, e) for e in ends_t)]
    num_chunks = len(common) + (1 if student_chunk and student_chunk[-1] == len(common) else 0)
    if closed:
        student_chunk.append(num_chunks)
        teacher_chunk.append(num_chunks)
        num_chunks += 1
    return Alignment(student_chunk, teacher_chunk, num_chunks)
