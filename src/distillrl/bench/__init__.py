"""`distillrl bench repro`: the papers' findings reproduced at laptop scale on the built-in zoo and tasks."""
