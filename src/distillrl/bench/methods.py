"""The methods the benchmark compares, as settings over BASE_RUN (each is the matching recipe in configs/)."""

from __future__ import annotations

from distillrl.bench.context import merged

SFT = {"rollout": {"source": "teacher"}, "objective": {"name": "sft", "fidelity": None}}  # off-policy: teacher samples
OPD = {"objective": {"name": "reverse_kl", "fidelity": "sampled"}}  # configs/opd.yaml
OPD_FULL = {"objective": {"name": "reverse_kl", "fidelity": "full"}}  # configs/opd_full.yaml


def exopd(reward_scale: float = 1.25) -> dict:
    """G-OPD with reward scale lambda (configs/exopd.yaml at 1.25)."""
    return {"objective": {"name": "gopd", "fidelity": None, "reward_scale": reward_scale}}


RL_ROLLOUT = {"rollout": {"group_size": 8}}
GRPO = merged(RL_ROLLOUT, {"teacher": None, "objective": {"name": "grpo", "fidelity": None},
                           "optim": {"lr": 1e-4, "minibatches": 2}})  # configs/grpo.yaml  # fmt: skip
RLAD = merged(RL_ROLLOUT, {"objective": {"name": "rlad", "fidelity": None, "rlad_alpha": 0.5},
                           "optim": {"lr": 1e-4, "minibatches": 2}})  # configs/rlad.yaml  # fmt: skip
KDRL = merged(RL_ROLLOUT, {"objective": {"name": "hybrid", "fidelity": None, "terms": [
    {"name": "grpo", "weight": 1.0}, {"name": "reverse_kl", "fidelity": "full", "weight": 0.1}]}})  # configs/kdrl.yaml  # fmt: skip

BY_NAME = {"opd": OPD, "exopd": exopd(1.25), "sft": SFT, "kdrl": KDRL, "grpo": GRPO, "rlad": RLAD}
"""The methods with a tuned lr (bench/sweep.py), by the name `BenchContext.lr` takes."""

STEPS = {"opd": 80, "exopd": 80, "sft": 80, "grpo": 80, "rlad": 80, "kdrl": 80}
"""Each method's full step budget on the hard bed: the lr sweep's runs and the reruns' (before any doubling)."""
EVAL_EVERY = 10  # evaluations of the hard-bed runs, every N steps (and densely early: HARD_RUN's eval.at)


def tuned(method: str, lr: float) -> dict:
    """Method `method`'s settings at learning rate `lr`."""
    return merged(BY_NAME[method], {"optim": {"lr": lr}})
