"""G-OPD, GRPO, RLAD and hybrid: formulas against brute force, bandits trained to their known optima."""

import math
import statistics

import pytest
import torch

from distillrl.config import ObjectiveConfig
from distillrl.objectives import build_objective
from distillrl.objectives.batch import Batch
from distillrl.objectives.gopd import GOPD
from distillrl.objectives.hybrid import Hybrid
from distillrl.objectives.policy_gradient import (
    PolicyGradient,
    clipped_surrogate,
    group_advantages,
    k3_kl,
    rlad_log_ratio,
)
from distillrl.objectives.reverse_kl import SampledReverseKL
from distillrl.scoring.logits import ChunkedLogits

TEACHER = torch.log_softmax(torch.tensor([2.0, 0.5, -1.0, 0.0, 1.0, -2.0, 0.3, -0.5]), -1)
REFERENCE = torch.log_softmax(torch.tensor([0.0, 1.0, 0.5, -0.5, -1.0, 0.8, 0.0, 0.2]), -1)


def bandit_batch(theta, tokens, **signals):
    """A one-context bandit: every sample is a one-token sequence of its own, sampled from the student."""
    n = len(tokens)
    logprobs = torch.log_softmax(theta.detach(), -1)
    return Batch(target_ids=tokens, sequence_index=torch.arange(n), num_tokens=n,
                 policy_logits=ChunkedLogits.from_logits(theta.expand(n, len(theta))),
                 old_logprobs=logprobs[tokens], chunk_size=n, **signals)  # fmt: skip


@pytest.mark.parametrize("reward_scale", [0.5, 1.0, 1.25])
def test_gopd_bandit_reaches_the_geometric_optimum(reward_scale):
    """Sampling from the student, G-OPD converges to softmax(lambda log pi_T + (1 - lambda) log pi_ref)."""
    torch.manual_seed(0)
    theta = REFERENCE.clone().requires_grad_()  # the student starts at the reference (its initial weights)
    optimizer = torch.optim.Adam([theta], lr=0.03)
    objective = GOPD(reward_scale)
    for step in range(800):
        tokens = torch.multinomial(torch.softmax(theta.detach(), -1), 4096, replacement=True)
        batch = bandit_batch(theta, tokens, teacher_logprobs=TEACHER[tokens], reference_logprobs=REFERENCE[tokens])
        loss, _ = objective(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 600:
            for group in optimizer.param_groups:
                group["lr"] = 0.003  # settle the Monte Carlo noise
    optimum = torch.softmax(reward_scale * TEACHER + (1 - reward_scale) * REFERENCE, -1)
    assert (torch.softmax(theta, -1) - optimum).abs().max() < 0.01
    if reward_scale != 1.0:  # the optimum differs from the teacher, so the test can tell them apart
        assert (optimum - TEACHER.exp()).abs().max() > 0.03


def test_gopd_at_lambda_one_is_opd():
    torch.manual_seed(1)
    theta = torch.randn(8, requires_grad=True)
    tokens = torch.multinomial(torch.softmax(theta.detach(), -1), 64, replacement=True)
    batch = bandit_batch(theta, tokens, teacher_logprobs=TEACHER[tokens], reference_logprobs=REFERENCE[tokens])
    gopd_loss, _ = GOPD(1.0)(batch)
    opd_loss, _ = SampledReverseKL()(batch)
    torch.testing.assert_close(gopd_loss, opd_loss, atol=1e-6, rtol=0)


def test_group_advantages_match_brute_force():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.25])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    expected = []
    for r, g in zip(rewards.tolist(), groups.tolist()):
        members = [x for x, h in zip(rewards.tolist(), groups.tolist()) if h == g]
        expected.append((r - statistics.mean(members)) / (statistics.stdev(members) + 1e-6))
    torch.testing.assert_close(group_advantages(rewards, groups), torch.tensor(expected), atol=1e-6, rtol=0)


def test_clipped_surrogate_k3_and_rlad_ratio_match_their_formulas():
    log_ratio = torch.tensor([0.5, -0.5, 0.1, -0.1, 0.5, -0.5])
    advantages = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    expected = [-min(math.exp(lr) * a, min(max(math.exp(lr), 0.8), 1.28) * a) for lr, a in zip(log_ratio.tolist(), advantages.tolist())]
    torch.testing.assert_close(clipped_surrogate(log_ratio, advantages, 0.2, 0.28), torch.tensor(expected))
    policy, reference = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    expected_k3 = [math.exp(r - p) - (r - p) - 1 for p, r in zip(policy.tolist(), reference.tolist())]
    torch.testing.assert_close(k3_kl(policy, reference), torch.tensor(expected_k3))
    old, teacher = torch.tensor([-1.2, -2.5]), torch.tensor([-3.0, -1.8])
    ratio = rlad_log_ratio(policy, old, teacher, alpha=0.5)  # log(pi/pi_T) = 2.0 -> clamped to 1; -0.2 kept
    torch.testing.assert_close(ratio, torch.tensor([0.5 * 0.2 + 0.5 * 1.0, 0.5 * 0.5 + 0.5 * -0.2]))


