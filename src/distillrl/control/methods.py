"""The distillation methods for control policies. Each runs `iterations` rounds of collect -> label -> train and
records the student's return after every round against the number of teacher-labelled states so far.

- `forward_kl`, `nll`: off-policy KD, on states the teacher visits (the teacher acts, sampling its policy).
- `dagger`: on-policy, on states the student visits; round i acts with the teacher with probability beta_i
  (linear or exponential schedule, beta_0 = 1) and trains on everything aggregated so far.
- `tree`: DAgger into a decision tree (teacher's greedy action as the label).
- `hybrid` (refined policy distillation): PPO on the environment's reward plus the KD term on the visited
  states, L = kd_weight L_KD + lambda L_task. Like DAgger it starts from the teacher's states: round i acts
  with the teacher with probability beta_i, else with the student's sampled action, and PPO's ratio is taken
  against that behaviour policy mu = beta_i pi_T + (1 - beta_i) pi_old (an importance-corrected, clipped
  update; beta = 0 is plain PPO).

Every method returns the best of its rounds on the curve's validation episodes (DAgger's rule, also VIPER's);
the final evaluation runs on other episodes.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from distillrl.control.config import ControlConfig, MethodConfig
from distillrl.control.envs import Collector, Evaluation, Transitions, evaluate_actor, make_vector_env
from distillrl.control.losses import generalized_advantages, policy_kd_loss
from distillrl.control.policies import MLPPolicy, TeacherPolicy, TreePolicy
from distillrl.models.loading import count_parameters
from distillrl.objectives.policy_gradient import clipped_surrogate


@dataclass
class MethodResult:
    """A method's curve (return after each round against labelled states) and its final evaluation."""

    title: str
    parameters: int
    labelled: list[int] = field(default_factory=list)  # teacher-labelled states after each round
    returns: list[float] = field(default_factory=list)  # mean return after each round
    final: Evaluation | None = None
    seconds: float = 0.0
    best: object = None  # the best student so far on the validation episodes

    def record_round(self, config: ControlConfig, student, labelled: int) -> None:
        """Evaluate the student on the validation episodes, add the point to the curve, keep it if best."""
        self.labelled.append(labelled)
        self.returns.append(evaluate_actor(config.env, student.act, config.curve_episodes, seed=config.seed + 1).mean_return)
        if self.returns[-1] >= max(self.returns):
            self.best = copy.deepcopy(student)

    def finish(self, config: ControlConfig, started: float) -> "MethodResult":
        """Final evaluation of the best round's student, on episodes the curve never saw."""
        self.seconds = time.perf_counter() - started
        self.final = evaluate_actor(config.env, self.best.act, config.eval_episodes, seed=config.seed + 2)
        return self


def teacher_share(method: MethodConfig, round_index: int) -> float:
    """beta_i, the probability that the teacher acts in round i: 1 for off-policy KD; DAgger's schedule
    exponential decay^i or linear max(0, 1 - i / beta_iterations)."""
    if method.name in ("forward_kl", "nll"):
        return 1.0
    if method.beta_schedule == "linear":
        return max(0.0, 1.0 - round_index / method.beta_iterations)
    return method.beta_decay**round_index


def mixed_actor(teacher: TeacherPolicy, student_act, beta: float, rng: np.random.Generator):
    """Per state: the teacher's sampled action with probability beta, else `student_act`'s action."""

    def act(states: np.ndarray) -> np.ndarray:
        use_teacher = rng.random(len(states)) < beta
        actions = student_act(states) if not use_teacher.all() else np.zeros(len(states), dtype=np.int64)
        if use_teacher.any():
            actions = np.where(use_teacher, teacher.act(states, greedy=False), actions)
        return actions

    return act


