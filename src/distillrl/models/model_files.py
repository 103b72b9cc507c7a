"""The models of one run, each resolved once: a run names the same student and teachers in many checks (files,
vocabularies, templates, context lengths, LoRA targets) and then loads them; ModelFiles reads each model's
tokenizer and config on first use and hands the same objects to every later asker."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from distillrl.models.loading import check_model_files, load_tokenizer, model_config


class ModelFiles:
    """Tokenizers and configs by model name, loaded once (`load_tokenizer`, `model_config`); `check(name)` checks a
    local checkpoint's files once (`check_model_files`)."""

    def __init__(self):
        self.tokenizers: dict[str, PreTrainedTokenizerBase] = {}
        self.configs: dict[str, object] = {}
        self.checked: set[str] = set()

    def tokenizer(self, name: str) -> PreTrainedTokenizerBase:
        if name not in self.tokenizers:
            self.tokenizers[name] = load_tokenizer(name)
        return self.tokenizers[name]

    def config(self, name: str):
        if name not in self.configs:
            self.configs[name] = model_config(name)
        return self.configs[name]

    def check(self, name: str) -> None:
        if name not in self.checked:
            check_model_files(name)
            self.checked.add(name)
