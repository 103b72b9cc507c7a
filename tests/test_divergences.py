"""Full-vocabulary divergences against brute force, and a one-context bandit trained to its optimum."""

import math

import pytest
import torch

from distillrl.batch import Batch
from distillrl.objectives.divergences import Divergence, jsd_per_token, skew_kl_per_token
from distillrl.scoring.logits import ChunkedLogits


def probs(logits_row):
    z = [math.exp(x) for x in logits_row]
    return [v / sum(z) for v in z]


def brute_kl(p, q):
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q))


def brute(name, s_row, t_row, beta=0.5, alpha=0.1, reverse=False, tau=1.0):
    p_s, p_t = probs([x / tau for x in s_row]), probs([x / tau for x in t_row])
    if name == "forward_kl":
        return tau**2 * brute_kl(p_t, p_s)
    if name == "jsd":
        m = [beta * t + (1 - beta) * s for s, t in zip(p_s, p_t)]
        return beta * brute_kl(p_t, m) + (1 - beta) * brute_kl(p_s, m)
    if reverse:
        return brute_kl(p_s, [(1 - alpha) * t + alpha * s for s, t in zip(p_s, p_t)])
    return brute_kl(p_t, [alpha * t + (1 - alpha) * s for s, t in zip(p_s, p_t)])


CASES = [
    ("forward_kl", {"temperature": 1.0}, {}),
    ("forward_kl", {"temperature": 2.0}, {"tau": 2.0}),
    ("jsd", {"beta": 0.5}, {"beta": 0.5}),
    ("jsd", {"beta": 0.1}, {"beta": 0.1}),
    ("jsd", {"beta": 0.9}, {"beta": 0.9}),
    ("skew_kl", {"alpha": 0.1}, {"alpha": 0.1}),
    ("skew_kl", {"alpha": 0.3, "skew_reverse": True}, {"alpha": 0.3, "reverse": True}),
]


@pytest.mark.parametrize("name,settings,brute_settings", CASES)
def test_divergence_loss_matches_brute_force(name, settings, brute_settings):
    torch.manual_seed(0)
    student, teacher = torch.randn(23, 9) * 2, torch.randn(23, 9) * 2
    batch = Batch(torch.zeros(23, dtype=torch.long), torch.zeros(23, dtype=torch.long),
                  ChunkedLogits.from_logits(student), num_tokens=23,
                  teacher_logits=ChunkedLogits.from_logits(teacher), chunk_size=5)  # fmt: skip
    loss, _ = Divergence(name, **settings)(batch)
    expected = sum(brute(name, s.tolist(), t.tolist(), **brute_settings) for s, t in zip(student, teacher)) / 23
    assert abs(loss.item() - expected) < 1e-5


def test_jsd_ends_are_forward_and_reverse_kl():
    torch.manual_seed(1)
    s, t = torch.log_softmax(torch.randn(4, 7), -1), torch.log_softmax(torch.randn(4, 7), -1)
    forward = (t.exp() * (t - s)).sum(-1)
    reverse = (s.exp() * (s - t)).sum(-1)
    torch.testing.assert_close(jsd_per_token(s, t, 0.0), forward)
    torch.testing.assert_close(jsd_per_token(s, t, 1.0), reverse)
    # near the ends JSD_beta / beta -> forward KL (GKD's limit), and the special case is continuous in shape
    assert torch.allclose(jsd_per_token(s, t, 1e-4) / 1e-4, forward, rtol=1e-2)
    assert torch.all(skew_kl_per_token(s, t, 0.1) <= forward + 1e-6)  # skewing toward the teacher bounds the KL


@pytest.mark.parametrize("name,settings", [("forward_kl", {}), ("jsd", {"beta": 0.5}), ("skew_kl", {"alpha": 0.1})])
def test_bandit_converges_to_the_teacher(name, settings):
    """One context, the student's parameters are its logits: minimising the divergence reaches pi_T."""
    torch.manual_seed(2)
    teacher = torch.log_softmax(torch.tensor([2.0, 0.5, -1.0, 0.0, 1.0, -2.0, 0.3, -0.5]), -1)
    theta = torch.zeros(8, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.05)
    objective = Divergence(name, **settings)
    for _ in range(1500):
        batch = Batch(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                      ChunkedLogits.from_logits(theta[None]), num_tokens=1,
                      teacher_logits=ChunkedLogits.from_logits(teacher[None]))  # fmt: skip
        loss, _ = objective(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (torch.softmax(theta, -1) - teacher.exp()).abs().max() < 1e-3
