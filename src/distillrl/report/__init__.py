"""Layer 9, reports: what a run writes for people to read.

- `metrics`: the metrics log (metrics.jsonl, TensorBoard, Weights & Biases);
- `plots`: curves.png and the benches' plots;
- `flat_rewards`: the one warning when every group of a step has equal rewards;
- `forking`: the forking-token page of `distillrl inspect`.
"""
