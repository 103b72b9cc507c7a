"""`distillrl bench speed` at the smoke size: both tools step, the JSON and the tables carry every field."""

import builtins
import json

import pytest
from typer.testing import CliRunner

from distillrl.bench.speed import DISTILLRL_FULL, DISTILLRL_SAMPLED, TRL, build_models, schedule
from distillrl.bench.speed_distillrl import run_distillrl_segment
from distillrl.bench.speed_setup import char_tokenizer, random_prompts, word_tokenizer
from distillrl.bench.speed_spec import SETTINGS
from distillrl.bench.speed_trl import TrlMissing, import_trl
from distillrl.cli import app
from distillrl.models.loading import load_causal_lm

TINY = SETTINGS["tiny"]


def test_a_prompt_of_n_words_or_characters_is_exactly_n_ids():
    words = word_tokenizer(1000)
    prompt = random_prompts("words", 1000, count=1, length=64, seed=0)[0]
    ids = words(prompt)["input_ids"]
    assert len(ids) == 64 and words.eos_token_id not in ids
    chars = char_tokenizer()
    prompt = random_prompts("char", len(chars) - 1, count=1, length=32, seed=0)[0]
    assert len(chars(prompt)["input_ids"]) == 32


def test_the_char_models_cannot_emit_eos(tmp_path):
    models = build_models(TINY, tmp_path)
    student = load_causal_lm(models.student)
    assert student.config.vocab_size == char_tokenizer().eos_token_id  # EOS is the first id past the vocabulary
    assert len(models.prompt_list) == TINY.prompts * 4


def test_schedule_alternates_who_goes_first_and_ends_with_the_sampled_loss():
    assert schedule(2) == [(0, DISTILLRL_FULL), (0, TRL), (1, TRL), (1, DISTILLRL_FULL), (1, DISTILLRL_SAMPLED)]


def test_distillrl_segment_times_every_step(tmp_path):
    models = build_models(TINY, tmp_path / "models")
    segment = run_distillrl_segment(TINY, models, "full", steps=2, seed=0, run_dir=tmp_path / "run", round_index=0)
    assert len(segment.step_seconds) == 2 and all(s > 0 for s in segment.step_seconds)
    assert segment.completion_tokens == [TINY.prompts * TINY.new_tokens] * 2
    assert segment.peak_memory_bytes > 0


def test_missing_trl_is_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_trl(name, *args, **kwargs):
        if name == "trl":
            raise ImportError("No module named 'trl'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_trl)
    with pytest.raises(TrlMissing, match=r"\.\[bench\]"):
        import_trl()


def test_bench_speed_tiny_compares_both_tools(tmp_path):
    pytest.importorskip("trl")
    out = tmp_path / "speed.json"
    result = CliRunner().invoke(app, ["bench", "speed", "--config", "tiny", "--rounds", "1", "--steps", "2",
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "s/step" in result.output and "floor decomposition" in result.output
    saved = json.loads(out.read_text())
    assert set(saved["tools"]) == {DISTILLRL_FULL, TRL, DISTILLRL_SAMPLED}
    for stats in saved["tools"].values():
        assert stats["step_seconds"] > 0 and stats["timed_steps"] == 1
        assert stats["completion_tokens_per_step"] == TINY.prompts * TINY.new_tokens
        assert stats["completion_tokens_per_second"] > 0 and stats["peak_memory_bytes"] > 0
    trl_phases = saved["tools"][TRL]["phase_seconds"]
    assert trl_phases["generation"] > 0 and trl_phases["teacher"] > 0
    assert saved["ratios"]["distillrl_full_over_trl_step_seconds"] > 0
    assert len(saved["ratios"]["distillrl_full_over_trl_per_round"]) == 1
    assert saved["environment"]["trl"] and len(saved["segments"]) == 3


def test_a_bad_override_fails_before_any_model_is_built(tmp_path):
    result = CliRunner().invoke(app, ["bench", "speed", "--config", "tiny", "--set", "rollout.bogus=1",
                                      "--out", str(tmp_path / "x.json")])  # fmt: skip
    assert result.exit_code == 2 and "rollout.bogus: unknown key" in result.output
    assert not (tmp_path / "x.json").exists()
