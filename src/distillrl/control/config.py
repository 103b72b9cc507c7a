"""The control distillation config (`distillrl control distill CONFIG.yaml`), checked like the LM configs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from distillrl.config import Strict, load_config


class ControlTeacherConfig(Strict):
    path: str = Field("builtin", description="`builtin` (the shipped teacher for env), `builtin:weak` (CartPole-v1's weak "
                      "teacher) or a saved SB3 PPO/A2C/SAC/TD3 model")
    vecnormalize: str | None = Field(None, description="the teacher's VecNormalize statistics (default: "
                                     "PATH.vecnormalize.pkl beside the model, when it exists)")


class ControlStudentConfig(Strict):
    hidden: list[int] = Field(default_factory=lambda: [16, 16], description="MLP hidden widths")
    lr: float = Field(3e-3, gt=0)
    head: Literal["auto", "squashed", "gaussian"] = Field(
        "auto", description="Box actions: `squashed` (tanh of a Gaussian, SAC/TD3 teachers) or `gaussian` (clipped, "
        "PPO teachers); auto: the teacher's"
    )


class MethodConfig(Strict):
    name: Literal["forward_kl", "nll", "mse", "dagger", "hybrid", "tree", "linear", "polynomial"]
    label: str | None = Field(None, description="name in the report (default: name)")
    loss: Literal["forward_kl", "reverse_kl", "nll", "mse"] = Field(
        "forward_kl", description="dagger / hybrid: KD term on the labelled states (mse: Box actions only)"
    )
    temperature: float = Field(1.0, gt=0, description="KD: teacher softmax temperature tau (Box: the teacher's std "
                               "is scaled by tau)")
    beta_schedule: Literal["linear", "exponential"] = Field("exponential", description="dagger/tree: teacher mix")
    beta_decay: float = Field(0.5, gt=0, lt=1, description="exponential: beta_i = decay^i")
    beta_iterations: int = Field(4, ge=1, description="linear: beta_i = max(0, 1 - i / beta_iterations)")
    kd_weight: float = Field(1.0, ge=0, description="hybrid: weight of the KD term")
    task_weight: float = Field(1.0, ge=0, description="hybrid: lambda, weight of the PPO task loss")
    max_depth: int = Field(8, ge=1, le=32, description="tree: depth of the decision tree")
    degree: int = Field(3, ge=2, le=3, description="polynomial: degree of the monomials")
    alpha: float = Field(1e-3, gt=0, description="linear: Ridge penalty; polynomial: Lasso penalty (sparsity)")

    @property
    def kd_loss(self) -> str | None:
        """The loss on the teacher's outputs: the method's own name for off-policy KD, else `loss`; None for the
        regression students (linear, polynomial, tree)."""
        if self.name in ("forward_kl", "nll", "mse"):
            return self.name
        return self.loss if self.name in ("dagger", "hybrid") else None

    @property
    def title(self) -> str:
        return self.label or self.name


class ControlConfig(Strict):
    env: str = "CartPole-v1"
    seed: int = 0
    seeds: int = Field(1, ge=1, description="runs per method, with seeds seed, seed + 1, ...")
    output_dir: str = "runs/control"
    teacher: ControlTeacherConfig = Field(default_factory=ControlTeacherConfig)
    student: ControlStudentConfig = Field(default_factory=ControlStudentConfig)
    methods: list[MethodConfig] = Field(
        default_factory=lambda: [MethodConfig(name=n) for n in ("nll", "forward_kl", "dagger", "hybrid", "tree")]
    )
    iterations: int = Field(10, ge=1, description="collect -> label -> train rounds per method")
    samples_per_iteration: int = Field(1000, ge=1, description="states visited (and teacher-labelled) per round")
    epochs: int = Field(10, ge=1, description="passes over the aggregated data per round")
    batch_size: int = Field(256, ge=1)
    num_envs: int = Field(8, ge=1)
    curve_episodes: int = Field(20, ge=1, description="episodes per point of the return-vs-samples curve")
    eval_episodes: int = Field(100, ge=1, description="episodes of the final evaluation")
    max_student_fraction: float = Field(0.125, gt=0, le=1, description="student parameters / teacher's, at most")

    @model_validator(mode="after")
    def _check(self) -> "ControlConfig":
        labels = [m.title for m in self.methods]
        duplicate = next((x for x in labels if labels.count(x) > 1), None)
        if duplicate:
            raise ValueError(f"methods: two methods are called {duplicate!r}; give one a `label`")
        return self


def load_control_config(path: str | Path | None, overrides: list[str] = ()) -> ControlConfig:
    """Read, override and validate; errors name file, line and field (as the LM configs)."""
    return load_config(path, overrides, ControlConfig)
