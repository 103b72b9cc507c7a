"""The distillation methods for control policies. Each runs `iterations` rounds of collect -> label -> train and
records the student's return after every round against the number of teacher-labelled states so far.

- `forward_kl`, `nll`, `mse`: off-policy KD, on states the teacher visits (the teacher acts, sampling its policy).
- `dagger`: on-policy, on states the student visits; round i acts with the teacher with probability beta_i
  (linear or exponential schedule, beta_0 = 1) and trains on everything aggregated so far.
- `tree`, `linear`, `polynomial`: DAgger into a readable student (readable.py): a decision tree, a Ridge
  formula, a sparse polynomial (Lasso).
- `hybrid` (refined policy distillation): PPO on the environment's reward plus the KD term on the visited
  states, L = kd_weight L_KD + lambda L_task. Like DAgger it starts from the teacher's states: round i acts
  with the teacher with probability beta_i, else with the student's sampled action, and PPO's ratio is taken
  against that behaviour policy mu = beta_i pi_T + (1 - beta_i) pi_old (an importance-corrected, clipped
  update; beta = 0 is plain PPO). On Box actions mu is a mixture of the two Gaussian (or squashed) densities.

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
from distillrl.control.losses import generalized_advantages
from distillrl.control.policies import MLPPolicy, TeacherPolicy, mlp
from distillrl.control.readable import FormulaPolicy, TreePolicy
from distillrl.models.loading import count_parameters
from distillrl.objectives.policy_gradient import clipped_surrogate


@dataclass
class MethodResult:
    """A method's curve (return after each round against labelled states) and its final evaluation."""

    title: str
    parameters: int
    labelled: list[int] = field(default_factory=list)  # teacher-labelled states after each round
    returns: list[float] = field(default_factory=list)  # mean return after each round
    final: Evaluation | None = None  # deterministic actions (argmax, the mean, tanh of the mean)
    final_sampled: Evaluation | None = None  # sampled actions (students with a distribution)
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
        if isinstance(self.best, MLPPolicy):
            self.final_sampled = evaluate_actor(config.env, lambda s: self.best.act(s, greedy=False),
                                                config.eval_episodes, seed=config.seed + 2)  # fmt: skip
        return self


def teacher_share(method: MethodConfig, round_index: int) -> float:
    """beta_i, the probability that the teacher acts in round i: 1 for off-policy KD; DAgger's schedule
    exponential decay^i or linear max(0, 1 - i / beta_iterations)."""
    if method.name in ("forward_kl", "nll", "mse"):
        return 1.0
    if method.beta_schedule == "linear":
        return max(0.0, 1.0 - round_index / method.beta_iterations)
    return method.beta_decay**round_index


def mixed_actor(teacher: TeacherPolicy, student_act, beta: float, rng: np.random.Generator):
    """Per state: the teacher's sampled action with probability beta, else `student_act`'s action."""

    def act(states: np.ndarray) -> np.ndarray:
        use_teacher = rng.random(len(states)) < beta
        if use_teacher.all():
            return teacher.act(states, greedy=False)
        actions = student_act(states)
        if use_teacher.any():
            rows = use_teacher.reshape(-1, *[1] * (actions.ndim - 1))
            actions = np.where(rows, teacher.act(states, greedy=False), actions)
        return actions

    return act


