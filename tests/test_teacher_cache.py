"""A stored teacher (offline KD): `distillrl teacher cache` scores a dataset once; a forward_kl run from the cache
equals the same run with the live teacher at top-k fidelity, with no teacher loaded; a cache written for another
data file, tokenizer or a smaller k is refused before the run starts."""

from __future__ import annotations

import json
import random
import shutil
import stat

import pytest
import torch
from typer.testing import CliRunner

from distillrl.cli import app
from distillrl.config import ConfigError, load_config
from distillrl.core.files import current_umask
from distillrl.models.loading import load_causal_lm, resolve_model_path
from distillrl.report.metrics import read_metrics
from distillrl.run.trainer import train
from distillrl.scoring.cache import CacheError, StoredTeacher
from distillrl.scoring.logits import ChunkedLogits
from distillrl.scoring.topk import narrow_topk, topk_with_tail
from distillrl.tasks import ArithTask

TOP_K = 5


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A prompts file with solutions and its cache at k = 5, written by the command."""
    root = tmp_path_factory.mktemp("cache")
    rng = random.Random(0)
    rows = [ArithTask().sample_train(rng) for _ in range(24)]
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": p.prompt, "completion": p.solution, "answer": p.answer}) + "\n"
                            for p in rows))  # fmt: skip
    result = CliRunner().invoke(app, ["teacher", "cache", "--teacher", "zoo:teacher", "--data", str(data),
                                      "--top-k", str(TOP_K), "--out", str(root / "cache"), "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return root, data, result.output


def test_the_cache_command_reports_its_size_per_token(cached):
    root, data, output = cached
    manifest = json.loads((root / "cache" / "manifest.json").read_text())
    assert manifest["teacher"] == "zoo:teacher" and manifest["top_k"] == TOP_K and manifest["rows"] <= 24
    size = sum(path.stat().st_size for path in (root / "cache").glob("shard-*.safetensors"))
    assert manifest["bytes"] == size and manifest["tokens"] > 200
    # per token: k int32 ids, k + 1 float32 log-probs, the realised token's float32 log-prob = 8k + 8 bytes
    assert 8 * TOP_K + 8 <= manifest["bytes_per_token"] < 8 * TOP_K + 8 + 2
    assert f"{manifest['bytes_per_token']:.1f} bytes per token at k={TOP_K}" in output
    umask = current_umask()
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in (root / "cache").iterdir()} == {oct(0o666 & ~umask)}


def test_each_shard_is_checked_against_the_manifest_from_its_header(cached):
    """The checks a run makes before it starts: a shard's rows and tokens (header and offsets only) add up to the
    manifest's; a manifest or shard that lies is refused with the file named (tests/test_bad_inputs.py)."""
    root, _, _ = cached
    manifest = json.loads((root / "cache" / "manifest.json").read_text())
    stored = StoredTeacher(str(root / "cache"))
    counts = [stored.check_shard(root / "cache" / name) for name in manifest["shards"]]
    assert [sum(c) for c in zip(*counts)] == [manifest["rows"], manifest["tokens"]]
    assert stored.shards == {}  # no scores were read


def forward_kl_config(root, name: str, data, **teacher):
    path = root / f"{name}.yaml"
    path.write_text(f"""
output_dir: {root / name}
teacher: {json.dumps({"path": "zoo:teacher", **teacher})}
task: {{name: prompts, train_path: {data}, test_path: {data}}}
objective: {{name: hybrid, terms: [{{name: forward_kl, fidelity: topk, top_k: {TOP_K}}}, {{name: sft, weight: 0.5}}]}}
rollout: {{source: dataset, prompts_per_step: 6}}
optim: {{steps: 4, lr: 0.003, schedule: constant}}
eval: {{every: 0, num_prompts: 4, max_new_tokens: 16}}
checkpoint: {{every: 0}}
tensorboard: false
""")
    return load_config(path)


def test_a_run_from_the_cache_equals_the_run_with_the_live_teacher(cached):
    root, data, _ = cached
    live = forward_kl_config(root, "live", data)
    stored = forward_kl_config(root, "stored", data, cache=str(root / "cache"))
    train(live, show_progress=False)
    summary = train(stored, show_progress=False)
    assert summary["teachers"] == {}  # no teacher was loaded
    for got, want in zip(read_metrics(stored.output_dir), read_metrics(live.output_dir), strict=True):
        for key in want:
            if key.startswith("train/"):
                assert got[key] == pytest.approx(want[key], abs=1e-5), key
    assert [r["train/loss"] for r in read_metrics(stored.output_dir) if "train/loss" in r][-1] < \
        [r["train/loss"] for r in read_metrics(stored.output_dir) if "train/loss" in r][0]  # fmt: skip
    weights = load_causal_lm(f"{stored.output_dir}/final").state_dict()
    for name, value in load_causal_lm(f"{live.output_dir}/final").state_dict().items():
        torch.testing.assert_close(weights[name], value, atol=1e-5, rtol=0)


def test_a_cache_for_another_data_file_tokenizer_or_smaller_k_is_refused(cached, tmp_path):
    root, data, _ = cached
    other = tmp_path / "other.jsonl"
    other.write_text(data.read_text().replace("=", " = ", 1))
    with pytest.raises(CacheError, match=rf"teacher.cache {root / 'cache'}: written from {data}, and "
                                         rf"task.train_path {other} is another file"):  # fmt: skip
        train(forward_kl_config(tmp_path, "run", other, cache=str(root / "cache")), show_progress=False)
    student = tmp_path / "student"  # the zoo student with another chat template: other token sequences
    shutil.copytree(resolve_model_path("zoo:student-base"), student)
    (student / "chat_template.jinja").write_text("{% for m in messages %}Q: {{ m['content'] }}\nA: {% endfor %}")
    config = forward_kl_config(tmp_path, "run", data, cache=str(root / "cache"))
    config.student.path = str(student)
    with pytest.raises(CacheError, match="written with the tokenizer of zoo:teacher, which differs from the student's"):
        train(config, show_progress=False)
    config = forward_kl_config(tmp_path, "run", data, cache=str(root / "cache"))
    config.objective.terms[0].top_k = TOP_K + 1
    with pytest.raises(CacheError, match=rf"holds the top {TOP_K} tokens per position, fewer than objective.top_k"):
        train(config, show_progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run directory was touched
    (tmp_path / "c.yaml").write_text(f"teacher: {{cache: {root / 'cache'}}}\nobjective: {{name: forward_kl, "
                                     "fidelity: topk}\n")  # fmt: skip
    with pytest.raises(ConfigError, match="teacher.cache: a stored teacher holds the dataset's sequences only"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="teacher.cache: a stored teacher was written from a prompts file"):
        load_config(tmp_path / "c.yaml", ["rollout.source=dataset"])


def test_narrowing_a_stored_top_k_equals_the_top_k_of_the_logits():
    logits = ChunkedLogits.from_logits(torch.randn(50, 40) * 3)
    wide_ids, wide_values = topk_with_tail(logits, 12)
    ids, values = topk_with_tail(logits, 4)
    narrowed_ids, narrowed_values = narrow_topk(wide_ids, wide_values, 4)
    assert torch.equal(narrowed_ids, ids)
    torch.testing.assert_close(narrowed_values, values, atol=1e-6, rtol=0)
