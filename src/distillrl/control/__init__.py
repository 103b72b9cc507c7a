"""An application: policy distillation for control. Compress a teacher policy that acts in an environment into a
small student.

Same names as the language-model side: `forward_kl` (Rusu et al.'s policy distillation, teacher temperature),
`nll` (behaviour cloning of the teacher's actions), `reverse_kl`; sequences become the states an actor visits.
Methods: off-policy KD on teacher-visited states, DAgger on student-visited states (teacher mixed in by a beta
schedule), `hybrid` (refined policy distillation: PPO on the reward + a KD term), `tree` (a decision tree by
DAgger-style aggregation), and on Box actions the readable `linear` and `polynomial` students. Teachers are
stable-baselines3 models (PPO/A2C on discrete actions; SAC, TD3 and PPO with VecNormalize on Box actions, read
through the action heads of heads.py); environments are gymnasium's (MuJoCo's through the mujoco package).
"""

from __future__ import annotations

from distillrl.core.errors import UserError

CONTROL_EXTRA = "gymnasium (with mujoco for the MuJoCo envs), stable-baselines3 and scikit-learn"


def require_control_dependencies() -> None:
    """Fail with one clear line when the `control` extra is not installed."""
    missing = []
    for module in ("gymnasium", "stable_baselines3", "sklearn"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UserError(
            f"distillrl.control needs {CONTROL_EXTRA} (missing: {', '.join(missing)}); "
            "install them with: pip install -e '.[control]'"
        )
