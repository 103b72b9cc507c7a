"""Layer 10, the run: one loop over the layers below it.

- `roles`: the models of a run by role (student, teachers, references) with their engines and scorer backends;
- `sources`: where a step's sequences come from (student, teacher, dataset, mixed, speculative);
- `signals`: the per-token signals the objective needs, scored by the frozen scorers;
- `trainer`: the loop (draw prompts, sample, score, update, evaluate, checkpoint) and `train(config)`;
- `evaluate`: greedy and sampled held-out accuracy, reverse KL to a teacher, response length;
- `eval_setup`: what `distillrl eval` takes from a run directory or from its flags;
- `model_inspect`: what `distillrl inspect` samples and scores, rendered as a run (or its flags) says;
- `checkpoint`, `run_dir`: atomic checkpoints, resuming, and the run directory's lock and files;
- `runtime`: devices, precision, autocast and RNG streams;
- `teacher_cache`: scoring a dataset once with a teacher (`distillrl teacher cache`).
"""
