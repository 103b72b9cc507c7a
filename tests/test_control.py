"""Policy distillation for control: losses against brute force, the acting loops, short runs that learn."""

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("gymnasium", reason="the control extra is part of the test install")

from distillrl.cli import app  # noqa: E402
from distillrl.config import ConfigError  # noqa: E402
from distillrl.control.config import MethodConfig, load_control_config  # noqa: E402
from distillrl.control.envs import Collector, evaluate_actor, make_vector_env  # noqa: E402
from distillrl.control.losses import generalized_advantages, policy_kd_loss  # noqa: E402
from distillrl.control.methods import teacher_share  # noqa: E402
from distillrl.control.run import run_control_distillation  # noqa: E402


def softmax(row, tau=1.0):
    z = [math.exp(x / tau) for x in row]
    return [v / sum(z) for v in z]


@pytest.mark.parametrize("loss,tau", [("forward_kl", 1.0), ("forward_kl", 0.1), ("reverse_kl", 1.0), ("nll", 1.0)])
def test_policy_kd_losses_match_brute_force(loss, tau):
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 3), torch.randn(6, 3) * 2
    expected = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        p_s, p_t = softmax(s_row), softmax(t_row, tau)
        if loss == "forward_kl":
            expected += sum(t * (math.log(t) - math.log(s)) for s, t in zip(p_s, p_t))
        elif loss == "reverse_kl":
            expected += sum(s * (math.log(s) - math.log(t)) for s, t in zip(p_s, p_t))
        else:
            expected += -math.log(p_s[max(range(3), key=lambda a: t_row[a])])
    assert abs(policy_kd_loss(student, teacher, loss, tau).item() - expected / 6) < 1e-5


def test_generalized_advantages_match_the_recursion_with_truncation():
    rewards = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    values = torch.tensor([[0.5], [0.4], [0.3], [0.2]])
    next_values = torch.tensor([[0.4], [0.3], [0.9], [0.1]])  # step 2 ends by truncation: bootstrap 0.9
    dones, terminated = torch.tensor([[0.0], [0.0], [1.0], [1.0]]), torch.tensor([[0.0], [0.0], [0.0], [1.0]])
    gamma, lam = 0.9, 0.8
    expected, running = [0.0] * 4, 0.0
    for t in reversed(range(4)):
        delta = 1.0 + gamma * (1 - terminated[t, 0].item()) * next_values[t, 0].item() - values[t, 0].item()
        running = delta + gamma * lam * (1 - dones[t, 0].item()) * running
        expected[t] = running
    ours = generalized_advantages(rewards, values, next_values, dones, terminated, gamma, lam)
    torch.testing.assert_close(ours[:, 0], torch.tensor(expected))


