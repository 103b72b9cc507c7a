"""The settings `distillrl bench speed` measures, and what one measured segment holds.

A setting fixes everything both tools share: the models' shapes, the tokenizer, prompts per step, prompt and
completion lengths, learning rate, precision and device. The divergence is always reverse KL on the student's
own samples (distillrl `reverse_kl` at fidelity `full`; TRL `beta = 1`, fully on-policy), temperature 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from distillrl.bench.speed_setup import ModelShape

QWEN3_EXTRA = {
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 40960,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
}  # the released Qwen3-0.6B / 1.7B configs, apart from the shapes


@dataclass(frozen=True)
class SpeedSetting:
    name: str
    description: str
    architecture: str  # a transformers model type
    student: ModelShape
    teacher: ModelShape
    tokenizer: str  # "char" or "words" (see speed_setup)
    vocab_size: int  # words only; char's is fixed by its alphabet
    prompts: int  # prompts per step (one completion each)
    prompt_tokens: int
    new_tokens: int
    lr: float
    precision: str  # "fp32" or "bf16"
    device: str  # "cpu" or "cuda"
    rounds: int
    steps: int  # optimizer steps per segment; the first is a warm-up and is not timed
    extra_config: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


SETTINGS = {
    "cpu": SpeedSetting(
        name="cpu",
        description="random Llama 256 x 4 <- 512 x 6, character vocabulary, 16 prompts x 64 new tokens, fp32",
        # MLP widths by Llama's rule: 8/3 x hidden, rounded up to a multiple of 256
        architecture="llama", student=ModelShape(256, 4, 768), teacher=ModelShape(512, 6, 1536),
        tokenizer="char", vocab_size=0, prompts=16, prompt_tokens=32, new_tokens=64, lr=1e-5, precision="fp32",
        device="cpu", rounds=3, steps=4,
    ),
    "gpu": SpeedSetting(
        name="gpu",
        description="random Qwen3-0.6B shape <- Qwen3-1.7B shape, vocab 151,936, 32 prompts x 64 tokens, "
        "256 new tokens, bf16",
        architecture="qwen3",
        student=ModelShape(1024, 28, 3072, heads=16, kv_heads=8, head_dim=128),
        teacher=ModelShape(2048, 28, 6144, heads=16, kv_heads=8, head_dim=128),
        tokenizer="words", vocab_size=151_936, prompts=32, prompt_tokens=64, new_tokens=256, lr=1e-6,
        precision="bf16", device="cuda", rounds=3, steps=4, extra_config=QWEN3_EXTRA,
    ),
    "tiny": SpeedSetting(
        name="tiny",
        description="smoke size: random Llama 32 x 2 <- 64 x 2, character vocabulary, 4 prompts x 8 new tokens",
        architecture="llama", student=ModelShape(32, 2, 64, heads=2), teacher=ModelShape(64, 2, 128, heads=2),
        tokenizer="char", vocab_size=0, prompts=4, prompt_tokens=8, new_tokens=8, lr=1e-5, precision="fp32",
        device="cpu", rounds=1, steps=2,
    ),
}  # fmt: skip


TRL_TOOL = "TRL DistillationTrainer"


def distillrl_tool(fidelity: str) -> str:
    return f"distillrl ({fidelity})"


@dataclass
class Segment:
    """One tool's consecutive optimizer steps in one round. Per-step lists are in step order; a phase that the
    tool did not report is None. Phases: generation (sampling the completions), teacher (its forward pass over
    prompt + completion), student (forward, backward and optimizer step of the student)."""

    tool: str
    round: int
    step_seconds: list[float]
    completion_tokens: list[int]  # completion tokens generated in each step
    generation_seconds: list[float | None]
    teacher_seconds: list[float | None]
    student_seconds: list[float | None]
    peak_memory_bytes: int
