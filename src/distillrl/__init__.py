"""distillrl: knowledge distillation the way reinforcement learning does it.

The Python API (distillrl/api.py; the command line is `distillrl`):

    import distillrl
    config = distillrl.load_config("configs/opd.yaml", {"optim.steps": 4, "output_dir": "runs/api"})
    result = distillrl.train(config)
    result.metrics[-1]["eval/accuracy_greedy"], result.final_model
    distillrl.evaluate("zoo:student-base", task="arith", n=20)["accuracy_greedy"]

The names below load on first use, so that `import distillrl` (and `distillrl --help`) stays light: torch and
transformers load with `train` or `evaluate`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

PUBLIC = {
    "load_config": "distillrl.config",
    "TrainConfig": "distillrl.config",
    "ConfigError": "distillrl.core.errors",
    "UserError": "distillrl.core.errors",
    "train": "distillrl.api",
    "evaluate": "distillrl.api",
    "TrainResult": "distillrl.api",
}
__all__ = sorted(PUBLIC)


def __getattr__(name: str):
    """`distillrl.NAME` for the public names: imported from their module when first asked for (PEP 562)."""
    if name not in PUBLIC:
        raise AttributeError(f"module 'distillrl' has no attribute {name!r}")
    return getattr(importlib.import_module(PUBLIC[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *PUBLIC])
