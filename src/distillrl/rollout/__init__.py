"""Layer 7, rollout engines: sampling completions from a model.

- `engines`: the RolloutEngine seam, `hf` (transformers' generate) and `static` (`static_engine`: a static KV
  cache, bucketed shapes, a compiled decode step on a GPU);
- `hf_generate`, `sampling`: generation with the project's stop rules, temperature and truncation;
- `speculative`: speculative KD's interleaving of student proposals and teacher top-k (the one rollout that
  asks a scorer, which is why scoring sits below this layer).
"""
