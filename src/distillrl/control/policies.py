"""The policies that act: a small MLP student and a stable-baselines3 teacher, both read through an action head
(heads.py); the scikit-learn students are in readable.py."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.vec_env import VecNormalize
from torch import Tensor, nn

from distillrl.control.actions import ActionMap
from distillrl.control.heads import LOG_STD_RANGE, CategoricalHead, GaussianHead
from distillrl.control.teachers import vecnormalize_path
from distillrl.core.errors import UserError
from distillrl.models.loading import count_parameters

BUILTIN_TEACHERS = Path(__file__).resolve().parent / "teachers"
TEACHER_ALGORITHMS = {"ppo": PPO, "a2c": A2C, "sac": SAC, "td3": TD3}


def mlp(in_dim: int, out_dim: int, hidden: list[int]) -> nn.Sequential:
    """Linear layers with tanh between them (the shape of SB3's MlpPolicy)."""
    layers, width = [], in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.Tanh()]
        width = size
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class MLPPolicy(nn.Module):
    """The head's outputs from an MLP: logits (categorical); [mean | log std] with a state-dependent log std
    clamped to SB3's [-20, 2] (squashed, as SAC's actor), or a state-independent one (gaussian, as PPO's)."""

    def __init__(self, obs_dim: int, head, hidden: list[int]):
        super().__init__()
        self.head = head
        state_dependent = not isinstance(head, GaussianHead) or head.squashed
        self.net = mlp(obs_dim, head.output_dim if state_dependent else head.action_dim, hidden)
        self.log_std = None if state_dependent else nn.Parameter(torch.zeros(head.action_dim))

    def forward(self, states: Tensor) -> Tensor:
        out = self.net(states)
        if isinstance(self.head, CategoricalHead):
            return out
        if self.log_std is not None:
            return torch.cat([out, self.log_std.expand_as(out)], -1)
        mean, log_std = out.chunk(2, -1)
        return torch.cat([mean, log_std.clamp(*LOG_STD_RANGE)], -1)

    @torch.no_grad()
    def act(self, states: np.ndarray, greedy: bool = True) -> np.ndarray:
        return self.head.act(self(torch.as_tensor(states, dtype=torch.float32)), greedy)


def load_sb3_model(path: Path):
    """The saved model, by whichever of PPO, A2C, SAC, TD3 loads it: (algorithm name, model)."""
    for name, algorithm in TEACHER_ALGORITHMS.items():
        try:
            return name, algorithm.load(str(path), device="cpu")
        except (ValueError, KeyError, RuntimeError, TypeError, AttributeError):
            continue
    raise UserError(f"teacher.path: {path} is not a stable-baselines3 PPO, A2C, SAC or TD3 model")


