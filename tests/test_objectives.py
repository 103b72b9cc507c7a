"""Objectives against brute-force and analytic values."""

import math

import torch

from distillrl.objectives.batch import Batch
from distillrl.objectives.reverse_kl import SampledReverseKL, full_reverse_kl, importance_sampled_loss
from distillrl.objectives.sft import SFT
from distillrl.scoring.logits import ChunkedLogits


def brute_force_reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """sum_v p(v) (log p(v) - log q(v)) with explicit loops, in float64."""
    out = []
    for s_row, t_row in zip(student_logits.double(), teacher_logits.double()):
        s_norm = math.log(sum(math.exp(x) for x in s_row.tolist()))
        t_norm = math.log(sum(math.exp(x) for x in t_row.tolist()))
        kl = 0.0
        for s, t in zip(s_row.tolist(), t_row.tolist()):
            log_p, log_q = s - s_norm, t - t_norm
            kl += math.exp(log_p) * (log_p - log_q)
        out.append(kl)
    return torch.tensor(out, dtype=torch.float64)


def test_full_reverse_kl_matches_brute_force():
    torch.manual_seed(0)
    student, teacher = torch.randn(37, 11) * 2, torch.randn(37, 11) * 2
    ours = full_reverse_kl(ChunkedLogits.from_logits(student), ChunkedLogits.from_logits(teacher), chunk_size=5)
    torch.testing.assert_close(ours.double(), brute_force_reverse_kl(student, teacher), atol=1e-5, rtol=0)


def test_chunked_equals_unchunked_value_and_gradient():
    torch.manual_seed(1)
    hidden = torch.randn(50, 8, requires_grad=True)
    head = torch.randn(13, 8, requires_grad=True)
    teacher = torch.randn(50, 13)
    values, grads = [], []
    for chunk_size in (7, 50):
        kl = full_reverse_kl(ChunkedLogits(hidden, head), ChunkedLogits.from_logits(teacher), chunk_size)
        (g_hidden, g_head) = torch.autograd.grad(kl.sum(), [hidden, head])
        values.append(kl)
        grads.append((g_hidden, g_head))
    torch.testing.assert_close(values[0], values[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-6, rtol=0)
    # the hidden-state form equals the plain-logits form
    plain = full_reverse_kl(ChunkedLogits.from_logits(hidden @ head.T), ChunkedLogits.from_logits(teacher))
    torch.testing.assert_close(values[0], plain, atol=1e-5, rtol=0)


def test_chunking_never_materialises_more_than_a_chunk(monkeypatch):
    rows_seen = []
    original = ChunkedLogits.project

    def recording_project(self, hidden_chunk):
        rows_seen.append(hidden_chunk.shape[0])
        return original(self, hidden_chunk)

    monkeypatch.setattr(ChunkedLogits, "project", recording_project)
    hidden = torch.randn(64, 8, requires_grad=True)
    kl = full_reverse_kl(ChunkedLogits(hidden, torch.randn(20, 8)), ChunkedLogits(torch.randn(64, 8), torch.randn(20, 8)), 16)
    kl.sum().backward()  # backward recomputes chunks: still at most 16 rows at a time
    assert max(rows_seen) == 16 and len(rows_seen) == 4 * 2 * 2  # 4 chunks x 2 models x (forward + recompute)


def test_sampled_estimator_gradient_matches_exact_reverse_kl_gradient():
    """Monte Carlo: the mean gradient of the importance-sampled loss equals grad KL(pi_theta || pi_T)."""
    torch.manual_seed(2)
    vocab, samples = 6, 400_000
    theta = torch.randn(vocab, requires_grad=True)
    teacher_logprobs = torch.log_softmax(torch.randn(vocab) * 1.5, -1)
    exact = torch.autograd.grad(
        full_reverse_kl(ChunkedLogits.from_logits(theta[None]), ChunkedLogits.from_logits(teacher_logprobs[None])).sum(),
        theta,
    )[0]

    policy = torch.log_softmax(theta, -1)
    tokens = torch.multinomial(policy.exp().detach(), samples, replacement=True)
    batch = Batch(
        target_ids=tokens,
        sequence_index=torch.zeros(samples, dtype=torch.long),
        policy_logits=ChunkedLogits.from_logits(theta.expand(samples, vocab)),
        num_tokens=samples,
        old_logprobs=policy.detach()[tokens],
        teacher_logprobs=teacher_logprobs[tokens],
        chunk_size=100_000,
    )
    loss, metrics = SampledReverseKL()(batch)
    estimate = torch.autograd.grad(loss, theta)[0]
    # per-sample gradient g_i = (onehot(y_i) - pi) (log pi(y_i) - log pi_T(y_i)); tolerance = 5 standard errors
    p = policy.exp().detach()
    per_sample = (torch.nn.functional.one_hot(tokens, vocab) - p) * (policy.detach() - teacher_logprobs)[tokens, None]
    tolerance = 5 * per_sample.std(0) / math.sqrt(samples)
    assert torch.all((estimate - exact).abs() <= tolerance), (estimate, exact, tolerance)
    assert tolerance.max() < 0.01  # the test is sharp enough to fail a wrong sign or scale
    kl = (p * (policy.detach() - teacher_logprobs)).sum()
    assert abs(metrics["reverse_kl"] - kl.item()) < 0.01  # the logged KL estimate is unbiased too


def test_importance_sampled_loss_is_ratio_times_advantage():
    policy = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    old = torch.tensor([-1.2, -2.0, -0.4])
    advantages = torch.tensor([0.3, -1.0, 2.0])
    loss = importance_sampled_loss(policy, old, advantages, num_tokens=4)
    expected = -sum(math.exp(p - o) * a for p, o, a in zip(policy.tolist(), old.tolist(), advantages.tolist())) / 4
    assert abs(loss.item() - expected) < 1e-6
    (grad,) = torch.autograd.grad(loss, policy)
    expected_grad = [-math.exp(p - o) * a / 4 for p, o, a in zip(policy.tolist(), old.tolist(), advantages.tolist())]
    torch.testing.assert_close(grad, torch.tensor(expected_grad), atol=1e-6, rtol=0)


def test_sft_is_token_mean_cross_entropy():
    torch.manual_seed(3)
    logits = torch.randn(9, 7)
    targets = torch.randint(0, 7, (9,))
    batch = Batch(targets, torch.zeros(9, dtype=torch.long), num_tokens=9, policy_logits=ChunkedLogits.from_logits(logits), chunk_size=4)
    loss, _ = SFT()(batch)
    expected = torch.nn.functional.cross_entropy(logits, targets)
    assert abs(loss.item() - expected.item()) < 1e-5
