"""Where the shipped zoo models live: `zoo:NAME` is ZOO_DIR/NAME (zoo/recipes.py says how each was made)."""

from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo" / "checkpoints"