def test_teacher_share_schedules():
    exponential = MethodConfig(name="dagger", beta_decay=0.5)
    linear = MethodConfig(name="dagger", beta_schedule="linear", beta_iterations=4)
    assert [teacher_share(exponential, i) for i in range(4)] == [1.0, 0.5, 0.25, 0.125]
    assert [teacher_share(linear, i) for i in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert teacher_share(MethodConfig(name="forward_kl"), 7) == 1.0  # off-policy: the teacher always acts


def test_collector_and_evaluation_count_whole_episodes():
    collector = Collector(make_vector_env("CartPole-v1", 4, seed=0), seed=0)
    batch = collector.collect(lambda s: np.zeros(len(s), dtype=np.int64), 200)
    assert batch.states.shape == (200, 4) and len(batch.episode_returns) >= 4
    assert sum(batch.dones) == len(batch.episode_returns)  # every finished episode is counted once
    assert all(8 <= r <= 12 for r in batch.episode_returns)  # always pushing left topples the pole fast
    result = evaluate_actor("CartPole-v1", lambda s: np.zeros(len(s), dtype=np.int64), episodes=30)
    assert result.episodes == 30 and 8 <= result.mean_return <= 12


def small_config(tmp_path, methods, **extra):
    overrides = [f"output_dir={tmp_path}", "iterations=3", "samples_per_iteration=400", "curve_episodes=5",
                 "eval_episodes=20", f"methods={methods}", *[f"{k}={v}" for k, v in extra.items()]]  # fmt: skip
    return load_control_config(None, overrides)


def test_short_runs_of_every_method_learn_to_balance(tmp_path):
    """Three rounds of 400 labelled states: every student goes far beyond a random policy (about 22)."""
    config = small_config(tmp_path, "[{name: nll}, {name: forward_kl}, {name: dagger}, {name: hybrid, task_weight: 0.05}, "
                                    "{name: tree, max_depth: 6}]")  # fmt: skip
    summary = run_control_distillation(config)
    assert summary["teacher"]["return"] > 450 and summary["random_return"] < 40
    for method in summary["methods"]:
        assert method["return"] > 150, method
        assert method["parameters"] <= summary["teacher"]["parameters"] / 8
        assert method["curve"]["labelled"] == [400, 800, 1200]
    assert (tmp_path / "returns.png").stat().st_size > 10_000 and "| dagger |" in (tmp_path / "results.md").read_text()


def test_a_student_larger_than_an_eighth_of_the_teacher_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"student.hidden: \[64, 64\] gives 4610 parameters"):
        run_control_distillation(small_config(tmp_path, "[{name: nll}]", **{"student.hidden": "[64, 64]"}))


def test_control_cli_reports_config_errors_with_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("env: CartPole-v1\nmethods:\n  - name: dagger\n    beta_schedule: cubic\n")
    result = CliRunner().invoke(app, ["control", "distill", str(path)])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # the console wraps long lines
    assert f"{path}:4: methods.0.beta_schedule: Input should be 'linear' or 'exponential'" in output


def test_builtin_teacher_variants_resolve_and_unknown_ones_are_named():
    from distillrl.control.policies import builtin_teacher_path, resolve_teacher

    weak = resolve_teacher("builtin:weak", "CartPole-v1")
    strong = resolve_teacher("builtin", "CartPole-v1")
    assert builtin_teacher_path("CartPole-v1", "weak").name == "CartPole-v1-weak.zip"
    states = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    assert not torch.allclose(weak.logits(states), strong.logits(states))
    with pytest.raises(ValueError, match=r"teacher.path: no built-in teacher 'builtin:nope' for CartPole-v1 \(have: .*CartPole-v1-weak"):
        resolve_teacher("builtin:nope", "CartPole-v1")


# --- Box actions ---------------------------------------------------------------------------------------------

from distillrl.control.heads import GaussianHead  # noqa: E402
from distillrl.control.losses import gaussian_kd_loss, gaussian_kl  # noqa: E402


def random_gaussians(seed: int, shape=(40, 3), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=dtype) * scale for scale in (1.0, 0.4, 1.0, 0.4)]


def test_gaussian_kl_matches_torch_distributions():
    mean_p, log_std_p, mean_q, log_std_q = random_gaussians(0)
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mean_p, log_std_p.exp()),
                                                 torch.distributions.Normal(mean_q, log_std_q.exp())).sum(-1)  # fmt: skip
    torch.testing.assert_close(gaussian_kl(mean_p, log_std_p, mean_q, log_std_q), expected, atol=1e-6, rtol=0)
    assert gaussian_kl(mean_p, log_std_p, mean_p, log_std_p).abs().max() < 1e-12


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gaussian_kl_matches_monte_carlo_on_u_and_on_tanh_u(seed):
    """The closed form is the KL of the pre-squash Gaussians and, exactly, of the tanh-squashed ones (bijection):
    a 200,000-sample estimate of each lies within 4 standard errors."""
    mean_p, log_std_p, mean_q, log_std_q = (x[:1] for x in random_gaussians(seed, (1, 2)))
    closed = gaussian_kl(mean_p, log_std_p, mean_q, log_std_q).item()
    g = torch.Generator().manual_seed(seed)
    u = mean_p + log_std_p.exp() * torch.randn(200_000, 2, generator=g, dtype=torch.float64)
    p, q = torch.distributions.Normal(mean_p, log_std_p.exp()), torch.distributions.Normal(mean_q, log_std_q.exp())
    on_u = (p.log_prob(u) - q.log_prob(u)).sum(-1)
    head = GaussianHead(2, squashed=True)
    a = torch.tanh(u)
    on_tanh = head.log_prob(torch.cat([mean_p, log_std_p], -1), a) - head.log_prob(torch.cat([mean_q, log_std_q], -1), a)
    for samples in (on_u, on_tanh):
        standard_error = samples.std().item() / math.sqrt(len(samples))
        assert abs(samples.mean().item() - closed) < 4 * standard_error, (closed, samples.mean().item())


