"""Layer 9, reports: what a run writes for people to read.

- `metrics`: the metrics log (metrics.jsonl, TensorBoard, Weights & Biases);
- `plots`: curves.png (a panel for each thing that moves in the run) and the benches' plots;
- `before_after`: the before/after table (teacher, student at step 0 and at its last evaluation);
- `run_page`: report.html, the run's own self-contained page (`distillrl report RUN_DIR`);
- `token_shades`: tokens shaded by their reverse KL, on both pages;
- `flat_rewards`: the one warning when every group of a step has equal rewards;
- `forking`: the forking-token page of `distillrl inspect`.
"""