def random_rl_batch(seed):
    torch.manual_seed(seed)
    n_rows, length, vocab = 12, 5, 7
    logits = torch.randn(n_rows * length, vocab, requires_grad=True)
    targets = torch.randint(0, vocab, (n_rows * length,))
    current = torch.log_softmax(logits.detach(), -1).gather(-1, targets[:, None]).squeeze(-1)
    return logits, Batch(
        target_ids=targets, sequence_index=torch.arange(n_rows).repeat_interleave(length), num_tokens=n_rows * length,
        policy_logits=ChunkedLogits.from_logits(logits), old_logprobs=current + 0.4 * torch.randn_like(current),
        teacher_logprobs=current + torch.randn_like(current), reference_logprobs=current + 0.3 * torch.randn_like(current),
        rewards=torch.randint(0, 2, (n_rows,)).float(), group_index=torch.arange(n_rows) // 4, chunk_size=16,
    )  # fmt: skip


@pytest.mark.parametrize("kl_coef", [0.0, 0.05])
def test_rlad_with_alpha_one_is_exactly_grpo(kl_coef):
    logits, batch = random_rl_batch(2)
    results = []
    for objective in (PolicyGradient("grpo", kl_coef=kl_coef), PolicyGradient("rlad", kl_coef=kl_coef, rlad_alpha=1.0)):
        loss, metrics = objective(batch)
        results.append((loss, torch.autograd.grad(loss, logits)[0]))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-6, rtol=0)
    assert 0 < metrics["clip_fraction"] < 1  # the batch exercises the clipping
    rlad_half, _ = PolicyGradient("rlad", kl_coef=kl_coef, rlad_alpha=0.5)(batch)
    assert abs(rlad_half.item() - results[0][0].item()) > 1e-3  # and the teacher does change RLAD at alpha 0.5


def test_grpo_loss_matches_brute_force():
    logits, batch = random_rl_batch(3)
    loss, _ = PolicyGradient("grpo", kl_coef=0.1)(batch)
    policy = torch.log_softmax(logits.detach(), -1).gather(-1, batch.target_ids[:, None]).squeeze(-1).tolist()
    advantages = group_advantages(batch.rewards, batch.group_index).tolist()
    total = 0.0
    for t, (p, o, r) in enumerate(zip(policy, batch.old_logprobs.tolist(), batch.reference_logprobs.tolist())):
        a = advantages[batch.sequence_index[t]]
        ratio = math.exp(p - o)
        total += -min(ratio * a, min(max(ratio, 0.8), 1.28) * a) + 0.1 * (math.exp(r - p) - (r - p) - 1)
    assert abs(loss.item() - total / batch.num_tokens) < 1e-5


@pytest.mark.parametrize("name,at_least", [("grpo", 0.9), ("rlad", 0.45)])
def test_bandit_policy_gradient_raises_expected_reward(name, at_least):
    """Groups of 8 samples per prompt on a bandit whose reward is 1 for tokens 3 and 6: E[R] goes up.
    RLAD's trust region is anchored to a teacher that prefers other tokens, so it moves more slowly."""
    torch.manual_seed(4)
    reward = torch.zeros(8)
    reward[[3, 6]] = 1.0
    theta = torch.zeros(8, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.05)
    objective = PolicyGradient(name)
    before = (torch.softmax(theta, -1) * reward).sum().item()
    for _ in range(60):
        tokens = torch.multinomial(torch.softmax(theta.detach(), -1), 256, replacement=True)
        batch = bandit_batch(theta, tokens, teacher_logprobs=TEACHER[tokens], rewards=reward[tokens],
                             group_index=torch.arange(256) // 8)  # fmt: skip
        for _epoch in range(2):  # two epochs on the recorded pi_old: the clip keeps the second one close
            loss, _ = objective(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    after = (torch.softmax(theta, -1) * reward).sum().item()
    assert before == 0.25 and after > at_least, (before, after)


def test_hybrid_is_the_weighted_sum_of_its_terms():
    logits, batch = random_rl_batch(5)
    config = ObjectiveConfig(name="hybrid", terms=[{"name": "grpo"}, {"name": "reverse_kl", "weight": 0.3}])
    hybrid = build_objective(config)
    assert isinstance(hybrid, Hybrid) and hybrid.needs == {"old_logprobs", "rewards", "teacher_logprobs"}
    loss, metrics = hybrid(batch)
    grpo, _ = PolicyGradient("grpo")(batch)
    opd, _ = SampledReverseKL()(batch)
    torch.testing.assert_close(loss, grpo + 0.3 * opd)
    assert set(metrics) >= {"loss", "grpo/loss", "grpo/clip_fraction", "reverse_kl/loss", "reverse_kl/reverse_kl"}