def clipped_kl(mean_p: float, std_p: float, mean_q: float, std_q: float) -> float:
    """KL of the actions clip(u, -1, 1): point masses at +-1 plus the density inside, by quadrature."""
    normal_p, normal_q = torch.distributions.Normal(mean_p, std_p), torch.distributions.Normal(mean_q, std_q)
    grid = torch.linspace(-1.0, 1.0, 200_001, dtype=torch.float64)
    log_p, log_q = normal_p.log_prob(grid), normal_q.log_prob(grid)
    inside = torch.trapezoid(log_p.exp() * (log_p - log_q), grid).item()
    bound = torch.tensor(1.0, dtype=torch.float64)
    edges = 0.0
    for mass_p, mass_q in ((normal_p.cdf(-bound), normal_q.cdf(-bound)), (1 - normal_p.cdf(bound), 1 - normal_q.cdf(bound))):
        edges += (torch.special.xlogy(mass_p, mass_p) - torch.special.xlogy(mass_p, mass_q)).item()
    return inside + edges


@pytest.mark.parametrize("pair", [(0.8, 0.5, 1.1, 0.4), (0.0, 1.0, 0.5, 0.7), (-1.5, 0.3, -0.5, 0.8)])
def test_the_kl_of_clipped_actions_is_at_most_the_gaussian_kl(pair):
    mean_p, std_p, mean_q, std_q = pair
    gaussian = gaussian_kl(*(torch.tensor([[x]], dtype=torch.float64) for x in (mean_p, math.log(std_p), mean_q, math.log(std_q)))).item()
    clipped = clipped_kl(*pair)
    assert 0 < clipped < gaussian, (clipped, gaussian)  # e.g. 0.3359 < 0.3394 for the first pair


def test_gaussian_kd_losses_against_their_formulas():
    torch.manual_seed(0)
    student, teacher = torch.randn(64, 4, dtype=torch.float64), torch.randn(64, 4, dtype=torch.float64)
    (m_s, l_s), (m_t, l_t) = student.chunk(2, -1), teacher.chunk(2, -1)
    tau = 0.5
    forward = gaussian_kd_loss(student, teacher, "forward_kl", tau).item()
    assert abs(forward - gaussian_kl(m_t, l_t + math.log(tau), m_s, l_s).mean().item()) < 1e-12
    floor = math.log(0.05)
    teacher_narrow = torch.cat([m_t, torch.full_like(l_t, -20.0)], -1)
    reverse = gaussian_kd_loss(student, teacher_narrow, "reverse_kl").item()
    assert abs(reverse - gaussian_kl(m_s, l_s, m_t, torch.full_like(l_t, floor)).mean().item()) < 1e-9
    mse = gaussian_kd_loss(student, teacher, "mse").item()
    assert abs(mse - (m_s.tanh() - m_t.tanh()).pow(2).sum(-1).mean().item()) < 1e-12
    unsquashed = gaussian_kd_loss(student, teacher, "mse", squashed=False).item()
    assert abs(unsquashed - (m_s - m_t.clamp(-1, 1)).pow(2).sum(-1).mean().item()) < 1e-12
    # nll of teacher samples: its expectation is the forward KL plus the teacher's entropy
    many = teacher[:1].expand(100_000, 4)
    nll = gaussian_kd_loss(student[:1].expand(100_000, 4), many, "nll").item()
    entropy = torch.distributions.Normal(m_t[:1], l_t[:1].exp()).entropy().sum().item()
    expected = gaussian_kl(m_t[:1], l_t[:1], m_s[:1], l_s[:1]).item() + entropy
    assert abs(nll - expected) < 0.01 * abs(expected), (nll, expected)


