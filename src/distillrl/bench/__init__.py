"""An application: `distillrl bench repro` (the papers' findings reproduced at laptop scale on the built-in zoo and
tasks) and `distillrl bench speed` (distillrl's step against TRL's)."""
