"""The benchmark's experiments, one module each, in report order; each has NAME and run(ctx) -> ExperimentResult."""

EXPERIMENTS = ("opd_vs_rl", "lambda_sweep", "exopd_gain", "strong_to_weak", "fusion", "rl_with_teacher", "continual",
               "one_prompt", "mode_seeking", "forking_tokens")  # fmt: skip

SHARED_RUNS = {"strong_to_weak": "opd_vs_rl", "rl_with_teacher": "opd_vs_rl", "exopd_gain": "lambda_sweep"}
"""Experiments that reuse another's runs (by run name, within one process): they run in that one's worker."""

MINUTES_PER_SEED = {"opd_vs_rl": 13, "lambda_sweep": 6, "exopd_gain": 3, "strong_to_weak": 4, "fusion": 6,
                    "rl_with_teacher": 0, "continual": 1, "one_prompt": 2, "mode_seeking": 0, "forking_tokens": 1}  # fmt: skip
"""Rough training time of each experiment per seed on one core (--workers balances its processes by it)."""


def worker_groups(names: list[str], workers: int) -> list[list[str]]:
    """Split experiments over `workers` processes: experiments sharing runs stay together (SHARED_RUNS), the
    groups are balanced by MINUTES_PER_SEED (largest first onto the least loaded), each in report order."""
    bundles: dict[str, list[str]] = {}
    for name in names:
        bundles.setdefault(SHARED_RUNS.get(name, name), []).append(name)
    loads, groups = [0] * workers, [[] for _ in range(workers)]
    costs = {id(bundle): sum(MINUTES_PER_SEED.get(name, 1) for name in bundle) for bundle in bundles.values()}
    for bundle in sorted(bundles.values(), key=lambda b: costs[id(b)], reverse=True):
        index = loads.index(min(loads))
        loads[index] += costs[id(bundle)]
        groups[index] += bundle
    return [sorted(group, key=EXPERIMENTS.index) for group in groups if group]
