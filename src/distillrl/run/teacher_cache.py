"""Writing a stored teacher (`distillrl teacher cache`): every (prompt, completion) row of a data file rendered as
the `dataset` source renders it, scored once by the teacher, and written in scoring/cache.py's format (safetensors
shards of top-k ids and log-probs, and `manifest.json`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from distillrl.core.files import apply_umask, write_text_atomic
from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.run.runtime import resolve_device
from distillrl.scoring.cache import FORMAT, MANIFEST, CacheError, file_sha256, sequence_key, tokenizer_fingerprint
from distillrl.scoring.frozen import FrozenScorer
from distillrl.scoring.logits import default_chunk_size
from distillrl.scoring.teachers import LocalTeacher, real_token_rows
from distillrl.tasks.prompts import PromptsTask
from distillrl.text.sequences import encode_pairs


def write_teacher_cache(teacher_path: str, data_path: str, top_k: int, out: str | Path, rows_per_pass: int = 32,
                        rows_per_shard: int = 4096, device: str = "auto") -> dict:  # fmt: skip
    """Score every row of `data_path` with the teacher and write the shards and the manifest into `out`; returns the
    manifest (with `bytes` on disk and `bytes_per_token`)."""
    task = PromptsTask(data_path)
    task.check_complete("solution", "teacher cache scores the dataset's solutions")
    tokenizer = load_tokenizer(teacher_path)
    if top_k > len(tokenizer):
        raise CacheError(f"--top-k: {top_k} is larger than the vocabulary ({len(tokenizer)} tokens of {teacher_path})")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CacheError(f"--out: {out} exists and is not an empty directory")
    where = resolve_device(device)
    teacher = LocalTeacher(FrozenScorer(load_causal_lm(teacher_path).to(where)))
    chunk_size = default_chunk_size(teacher.scorer.model.get_output_embeddings().weight.shape[0])
    pairs = list(dict.fromkeys((p.prompt, p.solution) for p in task.train))  # each distinct row once
    out.mkdir(parents=True, exist_ok=True)
    shards, total_tokens, total_bytes = [], 0, 0
    for shard_start in range(0, len(pairs), rows_per_shard):
        shard_pairs = pairs[shard_start : shard_start + rows_per_shard]
        keys, lengths, ids, values, realised = [], [], [], [], []
        for start in range(0, len(shard_pairs), rows_per_pass):
            part = shard_pairs[start : start + rows_per_pass]
            sequences = encode_pairs(tokenizer, [p for p, _ in part], [c for _, c in part]).to(where)
            rows = torch.arange(len(part), device=where)
            for token_ids, positions in real_token_rows(sequences, rows):
                keys.append(sequence_key(token_ids))
                lengths.append(len(positions))
            for _, scored in teacher.score(sequences, rows, top_k, False, rows_per_pass, chunk_size):
                ids.append(scored.topk_ids.int().cpu())
                values.append(scored.topk_logprobs.cpu())
                realised.append(scored.token_logprobs.cpu())
        tensors = {"keys": torch.tensor(keys, dtype=torch.int64),
                   "offsets": torch.tensor([0, *lengths], dtype=torch.int64).cumsum(0),
                   "topk_ids": torch.cat(ids), "topk_logprobs": torch.cat(values), "token_logprobs": torch.cat(realised)}
        name = f"shard-{len(shards):05d}.safetensors"
        temporary = out / f".tmp-{name}-{os.getpid()}"
        save_file(tensors, str(temporary))
        apply_umask(temporary)  # safetensors writes 0600
        os.replace(temporary, out / name)
        shards.append(name)
        total_tokens += len(tensors["token_logprobs"])
        total_bytes += (out / name).stat().st_size
    manifest = {"format": FORMAT, "teacher": teacher_path, "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
                "data_file": str(Path(data_path).resolve()), "data_sha256": file_sha256(data_path), "top_k": top_k,
                "rows": len(pairs), "tokens": total_tokens, "shards": shards, "bytes": total_bytes,
                "bytes_per_token": total_bytes / max(total_tokens, 1)}  # fmt: skip
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2))
    return manifest
