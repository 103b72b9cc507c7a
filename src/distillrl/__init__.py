"""distillrl: knowledge distillation the way reinforcement learning does it."""

__version__ = "0.1.0"