def test_box_environments_act_in_the_normalised_box():
    envs = make_vector_env("Pendulum-v1", 2, seed=0)
    assert envs.single_action_space.low.tolist() == [-1.0] and envs.action_map.high.tolist() == [2.0]
    assert envs.action_map.unscale(np.array([[-1.0], [0.5], [3.0]], dtype=np.float32)).tolist() == [[-2.0], [1.0], [2.0]]
    batch = Collector(envs, seed=0).collect(lambda s: np.ones((len(s), 1), dtype=np.float32), 20)
    assert batch.actions.shape == (20, 1) and batch.states.shape == (20, 3)


@pytest.fixture(scope="module")
def tiny_teachers(tmp_path_factory):
    """A few-step PPO (with VecNormalize) and TD3 on Pendulum-v1: their numbers, not their returns, are tested."""
    from distillrl.control.teachers import train_teacher

    root = tmp_path_factory.mktemp("teachers")
    return {algo: train_teacher("Pendulum-v1", root / f"{algo}.zip", steps, 0, algo, continuous=True)
            for algo, steps in (("ppo", 256), ("td3", 1100))}  # fmt: skip


@pytest.mark.parametrize("algo", ["sac", "ppo", "td3"])
def test_the_teacher_wrapper_acts_as_sb3_predict(algo, tiny_teachers):
    """unscale(tanh(mean)) (SAC, TD3) and unscale(mean) clipped (PPO, through its VecNormalize statistics loaded
    by SB3's own VecNormalize.load) against model.predict(deterministic=True) on 100 states."""
    import gymnasium
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from distillrl.control.policies import TeacherPolicy, resolve_teacher

    teacher = resolve_teacher("builtin", "Pendulum-v1") if algo == "sac" else TeacherPolicy(tiny_teachers[algo])
    assert teacher.algorithm == algo and teacher.head.name == ("gaussian" if algo == "ppo" else "squashed")
    space = gymnasium.make("Pendulum-v1").observation_space
    space.seed(0)
    states = np.stack([space.sample() for _ in range(100)])
    seen = states
    if algo == "ppo":
        assert teacher.normalizer is not None
        stats = VecNormalize.load(str(tiny_teachers[algo].with_suffix(".vecnormalize.pkl")),
                                  DummyVecEnv([lambda: gymnasium.make("Pendulum-v1")]))  # fmt: skip
        stats.training = False
        seen = stats.normalize_obs(states)
        assert np.abs(seen - states).max() > 0.1  # the statistics do something
    ours = teacher.action_map.unscale(teacher.act(states))
    sb3 = teacher.model.predict(seen, deterministic=True)[0]
    assert ours.shape == sb3.shape == (100, 1)
    if algo == "ppo":  # its Gaussian lives in env units: the round trip through the box costs float32 rounding
        assert np.abs(ours - sb3).max() <= 1e-6 and np.abs(sb3).max() < 2.0
    else:
        assert np.abs(ours - sb3).max() == 0.0


