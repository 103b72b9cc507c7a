"""Divergences against brute force at every fidelity, and a one-context bandit trained to its optimum."""

import math

import pytest
import torch

from distillrl.objectives.batch import Batch
from distillrl.objectives.divergences import Divergence, jsd_per_token, skew_kl_per_token
from distillrl.scoring.logits import ChunkedLogits
from distillrl.scoring.topk import topk_with_tail


def probs(logits_row):
    z = [math.exp(x) for x in logits_row]
    return [v / sum(z) for v in z]


def brute_kl(p, q):
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q) if a > 0)


def brute_divergence(name, p_s, p_t, beta=0.5, alpha=0.1, reverse=False):
    if name == "reverse_kl":
        return brute_kl(p_s, p_t)
    if name == "forward_kl":
        return brute_kl(p_t, p_s)
    if name == "jsd" and beta in (0.0, 1.0):  # the special-cased ends: forward and reverse KL
        return brute_kl(p_t, p_s) if beta == 0.0 else brute_kl(p_s, p_t)
    if name == "jsd":
        m = [beta * t + (1 - beta) * s for s, t in zip(p_s, p_t)]
        return beta * brute_kl(p_t, m) + (1 - beta) * brute_kl(p_s, m)
    if reverse:
        return brute_kl(p_s, [(1 - alpha) * t + alpha * s for s, t in zip(p_s, p_t)])
    return brute_kl(p_t, [alpha * t + (1 - alpha) * s for s, t in zip(p_s, p_t)])


def buckets(p, keep):
    """The k kept probabilities, then the tail bucket (1 - their sum, summed directly)."""
    return [p[i] for i in keep] + [sum(p[i] for i in range(len(p)) if i not in keep)]


def brute(name, s_row, t_row, fidelity="full", k=None, tau=1.0, **settings):
    p_s, p_t = probs([x / tau for x in s_row]), probs([x / tau for x in t_row])
    if fidelity == "topk":
        keep = sorted(range(len(p_t)), key=lambda i: -p_t[i])[:k]
        p_s, p_t = buckets(p_s, keep), buckets(p_t, keep)
    return tau**2 * brute_divergence(name, p_s, p_t, **settings)


CASES = [
    ("reverse_kl", {}, {}),
    ("forward_kl", {"temperature": 1.0}, {}),
    ("forward_kl", {"temperature": 2.0}, {"tau": 2.0}),
    ("jsd", {"beta": 0.5}, {"beta": 0.5}),
    ("jsd", {"beta": 0.1}, {"beta": 0.1}),
    ("jsd", {"beta": 0.9}, {"beta": 0.9}),
    ("jsd", {"beta": 0.0}, {"beta": 0.0}),
    ("jsd", {"beta": 1.0}, {"beta": 1.0}),
    ("skew_kl", {"alpha": 0.1}, {"alpha": 0.1}),
    ("skew_kl", {"alpha": 0.3, "skew_reverse": True}, {"alpha": 0.3, "reverse": True}),
]
VOCAB = 9


def make_batch(student, teacher, fidelity, k=None):
    n = student.shape[0]
    fields = {}
    if fidelity == "topk":
        fields["teacher_topk_ids"], fields["teacher_topk_logprobs"] = topk_with_tail(ChunkedLogits.from_logits(teacher), k, 4)
    else:
        fields["teacher_logits"] = ChunkedLogits.from_logits(teacher)
    return Batch(torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), num_tokens=n,
                 policy_logits=ChunkedLogits.from_logits(student), chunk_size=5, **fields)  # fmt: skip


FIDELITIES = [("full", None), ("topk", 3), ("topk", 1), ("topk", VOCAB)]


@pytest.mark.parametrize(
    "name,settings,brute_settings,fidelity,k",
    # topk keeps the teacher at temperature 1 (the config refuses tau != 1 there)
    [(*case, *f) for case in CASES for f in FIDELITIES if f[0] == "full" or "tau" not in case[2]],
)
def test_divergence_loss_matches_brute_force(name, settings, brute_settings, fidelity, k):
    torch.manual_seed(0)
    student, teacher = torch.randn(23, VOCAB) * 2, torch.randn(23, VOCAB) * 2
    loss, _ = Divergence(name, fidelity, **settings)(make_batch(student, teacher, fidelity, k))
    expected = sum(brute(name, s.tolist(), t.tolist(), fidelity, k, **brute_settings) for s, t in zip(student, teacher)) / 23
    assert abs(loss.item() - expected) < 1e-5


@pytest.mark.parametrize("name,settings", [(c[0], c[1]) for c in CASES if c[1].get("temperature", 1.0) == 1.0])
def test_topk_with_k_equal_to_the_vocabulary_equals_full_value_and_gradient(name, settings):
    torch.manual_seed(3)
    teacher = torch.randn(17, VOCAB) * 2
    results = []
    for fidelity in ("full", "topk"):
        student = (torch.randn(17, VOCAB, generator=torch.Generator().manual_seed(4)) * 2).requires_grad_()
        loss, _ = Divergence(name, fidelity, **settings)(make_batch(student, teacher, fidelity, VOCAB))
        results.append((loss, torch.autograd.grad(loss, student)[0]))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-6, rtol=0)
    assert torch.isfinite(results[1][1]).all()


def test_topk_tail_bucket_is_the_mass_outside_the_top_k():
    torch.manual_seed(5)
    logits = torch.randn(6, VOCAB)
    ids, logprobs = topk_with_tail(ChunkedLogits.from_logits(logits), 3)
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(ids, p.topk(3).indices)
    torch.testing.assert_close(logprobs[:, -1].exp(), 1 - p.topk(3).values.sum(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(logprobs.exp().sum(-1), torch.ones(6), atol=1e-6, rtol=0)


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


@pytest.mark.parametrize("name,settings", [("reverse_kl", {}), ("forward_kl", {}), ("jsd", {"beta": 0.5}),
                                           ("skew_kl", {"alpha": 0.1})])  # fmt: skip
@pytest.mark.parametrize("fidelity", ["full", "topk"])
def test_bandit_converges_to_the_teacher(name, settings, fidelity):
    """One context, the student's parameters are its logits: minimising the divergence reaches pi_T
    (at top-k 4 of 8: the teacher's top 4 exactly, and the right total mass on the other 4)."""
    torch.manual_seed(2)
    teacher = torch.log_softmax(torch.tensor([2.0, 0.5, -1.0, 0.0, 1.0, -2.0, 0.3, -0.5]), -1)
    theta = torch.zeros(8, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.05)
    objective = Divergence(name, fidelity, **settings)
    for _ in range(1500):
        loss, _ = objective(make_batch(theta[None], teacher[None], fidelity, 4))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    student = torch.softmax(theta, -1)
    if fidelity == "full":
        assert (student - teacher.exp()).abs().max() < 1e-3
    else:
        top = teacher.topk(4).indices
        assert (student[top] - teacher.exp()[top]).abs().max() < 1e-3
        assert abs(student.sum() - student[top].sum() - (1 - teacher.exp()[top].sum())) < 1e-3
