"""The benchmark's experiments, one module each, in report order; each has NAME and run(ctx) -> ExperimentResult."""

EXPERIMENTS = ("opd_vs_rl", "lambda_sweep", "exopd_gain", "strong_to_weak", "fusion", "rl_with_teacher", "continual",
               "one_prompt", "mode_seeking", "forking_tokens")  # fmt: skip
