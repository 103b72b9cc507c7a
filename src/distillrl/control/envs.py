"""Vectorised gymnasium environments and the acting loops over them (collection and evaluation)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import gymnasium
import numpy as np

from distillrl.control.actions import ActionMap
from distillrl.core.errors import UserError

Actor = Callable[[np.ndarray], np.ndarray]  # observations [n, obs_dim] -> actions [n] (Discrete) or [n, d] (Box)


class BoxActions(gymnasium.vector.VectorActionWrapper):
    """Actors act in the normalised box [-1, 1]^d; the shared ActionMap unscales to the env's bounds and clips."""

    def __init__(self, env: gymnasium.vector.VectorEnv):
        super().__init__(env)
        self.action_map = ActionMap(env.single_action_space.low, env.single_action_space.high)
        self.single_action_space = gymnasium.spaces.Box(-1.0, 1.0, env.single_action_space.shape, np.float32)
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, env.num_envs)

    def actions(self, actions: np.ndarray) -> np.ndarray:
        return self.action_map.unscale(actions)


def make_vector_env(env_id: str, num_envs: int, seed: int) -> gymnasium.vector.VectorEnv:
    """`num_envs` copies of `env_id` stepping in lockstep; a finished episode resets in the same step. A Box
    action space is seen as the normalised box [-1, 1]^d (BoxActions)."""
    try:
        envs = gymnasium.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                                  vector_kwargs={"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP})  # fmt: skip
    except (gymnasium.error.Error, ImportError) as error:  # ImportError: a MuJoCo env without the mujoco package
        raise UserError(f"env: cannot make {env_id!r} ({error})") from error
    if not isinstance(envs.single_observation_space, gymnasium.spaces.Box):
        raise UserError(f"env: {env_id} has a {type(envs.single_observation_space).__name__} observation space; "
                        "policy distillation here needs a Box of observations")  # fmt: skip
    space = envs.single_action_space
    if isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1 and np.isfinite([space.low, space.high]).all():
        envs = BoxActions(envs)
    elif not isinstance(space, gymnasium.spaces.Discrete):
        raise UserError(f"env: {env_id} has a {type(space).__name__} action space; policy distillation here needs "
                        "Discrete actions or a bounded one-dimensional Box")  # fmt: skip
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    return envs


@dataclass
class Transitions:
    """What an actor did for `n` steps in each of the environments, flattened to [steps * num_envs]."""

    states: np.ndarray  # [S, obs_dim] the state acted in
    actions: np.ndarray  # [S] (Discrete) or [S, d] (Box, in the normalised box)
    rewards: np.ndarray  # [S]
    dones: np.ndarray  # [S] the episode ended at this step (terminated or truncated)
    terminated: np.ndarray  # [S] ended by the task (no bootstrapping), not by the time limit
    final_states: np.ndarray  # [S, obs_dim] the state after the action (the last one before a reset)
    episode_returns: list[float] = field(default_factory=list)


class Collector:
    """Keeps environments running across calls, so episodes continue from one collection to the next."""

    def __init__(self, envs: gymnasium.vector.VectorEnv, seed: int):
        self.envs = envs
        self.observations, _ = envs.reset(seed=seed)
        self.running = np.zeros(envs.num_envs)

    def collect(self, actor: Actor, num_steps: int) -> Transitions:
        """At least `num_steps` steps in total (rounded up to whole vector steps), acting with `actor`."""
        parts: dict[str, list] = {k: [] for k in ("states", "actions", "rewards", "dones", "terminated", "final")}
        returns = []
        for _ in range(-(-num_steps // self.envs.num_envs)):
            actions = np.asarray(actor(self.observations))
            next_obs, rewards, terminated, truncated, info = self.envs.step(actions)
            done = terminated | truncated
            final = next_obs.copy()
            if done.any():  # SAME_STEP autoreset: next_obs already holds the new episode's first state
                for i in np.nonzero(done)[0]:
                    final[i] = info["final_obs"][i]
            self.running += rewards
            returns.extend(self.running[done].tolist())
            self.running[done] = 0.0
            for key, value in zip(parts, (self.observations, actions, rewards, done, terminated, final)):
                parts[key].append(np.asarray(value))
            self.observations = next_obs
        stack = {k: np.stack(v, axis=1).reshape(-1, *np.asarray(v[0]).shape[1:]) for k, v in parts.items()}
        return Transitions(stack["states"].astype(np.float32), stack["actions"], stack["rewards"].astype(np.float32),
                           stack["dones"], stack["terminated"], stack["final"].astype(np.float32), returns)  # fmt: skip


@dataclass
class Evaluation:
    mean_return: float
    std_return: float
    episodes: int
    microseconds_per_action: float


def evaluate_actor(env_id: str, actor: Actor, episodes: int = 100, seed: int = 10_000, num_envs: int = 10) -> Evaluation:
    """Mean and std of the undiscounted return over `episodes` full episodes (episodes / num_envs per env, so
    short episodes are not over-counted), and the actor's time per single action (batch of one)."""
    envs = make_vector_env(env_id, num_envs, seed)
    per_env = -(-episodes // num_envs)
    observations, _ = envs.reset(seed=seed)
    running, finished = np.zeros(num_envs), [[] for _ in range(num_envs)]
    while min(len(f) for f in finished) < per_env:
        observations, rewards, terminated, truncated, _ = envs.step(np.asarray(actor(observations)))
        running += rewards
        for i in np.nonzero(terminated | truncated)[0]:
            if len(finished[i]) < per_env:
                finished[i].append(running[i])
            running[i] = 0.0
    envs.close()
    returns = np.array([r for f in finished for r in f][:episodes])
    single = observations[:1]
    started = time.perf_counter()
    for _ in range(200):
        actor(single)
    microseconds = (time.perf_counter() - started) / 200 * 1e6
    return Evaluation(float(returns.mean()), float(returns.std()), len(returns), microseconds)
