"""A stored teacher (offline KD): a dataset's sequences scored once, read back with no teacher loaded.

`write_teacher_cache` (run/teacher_cache.py) renders every (prompt, completion) row of a data file as the `dataset` source does, scores it
with the teacher and writes, per completion token, the top-k ids (int32) and log-probs with the tail bucket
(float32 [k + 1]) and the realised token's log-prob (float32): 8k + 8 bytes a token, in safetensors shards.
`manifest.json` names the teacher, the tokenizer's fingerprint, the data file's sha256 and k.

`StoredTeacher` answers the scorer interface (scoring/teachers.py) from those shards: each row is looked up by a
64-bit hash of its real token ids, so a row the cache does not hold (another data file, tokenizer or chat
template) is an error naming the cache, never a silent mismatch. Shards are read into memory when first needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor

from distillrl.core.errors import UserError, one_line
from distillrl.scoring.teachers import TeacherSignals, real_token_rows
from distillrl.scoring.topk import narrow_topk
from distillrl.text.sequences import Sequences

FORMAT = 1
MANIFEST = "manifest.json"


def shard_layout(rows: int, tokens: int, top_k: int) -> dict[str, tuple[str, list[int]]]:
    """A shard's tensors, each's safetensors dtype and shape, for `rows` sequences of `tokens` scored tokens."""
    return {"keys": ("I64", [rows]), "offsets": ("I64", [rows + 1]), "topk_ids": ("I32", [tokens, top_k]),
            "topk_logprobs": ("F32", [tokens, top_k + 1]), "token_logprobs": ("F32", [tokens])}  # fmt: skip


class CacheError(UserError):
    """A stored teacher that does not fit the run (another tokenizer, data file or k) or cannot be read."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what decides a token sequence: the vocabulary, the special tokens and the chat template."""
    state = {"vocab": sorted(tokenizer.get_vocab().items()), "chat_template": tokenizer.chat_template,
             "special": tokenizer.special_tokens_map}  # fmt: skip
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def sequence_key(token_ids: list[int]) -> int:
    """A row's key: the first 8 bytes of sha256 over its real token ids, as a signed int64."""
    digest = hashlib.sha256(torch.tensor(token_ids, dtype=torch.int64).numpy().tobytes()).digest()
    return int.from_bytes(digest[:8], "little", signed=True)