def test_pendulum_students_from_the_shipped_sac_teacher(tmp_path):
    """Pendulum-v1, 2 rounds of 5,000 teacher-labelled states: a 32 x 32 forward-KL MLP reaches >= 90% of the
    teacher's normalised return, a degree-3 sparse polynomial (DAgger) >= 80% with <= 25 terms, and a linear
    policy stays below 30% (it cannot swing up): the bed tells the students apart."""
    config = load_control_config(None, [
        "env=Pendulum-v1", f"output_dir={tmp_path}", "iterations=2", "samples_per_iteration=5000", "epochs=30",
        "curve_episodes=10", "eval_episodes=20", "student.hidden=[32, 32]", "max_student_fraction=0.3",
        "methods=[{name: forward_kl}, {name: polynomial, degree: 3}, {name: linear}]"])  # fmt: skip
    summary = run_control_distillation(config)
    assert summary["head"] == "squashed" and summary["teacher"]["return"] > -250
    assert summary["random_return"] < -1000
    methods = {m["method"]: m for m in summary["methods"]}
    assert methods["forward_kl"]["normalised"] >= 0.9, methods["forward_kl"]
    assert methods["polynomial"]["normalised"] >= 0.8 and methods["polynomial"]["parameters"] <= 25
    assert methods["linear"]["normalised"] < 0.3 and methods["linear"]["parameters"] <= 4
    assert methods["forward_kl"]["curve"]["returns"][-1] > methods["forward_kl"]["curve"]["returns"][0] + 300
    assert methods["polynomial"]["formula"].startswith("u0 = ") and "tanh" in methods["polynomial"]["formula"]
    assert methods["forward_kl"]["sampled_return"] is not None and methods["linear"]["sampled_return"] is None
    assert "    u0 = " in (tmp_path / "results.md").read_text()


def test_readable_students_on_discrete_actions_regress_the_logits(tmp_path):
    """CartPole-v1 (a linear policy balances it): linear and degree-2 polynomial students of the teacher's centred
    logits, acting by argmax, pass 150 (random: about 22) and print one formula line per action."""
    summary = run_control_distillation(small_config(tmp_path, "[{name: linear}, {name: polynomial, degree: 2, alpha: 0.01}]"))
    for method in summary["methods"]:
        assert method["return"] > 150, method
        lines = method["formula"].splitlines()
        assert lines[0].startswith("z0 = ") and lines[1].startswith("z1 = ") and lines[2] == "action = argmax_k z_k"
    assert summary["methods"][0]["parameters"] <= 10  # 2 actions x (4 coefficients + an intercept)


def test_a_ppo_teacher_distils_through_the_gaussian_head(tmp_path, tiny_teachers):
    """The PPO teacher (VecNormalize, state-independent std): forward KL of a fitted MLP student drops >= 10x on
    2,000 teacher-labelled states, and every method (hybrid's density mixture included) runs on its head."""
    from distillrl.control.heads import GaussianHead
    from distillrl.control.policies import MLPPolicy, TeacherPolicy

    teacher = TeacherPolicy(tiny_teachers["ppo"])
    batch = Collector(make_vector_env("Pendulum-v1", 8, seed=0), seed=0).collect(lambda s: teacher.act(s, False), 2000)
    labels = teacher.logits(batch.states)
    torch.manual_seed(0)
    student = MLPPolicy(3, GaussianHead(1, squashed=False), [32, 32])
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    states = torch.as_tensor(batch.states)
    kl = lambda: gaussian_kd_loss(student(states), labels, "forward_kl", squashed=False).item()  # noqa: E731
    before = kl()
    for _ in range(300):
        loss = gaussian_kd_loss(student(states), labels, "forward_kl", squashed=False)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert kl() < before / 10, (before, kl())
    config = small_config(tmp_path, "[{name: dagger}, {name: hybrid}, {name: polynomial, degree: 2}]", env="Pendulum-v1",
                          iterations=1, **{"teacher.path": str(tiny_teachers["ppo"]), "student.hidden": "[8]"})  # fmt: skip
    summary = run_control_distillation(config)
    assert summary["head"] == "gaussian" and summary["teacher"]["sampled_return"] is not None
    assert "a_j = clip(u_j, -1, 1)" in summary["methods"][2]["formula"]
