"""Layer 2, models: model files on disk and what is read from them, above the foundation only.

- `loading`: causal LMs and tokenizers by name (`zoo:NAME`, a run directory, a model directory, a hub id), a PEFT
  adapter over its base, the checks of a checkpoint's files;
- `model_files`: a run's models resolved once (tokenizers and configs kept);
- `student`: the trainable student, with a fresh LoRA adapter when asked;
- `vocabulary`: tokenizers compared by meaning, the ids every head scores alike;
- `tokenizer`: the zoo's character tokenizer; `compat`: transformers-version differences; `export`: a trained
  model as a plain checkpoint;
- `zoo_paths`, `run_paths`: where the shipped zoo and a run's `final/` and checkpoints live.
"""