class TeacherPolicy:
    """A stable-baselines3 model seen through an action head: PPO/A2C (categorical or gaussian), SAC (squashed),
    TD3 (squashed mean only: deterministic, no distribution). VecNormalize statistics beside the model
    (`NAME.vecnormalize.pkl`, or `vecnormalize`) are loaded with training=False and applied to every state."""

    def __init__(self, path: str | Path, vecnormalize: str | Path | None = None):
        path = Path(path)
        if not path.exists():
            raise UserError(f"teacher.path: {path} does not exist (train one with `distillrl control teacher`)")
        self.algorithm, self.model = load_sb3_model(path)
        self.policy = self.model.policy
        self.policy.set_training_mode(False)
        space = self.policy.action_space
        self.action_map = None if hasattr(space, "n") else ActionMap(space.low, space.high)
        if self.action_map is None:
            self.head = CategoricalHead(int(space.n))
        else:
            self.head = GaussianHead(int(np.prod(space.shape)), squashed=self.algorithm in ("sac", "td3"))
        self.normalizer = self._load_normalizer(path, vecnormalize)

    def _load_normalizer(self, path: Path, vecnormalize: str | Path | None) -> VecNormalize | None:
        """VecNormalize.load without an env (statistics only), in evaluation mode: training=False, no reward
        normalisation."""
        stats = Path(vecnormalize) if vecnormalize is not None else vecnormalize_path(path)
        if not stats.exists():
            if vecnormalize is not None:
                raise UserError(f"teacher.vecnormalize: {stats} does not exist")
            return None
        try:
            normalizer = pickle.loads(stats.read_bytes())
        except Exception as error:  # unpickling raises anything; the file is the user's
            raise UserError(f"teacher.vecnormalize: {stats} is not a VecNormalize file "
                            f"({type(error).__name__})") from error
        shape = self.policy.observation_space.shape
        if not isinstance(normalizer, VecNormalize) or normalizer.obs_rms.mean.shape != shape:
            raise UserError(f"teacher.vecnormalize: {stats} holds no VecNormalize statistics for observations of "
                            f"shape {shape}")
        normalizer.training, normalizer.norm_reward = False, False
        return normalizer

    @property
    def deterministic(self) -> bool:
        """TD3: an action, no distribution (only `mse` and the regression students apply)."""
        return self.algorithm == "td3"

    @property
    def num_parameters(self) -> int:
        """Parameters of the acting path (features, policy MLP, action head, a PPO's log std); no value head."""
        if self.algorithm in ("sac", "td3"):
            return count_parameters(self.policy.actor)
        acting = [self.policy.features_extractor, self.policy.mlp_extractor.policy_net, self.policy.action_net]
        log_std = self.policy.log_std.numel() if self.action_map is not None else 0
        return sum(count_parameters(m) for m in acting) + log_std

    def observe(self, states: np.ndarray | Tensor) -> Tensor:
        """The states as the teacher sees them (VecNormalize applied)."""
        states = np.asarray(states, dtype=np.float32)
        if self.normalizer is not None:
            states = self.normalizer.normalize_obs(states).astype(np.float32)
        return torch.as_tensor(states)

    @torch.no_grad()
    def logits(self, states: np.ndarray | Tensor) -> Tensor:
        """The head's outputs at each state: log-probabilities [n, A] (categorical), or [mean | log std] [n, 2 d]
        in the box coordinates of the head (SAC: over the pre-squash u; PPO: its env-unit Gaussian rescaled by
        the ActionMap; TD3: the pre-tanh action with log std NaN, it has none)."""
        observation = self.observe(states)
        if self.action_map is None:
            return self.policy.get_distribution(observation).distribution.logits.float()
        if self.algorithm == "sac":
            mean, log_std, _ = self.policy.actor.get_action_dist_params(observation)
        elif self.algorithm == "td3":
            actor = self.policy.actor
            mean = actor.mu[:-1](actor.extract_features(observation, actor.features_extractor))  # drop the final Tanh
            log_std = torch.full_like(mean, math.nan)
        else:
            normal = self.policy.get_distribution(observation).distribution
            mean = torch.as_tensor(self.action_map.scale(normal.mean.numpy()))
            log_std = normal.stddev.log() - torch.as_tensor(np.log(self.action_map.half_width))
        return torch.cat([mean, log_std], -1).float()

    def act(self, states: np.ndarray, greedy: bool = True) -> np.ndarray:
        return self.head.act(self.logits(states), greedy)


def builtin_teacher_path(env_id: str, variant: str = "") -> Path:
    """The shipped teacher for the environment: `ENV.zip`, or `ENV-VARIANT.zip` (e.g. a deliberately weak one)."""
    return BUILTIN_TEACHERS / (f"{env_id}-{variant}.zip" if variant else f"{env_id}.zip")


def resolve_teacher(path: str, env_id: str, vecnormalize: str | None = None) -> TeacherPolicy:
    """`builtin` is the shipped teacher for the environment, `builtin:VARIANT` a shipped variant (CartPole-v1 has
    `weak`: PPO stopped at 6,000 steps); anything else is a saved SB3 model."""
    if path == "builtin" or path.startswith("builtin:"):
        builtin = builtin_teacher_path(env_id, path.partition(":")[2])
        if not builtin.exists():
            shipped = sorted(p.stem for p in BUILTIN_TEACHERS.glob("*.zip"))
            raise UserError(f"teacher.path: no built-in teacher {path!r} for {env_id} (have: {', '.join(shipped)}); "
                             f"train one with `distillrl control teacher --env {env_id} --out DIR`")  # fmt: skip
        return TeacherPolicy(builtin, vecnormalize)
    return TeacherPolicy(path, vecnormalize)
