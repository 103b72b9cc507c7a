"""The one map between a Box policy's normalised action box [-1, 1]^d (SB3's convention) and the env's bounds.

Teacher and student act in the box; the environments (envs.make_vector_env) apply `unscale`, so no actor ever
sees env units on the action side.
"""

from __future__ import annotations

import numpy as np


class ActionMap:
    """a_env = clip(low + (a + 1) (high - low) / 2, low, high), written as SB3's `unscale_action` (same operations,
    same float32 results), and its inverse `scale` for teachers whose Gaussian lives in env units (PPO)."""

    def __init__(self, low: np.ndarray, high: np.ndarray):
        self.low, self.high = np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)

    def unscale(self, actions: np.ndarray) -> np.ndarray:
        return np.clip(self.low + (0.5 * (np.asarray(actions) + 1.0) * (self.high - self.low)), self.low, self.high)

    def scale(self, env_actions: np.ndarray) -> np.ndarray:
        """The box coordinate of an env-unit action: 2 (a_env - low) / (high - low) - 1 (not clipped)."""
        return 2.0 * ((np.asarray(env_actions) - self.low) / (self.high - self.low)) - 1.0

    @property
    def half_width(self) -> np.ndarray:
        """(high - low) / 2: a std in env units divided by it is a std in the box."""
        return (self.high - self.low) / 2.0
