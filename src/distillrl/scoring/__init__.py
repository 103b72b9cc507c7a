"""Layer 6, scoring: per-token signals from frozen models, wherever they run.

- `logits`, `topk`, `forward`: chunked log-softmax, top-k with a tail bucket, the completion forward pass;
- `frozen`: a frozen model as a scorer; `teachers`: the teacher seam (`score(...)` yields TeacherSignals) and
  LocalTeacher;
- `remote`: a teacher behind a vLLM-compatible server; `cache`: a stored teacher's shards, checked and read.
"""