@dataclass
class StoredTeacher:
    directory: str
    field: str = "teacher.cache"
    manifest: dict = dataclasses.field(init=False)
    shards: dict[int, dict[str, Tensor]] = dataclasses.field(init=False, default_factory=dict)
    index: dict[int, tuple[int, int]] = dataclasses.field(init=False, default_factory=dict)  # key -> (shard, row)

    def __post_init__(self):
        path = Path(self.directory) / MANIFEST
        try:
            self.manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise CacheError(f"{self.field}: {path} not found; write one with `distillrl teacher cache`") from None
        except (OSError, json.JSONDecodeError) as error:
            raise CacheError(f"{self.field}: {path} cannot be read ({error})") from None
        needed = ("format", "tokenizer_sha256", "data_sha256", "top_k", "shards")
        if not isinstance(self.manifest, dict) or any(key not in self.manifest for key in needed):
            raise CacheError(f"{self.field}: {path} is not a teacher-cache manifest (needs {', '.join(needed)})")
        if self.manifest["format"] != FORMAT:
            raise CacheError(f"{self.field}: {path} has format {self.manifest['format']}; this distillrl reads {FORMAT}")
        shards, top_k = self.manifest["shards"], self.manifest["top_k"]
        if not isinstance(shards, list) or not all(isinstance(name, str) for name in shards):
            raise CacheError(f"{self.field}: {path}: `shards` is not a list of file names")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise CacheError(f"{self.field}: {path}: `top_k` is {top_k!r}, not a positive integer")

    def check(self, tokenizer, student: str, data_path: str, top_k: int | None) -> None:
        """The cache was written for this tokenizer (and chat template), this data file and at least this k."""
        m, where = self.manifest, f"{self.field} {self.directory}"
        if m["tokenizer_sha256"] != tokenizer_fingerprint(tokenizer):
            raise CacheError(f"{where}: written with the tokenizer of {m.get('teacher')}, which differs from the "
                             f"student's ({student}: vocabulary, special tokens or chat template); rebuild the cache")
        if not Path(data_path).is_file() or file_sha256(data_path) != m["data_sha256"]:
            raise CacheError(f"{where}: written from {m.get('data_file')}, and task.train_path {data_path} is another "
                             "file (sha256 differs); rebuild the cache from the training data")  # fmt: skip
        if top_k is not None and top_k > m["top_k"]:
            raise CacheError(f"{where}: holds the top {m['top_k']} tokens per position, fewer than objective.top_k "
                             f"({top_k})")  # fmt: skip
        rows, tokens = 0, 0
        for name in m["shards"]:
            if not (Path(self.directory) / name).is_file():
                raise CacheError(f"{where}: shard {name} is missing")
            shard_rows, shard_tokens = self.check_shard(Path(self.directory) / name)
            rows, tokens = rows + shard_rows, tokens + shard_tokens
        for field, count in (("rows", rows), ("tokens", tokens)):
            if field in m and m[field] != count:
                raise CacheError(f"{where}: {MANIFEST} says {m[field]!r} {field}, and its shards hold {count}; the "
                                 "cache is incomplete or was edited, rebuild it")  # fmt: skip

    def check_shard(self, file: Path) -> tuple[int, int]:
        """A shard must be whole and hold `shard_layout`'s tensors, its offsets rising from 0 to its token count;
        returns (rows, tokens). Reads the header and the offsets (8 bytes a row), not the scores."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(file, "pt") as shard:
                layout = {name: (shard.get_slice(name).get_dtype(), shard.get_slice(name).get_shape())
                          for name in shard.keys()}  # fmt: skip
                offsets = shard.get_tensor("offsets") if "offsets" in layout else None
        except (OSError, ValueError, SafetensorError) as error:
            raise CacheError(f"{self.field}: {file} cannot be read ({one_line(error)}); the shard is damaged or "
                             "truncated, rebuild the cache") from None  # fmt: skip
        rows = (layout.get("keys", (None, [0]))[1] or [0])[0]
        tokens = (layout.get("token_logprobs", (None, [0]))[1] or [0])[0]
        for name, want in shard_layout(rows, tokens, self.manifest["top_k"]).items():
            if name not in layout:
                raise CacheError(f"{self.field}: {file} has no tensor {name!r}; rebuild the cache")
            if layout[name] != want:
                raise CacheError(f"{self.field}: {file}: {name} is {layout[name][0]} {layout[name][1]}, and a cache of "
                                 f"top_k {self.manifest['top_k']} with {rows} rows and {tokens} tokens stores "
                                 f"{want[0]} {want[1]}; rebuild the cache")  # fmt: skip
        if offsets[0] != 0 or offsets[-1] != tokens or (offsets.diff() < 0).any():
            raise CacheError(f"{self.field}: {file}: its offsets do not rise from 0 to its {tokens} tokens")
        return rows, tokens

    def _shard(self, number: int) -> dict[str, Tensor]:
        if number not in self.shards:
            from safetensors.torch import load_file

            self.shards[number] = load_file(str(Path(self.directory) / self.manifest["shards"][number]))
            for row, key in enumerate(self.shards[number]["keys"].tolist()):
                self.index.setdefault(key, (number, row))
        return self.shards[number]

    def lookup(self, key: int) -> tuple[dict[str, Tensor], int]:
        """(shard tensors, row) of a row key; shards are loaded in order until the key is found."""
        number = len(self.shards)
        while key not in self.index and number < len(self.manifest["shards"]):
            self._shard(number)
            number += 1
        if key not in self.index:
            raise KeyError(key)
        shard, row = self.index[key]
        return self.shards[shard], row

    def score(self, sequences: Sequences, rows: Tensor, top_k: int | None, full: bool, rows_per_pass: int,
              chunk_size: int, tokens_per_pass: int | None = None) -> Iterator[tuple[Tensor, TeacherSignals]]:  # fmt: skip
        if len(rows) == 0:
            return
        realised, ids, values = [], [], []
        for token_ids, positions in real_token_rows(sequences, rows.cpu()):
            try:
                shard, row = self.lookup(sequence_key(token_ids))
            except KeyError:
                raise CacheError(f"{self.field} {self.directory}: a training sequence is not in the cache (was it "
                                 f"written from this data file and tokenizer?): {token_ids[:16]}...") from None
            start, end = shard["offsets"][row].item(), shard["offsets"][row + 1].item()
            if end - start != len(positions):
                raise CacheError(f"{self.field} {self.directory}: a cached sequence has {end - start} scored tokens, "
                                 f"the run's {len(positions)}")  # fmt: skip
            realised.append(shard["token_logprobs"][start:end])
            ids.append(shard["topk_ids"][start:end])
            values.append(shard["topk_logprobs"][start:end])
        device = sequences.input_ids.device
        signals = TeacherSignals(torch.cat(realised).to(device))
        if top_k is not None:
            topk_ids, topk_logprobs = narrow_topk(torch.cat(ids).long(), torch.cat(values), top_k)
            signals.topk_ids, signals.topk_logprobs = topk_ids.to(device), topk_logprobs.to(device)
        yield torch.isin(sequences.sequence_index, rows), signals
