"""`python -m distillrl ...`: the same command line as `distillrl ...`."""

from distillrl.cli import app

app()