def fit_mlp(student: MLPPolicy, optimizer, states: torch.Tensor, teacher_logits: torch.Tensor, method: MethodConfig,
            config: ControlConfig, generator: torch.Generator) -> None:  # fmt: skip
    """`epochs` shuffled passes of minibatch KD over the aggregated states."""
    loss_name = method.name if method.name in ("forward_kl", "nll") else method.loss
    for _ in range(config.epochs):
        for batch in torch.randperm(len(states), generator=generator).split(config.batch_size):
            loss = policy_kd_loss(student(states[batch]), teacher_logits[batch], loss_name, method.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def distill_by_aggregation(config: ControlConfig, method: MethodConfig, teacher: TeacherPolicy, obs_dim: int,
                           num_actions: int, on_round: Callable[[], None]) -> MethodResult:  # fmt: skip
    """Off-policy KD, DAgger and the tree: collect with the beta-mixed actor, label with the teacher, aggregate,
    refit the student on everything so far."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if method.name == "tree":
        student = TreePolicy(method.max_depth, config.seed)
    else:
        student = MLPPolicy(obs_dim, num_actions, config.student.hidden)
        optimizer = torch.optim.Adam(student.parameters(), lr=config.student.lr)
    collector = Collector(make_vector_env(config.env, config.num_envs, config.seed), config.seed)
    result = MethodResult(method.title, 0)
    states, labels, started = [], [], time.perf_counter()
    for round_index in range(config.iterations):
        actor = mixed_actor(teacher, student.act, teacher_share(method, round_index), rng)  # round 0: beta = 1
        visited = collector.collect(actor, config.samples_per_iteration).states
        states.append(torch.as_tensor(visited))
        labels.append(teacher.logits(visited))
        all_states, all_labels = torch.cat(states), torch.cat(labels)
        if method.name == "tree":
            student.fit(all_states.numpy(), all_labels.argmax(-1).numpy())
        else:
            fit_mlp(student, optimizer, all_states, all_labels, method, config, generator)
        result.record_round(config, student, len(all_states))
        on_round()
    result.parameters = result.best.num_parameters if method.name == "tree" else count_parameters(student)
    return result.finish(config, started)


def distill_hybrid(config: ControlConfig, method: MethodConfig, teacher: TeacherPolicy, obs_dim: int,
                   num_actions: int, on_round: Callable[[], None]) -> MethodResult:  # fmt: skip
    """Refined policy distillation: the beta-mixed behaviour acts (the student sampling), every visited state is
    teacher-labelled, and the loss is kd_weight * KD + task_weight * (PPO clipped surrogate + 0.5 value error)
    with GAE advantages."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    student = MLPPolicy(obs_dim, num_actions, config.student.hidden)
    critic = MLPPolicy(obs_dim, 1, [64, 64])  # used in training only; not part of the deployed student
    optimizer = torch.optim.Adam([*student.parameters(), *critic.parameters()], lr=config.student.lr)
    collector = Collector(make_vector_env(config.env, config.num_envs, config.seed), config.seed)
    result, labelled, started = MethodResult(method.title, count_parameters(student)), 0, time.perf_counter()
    rng = np.random.default_rng(config.seed)
    for round_index in range(config.iterations):
        beta = teacher_share(method, round_index)
        sampled_student = lambda s: student.act(s, greedy=False)  # noqa: E731
        batch = collector.collect(mixed_actor(teacher, sampled_student, beta, rng), config.samples_per_iteration)
        update_hybrid(student, critic, optimizer, batch, teacher, beta, method, config, generator)
        labelled += len(batch.states)
        result.record_round(config, student, labelled)
        on_round()
    return result.finish(config, started)


def behaviour_logprobs(student_logits: torch.Tensor, teacher_logits: torch.Tensor, actions: torch.Tensor,
                       beta: float) -> torch.Tensor:  # fmt: skip
    """log mu(a|s) for the mixture behaviour mu = beta pi_T + (1 - beta) pi_student: [n]."""
    mixture = beta * torch.softmax(teacher_logits, -1) + (1.0 - beta) * torch.softmax(student_logits, -1)
    return mixture.gather(-1, actions[:, None]).squeeze(-1).log()


def update_hybrid(student: MLPPolicy, critic: MLPPolicy, optimizer, batch: Transitions, teacher: TeacherPolicy,
                  beta: float, method: MethodConfig, config: ControlConfig, generator: torch.Generator) -> None:  # fmt: skip
    num_envs = config.num_envs
    as_time_major = lambda x: torch.as_tensor(x, dtype=torch.float32).reshape(num_envs, -1).T  # noqa: E731
    states, actions = torch.as_tensor(batch.states), torch.as_tensor(batch.actions)
    with torch.no_grad():
        teacher_logits = teacher.logits(batch.states)
        old_logprobs = behaviour_logprobs(student(states), teacher_logits, actions, beta)
        values = critic(states).squeeze(-1)
        next_values = critic(torch.as_tensor(batch.final_states)).squeeze(-1)
        advantages = generalized_advantages(as_time_major(batch.rewards), as_time_major(values),
                                            as_time_major(next_values), as_time_major(batch.dones),
                                            as_time_major(batch.terminated)).T.reshape(-1)  # fmt: skip
        returns = advantages + values
    for _ in range(config.epochs):
        for rows in torch.randperm(len(states), generator=generator).split(config.batch_size):
            logits = student(states[rows])
            logprobs = torch.log_softmax(logits, -1).gather(-1, actions[rows, None]).squeeze(-1)
            normalised = (advantages[rows] - advantages[rows].mean()) / (advantages[rows].std() + 1e-8)
            task = clipped_surrogate(logprobs - old_logprobs[rows], normalised, 0.2, 0.2).mean()
            task = task + 0.5 * (critic(states[rows]).squeeze(-1) - returns[rows]).pow(2).mean()
            kd = policy_kd_loss(logits, teacher_logits[rows], method.loss, method.temperature)
            loss = method.kd_weight * kd + method.task_weight * task
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def run_method(config: ControlConfig, method: MethodConfig, teacher: TeacherPolicy, obs_dim: int, num_actions: int,
               on_round: Callable[[], None] = lambda: None) -> MethodResult:  # fmt: skip
    """Run one method; `on_round` is called after each of its `iterations` rounds (progress)."""
    if method.name == "hybrid":
        return distill_hybrid(config, method, teacher, obs_dim, num_actions, on_round)
    return distill_by_aggregation(config, method, teacher, obs_dim, num_actions, on_round)
