"""Training control teachers with stable-baselines3 PPO (`distillrl control teacher --env ID --out DIR`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TeacherRecipe:
    timesteps: int
    n_steps: int = 256
    n_epochs: int = 10
    gae_lambda: float = 0.95
    learning_rate: float = 3e-4


TEACHER_RECIPES = {  # the built-in environments; others use the CartPole recipe scaled by --timesteps
    "CartPole-v1": TeacherRecipe(timesteps=60_000),
    "Acrobot-v1": TeacherRecipe(timesteps=80_000, n_epochs=4, gae_lambda=0.94),
}
TEACHER_NET = [64, 64]


def train_teacher(env_id: str, out: str | Path, timesteps: int | None = None, seed: int = 0) -> Path:
    """Train a PPO teacher (8 environments, an MLP of 64 x 64 for the policy and for the value) and save it as
    OUT (a stable-baselines3 .zip). Returns the saved path."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    recipe = TEACHER_RECIPES.get(env_id, TEACHER_RECIPES["CartPole-v1"])
    torch.manual_seed(seed)
    env = make_vec_env(env_id, n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, seed=seed, verbose=0, n_steps=recipe.n_steps, batch_size=256,
                n_epochs=recipe.n_epochs, gae_lambda=recipe.gae_lambda, learning_rate=recipe.learning_rate,
                policy_kwargs={"net_arch": TEACHER_NET}, device="cpu")  # fmt: skip
    model.learn(timesteps or recipe.timesteps, progress_bar=False)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(out.with_suffix("")))
    return out.with_suffix(".zip")
