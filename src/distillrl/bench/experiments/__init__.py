"""The benchmark's experiments, one module each, in report order; each has NAME and run(ctx) -> ExperimentResult."""
