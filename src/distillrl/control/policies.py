"""The policies that act: a small MLP student, a stable-baselines3 teacher, a decision-tree student."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from distillrl.errors import UserError
from distillrl.models.loading import count_parameters

BUILTIN_TEACHERS = Path(__file__).resolve().parent / "teachers"


class MLPPolicy(nn.Module):
    """Logits over discrete actions from an MLP with tanh hidden layers (the shape of SB3's MlpPolicy)."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: list[int]):
        super().__init__()
        layers, width = [], obs_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.Tanh()]
            width = size
        layers.append(nn.Linear(width, num_actions))
        self.net = nn.Sequential(*layers)

    def forward(self, states: Tensor) -> Tensor:
        return self.net(states)

    @torch.no_grad()
    def act(self, states: np.ndarray, greedy: bool = True) -> np.ndarray:
        return actions_from_logits(self(torch.as_tensor(states, dtype=torch.float32)), greedy)


def actions_from_logits(logits: Tensor, greedy: bool) -> np.ndarray:
    """argmax of each row, or one sample of softmax(logits) per row."""
    if greedy:
        return logits.argmax(-1).numpy()
    return torch.distributions.Categorical(logits=logits).sample().numpy()


class TeacherPolicy:
    """A stable-baselines3 PPO (or A2C) model with a discrete action head, seen as logits over actions."""

    def __init__(self, path: str | Path):
        from stable_baselines3 import A2C, PPO

        path = Path(path)
        if not path.exists():
            raise UserError(f"teacher.path: {path} does not exist (train one with `distillrl control teacher`)")
        for algorithm in (PPO, A2C):
            try:
                self.model = algorithm.load(str(path), device="cpu")
                break
            except (ValueError, KeyError, RuntimeError):
                continue
        else:
            raise UserError(f"teacher.path: {path} is not a stable-baselines3 PPO or A2C model")
        self.policy = self.model.policy
        self.policy.set_training_mode(False)

    @property
    def num_parameters(self) -> int:
        """Parameters of the acting path (features, policy MLP, action head); the value head is not counted."""
        acting = [self.policy.features_extractor, self.policy.mlp_extractor.policy_net, self.policy.action_net]
        return sum(count_parameters(m) for m in acting)

    @torch.no_grad()
    def logits(self, states: np.ndarray | Tensor) -> Tensor:
        """Log-probabilities of the teacher's action distribution at each state: [n, num_actions]."""
        observation = torch.as_tensor(np.asarray(states), dtype=torch.float32)
        return self.policy.get_distribution(observation).distribution.logits.float()

    def act(self, states: np.ndarray, greedy: bool = True) -> np.ndarray:
        return actions_from_logits(self.logits(states), greedy)


def builtin_teacher_path(env_id: str, variant: str = "") -> Path:
    """The shipped teacher for the environment: `ENV.zip`, or `ENV-VARIANT.zip` (e.g. a deliberately weak one)."""
    return BUILTIN_TEACHERS / (f"{env_id}-{variant}.zip" if variant else f"{env_id}.zip")


def resolve_teacher(path: str, env_id: str) -> TeacherPolicy:
    """`builtin` is the shipped teacher for the environment, `builtin:VARIANT` a shipped variant (CartPole-v1 has
    `weak`: PPO stopped at 6,000 steps); anything else is a saved SB3 model."""
    if path == "builtin" or path.startswith("builtin:"):
        builtin = builtin_teacher_path(env_id, path.partition(":")[2])
        if not builtin.exists():
            shipped = sorted(p.stem for p in BUILTIN_TEACHERS.glob("*.zip"))
            raise UserError(f"teacher.path: no built-in teacher {path!r} for {env_id} (have: {', '.join(shipped)}); "
                             f"train one with `distillrl control teacher --env {env_id} --out DIR`")  # fmt: skip
        return TeacherPolicy(builtin)
    return TeacherPolicy(path)


class TreePolicy:
    """A scikit-learn decision tree that maps a state to an action (an auditable student)."""

    def __init__(self, max_depth: int, seed: int):
        from sklearn.tree import DecisionTreeClassifier

        self.tree = DecisionTreeClassifier(max_depth=max_depth, random_state=seed)
        self.fitted = False

    def fit(self, states: np.ndarray, actions: np.ndarray) -> None:
        self.tree.fit(states, actions)
        self.fitted = True

    def act(self, states: np.ndarray, greedy: bool = True) -> np.ndarray:
        return self.tree.predict(np.asarray(states))

    @property
    def num_parameters(self) -> int:
        """Internal nodes (a feature and a threshold each) plus leaves (an action each)."""
        nodes = self.tree.tree_.node_count
        leaves = self.tree.get_n_leaves()
        return int(2 * (nodes - leaves) + leaves)