def fit_mlp(student: MLPPolicy, optimizer, states: torch.Tensor, teacher_outputs: torch.Tensor, method: MethodConfig,
            config: ControlConfig, generator: torch.Generator) -> None:  # fmt: skip
    """`epochs` shuffled passes of minibatch KD over the aggregated states."""
    for _ in range(config.epochs):
        for batch in torch.randperm(len(states), generator=generator).split(config.batch_size):
            outputs = student(states[batch])
            loss = student.head.kd_loss(outputs, teacher_outputs[batch], method.kd_loss, method.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def make_student(method: MethodConfig, config: ControlConfig, head, obs_dim: int):
    """The method's student: a readable one (tree, linear, polynomial) or the MLP of `student.hidden`."""
    if method.name == "tree":
        return TreePolicy(head, method.max_depth, config.seed)
    if method.name in ("linear", "polynomial"):
        return FormulaPolicy(head, 1 if method.name == "linear" else method.degree, method.alpha)
    return MLPPolicy(obs_dim, head, config.student.hidden)


def distill_by_aggregation(config: ControlConfig, method: MethodConfig, teacher: TeacherPolicy, head, obs_dim: int,
                           on_round: Callable[[], None]) -> MethodResult:  # fmt: skip
    """Off-policy KD, DAgger and the readable students: collect with the beta-mixed actor, label with the
    teacher, aggregate, refit the student on everything so far."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    student = make_student(method, config, head, obs_dim)
    if isinstance(student, MLPPolicy):
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
        if isinstance(student, MLPPolicy):
            fit_mlp(student, optimizer, all_states, all_labels, method, config, generator)
        else:
            student.fit(all_states.numpy(), all_labels)
        result.record_round(config, student, len(all_states))
        on_round()
    result.parameters = count_parameters(student) if isinstance(student, MLPPolicy) else result.best.num_parameters
    return result.finish(config, started)


def distill_hybrid(config: ControlConfig, method: MethodConfig, teacher: TeacherPolicy, head, obs_dim: int,
                   on_round: Callable[[], None]) -> MethodResult:  # fmt: skip
    """Refined policy distillation: the beta-mixed behaviour acts (the student sampling), every visited state is
    teacher-labelled, and the loss is kd_weight * KD + task_weight * (PPO clipped surrogate + 0.5 value error)
    with GAE advantages."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    student = MLPPolicy(obs_dim, head, config.student.hidden)
    critic = mlp(obs_dim, 1, [64, 64])  # used in training only; not part of the deployed student
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


def behaviour_logprobs(head, student_outputs: torch.Tensor, teacher_outputs: torch.Tensor, actions: torch.Tensor,
                       beta: float) -> torch.Tensor:  # fmt: skip
    """log mu(a|s) for the mixture behaviour mu = beta pi_T + (1 - beta) pi_student (probabilities over discrete
    actions, densities over Box ones): log(beta pi_T(a) + (1 - beta) pi_S(a)) by logsumexp, [n]."""
    weights = torch.tensor([beta, 1.0 - beta]).log()[:, None]
    parts = torch.stack([head.log_prob(teacher_outputs, actions), head.log_prob(student_outputs, actions)])
    return torch.logsumexp(parts + weights, 0)


def update_hybrid(student: MLPPolicy, critic: torch.nn.Module, optimizer, batch: Transitions, teacher: TeacherPolicy,
                  beta: float, method: MethodConfig, config: ControlConfig, generator: torch.Generator) -> None:  # fmt: skip
    num_envs = config.num_envs
    as_time_major = lambda x: torch.as_tensor(x, dtype=torch.float32).reshape(num_envs, -1).T  # noqa: E731
    states, actions = torch.as_tensor(batch.states), torch.as_tensor(batch.actions)
    with torch.no_grad():
        teacher_logits = teacher.logits(batch.states)
        old_logprobs = behaviour_logprobs(student.head, student(states), teacher_logits, actions, beta)
        values = critic(states).squeeze(-1)
        next_values = critic(torch.as_tensor(batch.final_states)).squeeze(-1)
        advantages = generalized_advantages(as_time_major(batch.rewards), as_time_major(values),
                                            as_time_major(next_values), as_time_major(batch.dones),
                                            as_time_major(batch.terminated)).T.reshape(-1)  # fmt: skip
        returns = advantages + values
    for _ in range(config.epochs):
        for rows in torch.randperm(len(states), generator=generator).split(config.batch_size):
            outputs = student(states[rows])
            logprobs = student.head.log_prob(outputs, actions[rows])
            normalised = (advantages[rows] - advantages[rows].mean()) / (advantages[rows].std() + 1e-8)
            task = clipped_surrogate(logprobs - old_logprobs[rows], normalised, 0.2, 0.2).mean()
            task = task + 0.5 * (critic(states[rows]).squeeze(-1) - returns[rows]).pow(2).mean()
            kd = student.head.kd_loss(outputs, teacher_logits[rows], method.loss, method.temperature)
            loss = method.kd_weight * kd + method.task_weight * task
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def run_method(config: ControlConfig, method: MethodConfig, teacher: TeacherPolicy, head, obs_dim: int,
               on_round: Callable[[], None] = lambda: None) -> MethodResult:  # fmt: skip
    """Run one method with the student's action `head`; `on_round` is called after each of its `iterations`
    rounds (progress)."""
    if method.name == "hybrid":
        return distill_hybrid(config, method, teacher, head, obs_dim, on_round)
    return distill_by_aggregation(config, method, teacher, head, obs_dim, on_round)
