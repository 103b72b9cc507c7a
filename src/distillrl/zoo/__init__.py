"""An application: the built-in tiny model zoo. `recipes` says how each model is made (light: the command line
lists it in its help); `build` trains them with the run's loop. The shipped weights are in `checkpoints/`
(models/zoo_paths.py)."""
