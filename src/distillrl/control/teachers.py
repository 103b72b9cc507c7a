"""Training control teachers with stable-baselines3 (`distillrl control teacher --env ID --algo ALGO --out FILE`).

PPO (discrete or Box actions; on Box with VecNormalize, whose statistics are saved beside the model as
`FILE.vecnormalize.pkl`), SAC and TD3 (Box actions). Every network is 64 x 64.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from distillrl.core.errors import UserError

TEACHER_ALGOS = ("ppo", "sac", "td3")
TEACHER_NET = [64, 64]


@dataclass(frozen=True)
class TeacherRecipe:
    timesteps: int
    n_steps: int = 256
    n_epochs: int = 10
    gae_lambda: float = 0.95
    learning_rate: float = 3e-4


TEACHER_RECIPES = {  # PPO, the built-in environments; others use the CartPole recipe scaled by --timesteps
    "CartPole-v1": TeacherRecipe(timesteps=60_000),
    "Acrobot-v1": TeacherRecipe(timesteps=80_000, n_epochs=4, gae_lambda=0.94),
}
OFF_POLICY_RECIPES = {  # SAC / TD3 (one environment, 1 gradient step per step): steps and learning rate
    "Pendulum-v1": TeacherRecipe(timesteps=12_000, learning_rate=1e-3),
    "InvertedPendulum-v5": TeacherRecipe(timesteps=25_000),
    "InvertedDoublePendulum-v5": TeacherRecipe(timesteps=100_000),
}
DEFAULT_OFF_POLICY = TeacherRecipe(timesteps=100_000)


def vecnormalize_path(model_path: str | Path) -> Path:
    """Where a teacher's VecNormalize statistics live: beside the model, `NAME.vecnormalize.pkl`."""
    return Path(model_path).with_suffix(".vecnormalize.pkl")


def train_teacher(env_id: str, out: str | Path, timesteps: int | None = None, seed: int = 0, algo: str = "ppo",
                  continuous: bool = False) -> Path:  # fmt: skip
    """Train a teacher and save it as OUT (a stable-baselines3 .zip); returns the saved path. PPO: 8
    environments (VecNormalize on observations when `continuous`); SAC/TD3: one environment, learning starts
    after 1,000 random steps."""
    if algo not in TEACHER_ALGOS:
        raise UserError(f"--algo: unknown algorithm {algo!r} (choose from {', '.join(TEACHER_ALGOS)})")
    if algo != "ppo" and not continuous:
        raise UserError(f"--algo: {algo} needs a Box action space; {env_id} has discrete actions (use ppo)")
    torch.manual_seed(seed)
    out = Path(out).with_suffix(".zip")
    out.parent.mkdir(parents=True, exist_ok=True)
    policy_kwargs = {"net_arch": TEACHER_NET}
    if algo == "ppo":
        recipe = TEACHER_RECIPES.get(env_id, TEACHER_RECIPES["CartPole-v1"])
        env = make_vec_env(env_id, n_envs=8, seed=seed)
        if continuous:
            env = VecNormalize(env, norm_obs=True, norm_reward=True)
        model = PPO("MlpPolicy", env, seed=seed, verbose=0, n_steps=recipe.n_steps, batch_size=256,
                    n_epochs=recipe.n_epochs, gae_lambda=recipe.gae_lambda, learning_rate=recipe.learning_rate,
                    policy_kwargs=policy_kwargs, device="cpu")  # fmt: skip
    else:
        recipe = OFF_POLICY_RECIPES.get(env_id, DEFAULT_OFF_POLICY)
        env = make_vec_env(env_id, n_envs=1, seed=seed)
        model = {"sac": SAC, "td3": TD3}[algo]("MlpPolicy", env, seed=seed, verbose=0, learning_rate=recipe.learning_rate,
                                               learning_starts=1000, policy_kwargs=policy_kwargs, device="cpu")  # fmt: skip
    model.learn(timesteps or recipe.timesteps, progress_bar=False)
    model.save(str(out.with_suffix("")))
    if isinstance(env, VecNormalize):
        env.save(str(vecnormalize_path(out)))
    return out
