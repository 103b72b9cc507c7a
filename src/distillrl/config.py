"""The run configuration: pydantic models of the YAML recipe. Every error names the field, file and line.

`load_config(path, overrides)` reads YAML, applies `--set a.b=c` overrides (values parsed as YAML) and
validates everything (including combinations that cannot work) before any model is loaded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from distillrl.core.errors import ConfigError, UserError, one_line
from distillrl.core.files import read_utf8_text
from distillrl.tasks.answers import DEFAULT_TAG, check_answer_format
from distillrl.tasks.arith import ArithDifficulty
from distillrl.tasks.lists import ListsDifficulty
from distillrl.tasks.teacher_prompt import check_template

DEVICE_SPEC = r"^(auto|cpu|cuda(:\d+)?)$"  # checked again against the machine by runtime.resolve_device


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraSettings(Strict):
    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


class StudentConfig(Strict):
    path: str = Field("zoo:student-base", description="zoo:NAME, a local checkpoint directory or a hub id")
    lora: LoraSettings | None = Field(None, description="train a LoRA adapter instead of all weights")
    activation_checkpointing: bool = Field(
        False, description="recompute each decoder layer's activations in the backward pass (transformers' gradient "
        "checkpointing, non-reentrant): less memory for long completions, about one more forward pass of time"
    )


BACKEND_FIDELITIES = {  # what each teacher backend can give (scoring/teachers.py)
    "local": frozenset({"sampled", "topk", "full"}),
    "server": frozenset({"sampled", "topk"}),  # a server's prompt_logprobs: its top-k and the realised token
    "cache": frozenset({"sampled", "topk"}),  # stored top-k shards
    "self": frozenset({"sampled", "topk", "full"}),  # the student as its own teacher (run/self_teacher.py)
}
SELF_TEACHER = "self"  # teacher.path of a self-teacher


class TeacherConfig(Strict):
    name: str = Field("teacher", description="multi-teacher: prompts whose `domain` equals this name use it")
    path: str = Field("zoo:teacher", description="zoo:NAME, a local checkpoint directory or a hub id (with `server`: "
                      "the served model to ask for when the server serves several)")
    device: str | None = Field(
        None, pattern=DEVICE_SPEC, description="where this teacher (and its reference) runs: cpu, cuda or "
        "cuda:N (default: the run's `device`)"
    )
    reference: str | None = Field(
        None, description="gopd reference pi_ref for this teacher (default: the student's initial weights); "
        "the teacher's pre-RL base gives reward correction"
    )
    server: str | None = Field(
        None, description="score through this vLLM-compatible server (e.g. "
        "http://127.0.0.1:8000; `vllm serve` or `distillrl serve-teacher`) instead of loading `path`; fidelity "
        "sampled or topk"
    )
    server_timeout: float = Field(120.0, gt=0, description="server only: seconds one request may take")
    server_retries: int = Field(6, ge=0, description="server only: retries of a request after a connection "
                                "error or a 5xx answer, with backoff 0.5, 1, 2, 4, 8, 8... s")
    server_concurrency: int = Field(4, ge=1, description="server only: requests in flight at once")
    server_rows_per_request: int = Field(8, ge=1, description="server only: sequences scored per request")
    server_api_key_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="server only: the environment variable holding the "
        "server's API key (sent as `Authorization: Bearer KEY`); the key itself never goes in a config"
    )
    cache: str | None = Field(
        None, description="a stored teacher: the directory `distillrl teacher cache` wrote (top-k log-probs of the "
        "dataset's sequences); no teacher is loaded; rollout.source dataset, fidelity topk or sampled"
    )
    chat_template: Literal["check", "student"] = Field(
        "check", description="check: refuse a teacher whose own chat template renders a probe conversation into other "
        "tokens than the student's (it scores the student's rendering); student: let it score the student's rendering"
    )
    tokenizer: Literal["same", "own"] = Field(
        "same", description="same: the teacher must have the student's tokenizer (checked by content); own: it reads "
        "prompts and completions through its own tokenizer and chat template, aligned to the student's tokens on "
        "common byte boundaries (a local teacher, fidelity sampled or topk)"
    )
    credit: Literal["surprisal", "uniform", "last"] = Field(
        "surprisal", description="tokenizer own: how a chunk's gap T_c - S_c is shared among its student tokens: "
        "surprisal (w_i = S_i / S_c), uniform (1 / n_c) or last (all on the chunk's last token)"
    )
    prompt: str | None = Field(
        None, description="the teacher's own prompt, a template over the row's fields: {prompt} and answer, solution "
        "or any column of a prompt file, e.g. '{solution}\\n\\n{prompt}'; rendered through the chat template, the "
        "student's completion is scored after it (same tokenizer). Default: the student's prompt"
    )
    prompt_missing: Literal["error", "skip"] = Field(
        "error", description="prompt only: a training row whose field is missing or empty is an error naming file and "
        "line, or (skip) is left out of training, with a count"
    )
    self: Literal["base", "live", "ema"] | None = Field(
        None, description="path self only: the student as its own teacher: base (its starting weights, frozen; with "
        "LoRA the adapter disabled), live (its current weights, without gradient) or ema (an exponential average of "
        "its weights)"
    )
    ema_rate: float = Field(0.95, ge=0, lt=1, description="self ema only: r in p_ema <- r p_ema + (1 - r) p")
    sync_every: int = Field(1, ge=1, description="self ema only: the average is updated after every N-th optimizer step")

    @model_validator(mode="after")
    def _check(self) -> "TeacherConfig":
        if self.server and self.cache:
            raise ValueError("server: give either `server` or `cache`, not both")
        if (self.path == SELF_TEACHER) != (self.self is not None):
            raise ValueError("self: give `path: self` with `self: base | live | ema`" if self.self is None else
                             f"path: `self: {self.self}` is the student as its own teacher; set `path: self`")
        if self.self is not None and (self.server or self.cache):
            raise ValueError("self: a self-teacher is scored in this process; it has no `server` or `cache`")
        if self.self == "live" and self.device is not None:
            raise ValueError("device: a live self-teacher is the student itself, on the run's device")
        if self.prompt is not None:
            check_template(self.prompt)
            if self.cache:
                raise ValueError("prompt: a stored teacher scored the dataset's own prompts; it has no prompt template")
        if self.server is not None and not re.fullmatch(r"https?://[^\s/:]+(:\d+)?(/\S*)?", self.server):
            raise ValueError(f"server: {self.server!r} is not a URL such as http://127.0.0.1:8000")
        return self

    @property
    def backend(self) -> str:
        """Where this teacher's signals come from: local (a loaded model), server, cache or self (the student)."""
        return "server" if self.server else "cache" if self.cache else "self" if self.self else "local"


def own_tokenizer_problem(teacher: TeacherConfig, field: str, leaves: list, source: str, seq_kd: bool) -> None:
    """ValueError for what a teacher with `tokenizer: own` cannot do yet: it scores the student's sampled tokens
    (fidelity sampled, or topk mapped by identical bytes), as a local model, reading prompts through its own chat
    template."""
    if any(leaf.resolved_fidelity == "full" for leaf in leaves):
        raise ValueError(f"{field}.tokenizer: own cannot give fidelity full, a distribution over the student's whole "
                         "vocabulary, from another one (use objective.fidelity: topk or sampled)")  # fmt: skip
    if any(leaf.resolved_fidelity == "topk" and leaf.name == "reverse_kl" for leaf in leaves):
        raise ValueError(f"{field}.tokenizer: own maps the teacher's top-k into the student's vocabulary, and the ids "
                         "with no twin get probability 0, where reverse KL at fidelity topk would cost the student's "
                         "mass there about 1e4 nats; use jsd or forward_kl at topk, or reverse_kl at sampled")  # fmt: skip
    if source == "speculative":
        raise ValueError(f"{field}.tokenizer: own cannot vet the student's proposals (rollout.source speculative "
                         "compares token ids across the two vocabularies)")  # fmt: skip
    if source == "teacher" or (source == "mixed" and seq_kd):
        raise ValueError(f"{field}.tokenizer: own scores the student's samples; rollout.source {source!r} samples "
                         "from the teacher, whose text is not yet handed over to the student's tokenizer")
    if teacher.backend != "local":
        raise ValueError(f"{field}.tokenizer: own needs a local teacher (a {teacher.backend} teacher scores the "
                         "student's token ids)")  # fmt: skip
    if teacher.chat_template == "student":
        raise ValueError(f"{field}.chat_template: student renders prompts with the student's special tokens, which "
                         "are plain text to a teacher with its own tokenizer; leave it at check")  # fmt: skip
    if teacher.prompt is not None:
        raise ValueError(f"{field}.prompt: a teacher with its own tokenizer renders the student's prompt through its "
                         "own template; a prompt template of its own is not supported with tokenizer: own yet")


class TaskConfig(Strict):
    name: Literal["arith", "lists", "mix", "prompts"] = Field(
        "arith", description="arith, lists (the second domain), mix (both, half each) or prompts (files)"
    )
    difficulty: ArithDifficulty = Field(default_factory=ArithDifficulty, description="arith (and mix) only")
    lists: ListsDifficulty = Field(default_factory=ListsDifficulty, description="lists (and mix) only")
    cot_fraction: float = Field(
        1.0, ge=0, le=1, description="arith, and lists' sum: share of training solutions that show their steps (else "
        "answer only)"
    )
    train_path: str | None = Field(
        None, description="prompts only: a .jsonl/.parquet file, a directory of data files or of a saved `datasets` "
        "dataset, or a `datasets.load_dataset` name; rows hold `prompt` (a string) or `messages` (chat turns), and "
        "optionally `answer`, `completion`, `domain`"
    )
    test_path: str | None = Field(None, description="prompts only: held-out prompts for evaluation (same forms)")
    train_split: str = Field("train", description="prompts only: the split of a directory or dataset name to train on")
    test_split: str = Field("test", description="prompts only: the split of a directory or dataset name to evaluate on")
    dataset_config: str | None = Field(None, description="prompts only: the configuration of a `load_dataset` name")
    columns: dict[Literal["prompt", "messages", "answer", "completion", "domain"], str] = Field(
        default_factory=dict, description="prompts only: the column that holds each field, e.g. {prompt: question}"
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="passed to the student's chat template, e.g. {enable_thinking: false} (Qwen3)"
    )
    truncate: Literal["error", "left"] = Field(
        "error", description="a prompt too long for max_new_tokens in a model's context: error (at start, naming it) "
        "or left (it loses its first tokens; BOS kept)"
    )
    answer_format: str | None = Field(
        None, description="where a completion states its answer: hash (after the last `#`), boxed (the last "
        "\\boxed{}), last_line, tag (the last <answer>...</answer>), regex:PATTERN (the last match: its first group, "
        "else the whole match), or auto (tag, else boxed, else hash, else last line); default: auto for prompt files, "
        "the built-in tasks' own `#` verifier for arith/lists/mix"
    )
    answer_tag: str = Field(DEFAULT_TAG, description="the tag that answer_format tag (and auto) reads: answer for "
                            "<answer>...</answer>")
    answer_match: Literal["normalized", "math"] = Field(
        "normalized", description="normalized (text without spaces, case-folded; numbers by value: 2 = 2.0) or "
        "math (symbolic equivalence through the math-verify library: the `math` extra)"
    )
    reward: str | None = Field(
        None, description="a custom reward `module:function` or `path/file.py:function`, called as "
        "function(prompt, completion, row) -> float (replaces the answer verifier)"
    )

    @model_validator(mode="after")
    def _check(self) -> "TaskConfig":
        if self.name == "prompts" and not self.train_path:
            raise ValueError("train_path: required when task.name is 'prompts'")
        if self.name != "prompts" and (self.train_path or self.test_path or self.columns):
            raise ValueError("name: train_path/test_path/columns only apply to task.name 'prompts'")
        if "prompt" in self.columns and "messages" in self.columns:
            raise ValueError("columns: a row holds either `prompt` or `messages`, not both")
        check_answer_format(self.answer_format or "auto", self.answer_tag)
        reads_tags = self.answer_format in ("tag", "auto") or (self.answer_format is None and self.name == "prompts")
        if self.answer_tag != DEFAULT_TAG and not reads_tags:
            form = self.answer_format or "unset: the built-in task's own `#` verifier"
            raise ValueError(f"answer_tag: only answer_format tag or auto reads a tag (answer_format is {form})")
        return self


class RolloutConfig(Strict):
    source: Literal["student", "teacher", "dataset", "mixed", "speculative"] = Field(
        "student",
        description="student: on-policy samples; teacher: teacher samples (seq-KD); dataset: given solutions; "
        "mixed: student with probability lmbda, else dataset (or teacher with seq_kd) (GKD); "
        "speculative: student proposals kept when in the teacher's top-k (SKD)",
    )
    prompts_per_step: int = Field(32, ge=1)
    group_size: int = Field(4, ge=1, description="completions sampled per prompt (G)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of rollouts")
    top_k: int = Field(0, ge=0, description="rollouts sample among the k most probable tokens only (0: off)")
    top_p: float = Field(1.0, gt=0, le=1, description="rollouts sample among the most probable tokens whose mass "
                         "reaches top_p (1: off)")
    min_p: float = Field(0.0, ge=0, lt=1, description="rollouts drop tokens below min_p times the most probable "
                         "one's probability (0: off)")
    max_new_tokens: int = Field(48, ge=1)
    lmbda: float = Field(0.5, ge=0, le=1, description="mixed only: probability that a step is on-policy")
    seq_kd: bool = Field(False, description="mixed only: the off-policy steps use teacher samples, not the dataset")
    speculative_top_k: int = Field(25, ge=1, description="speculative only: the teacher's top-K that accepts a proposal")
    stop_strings: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list, description="a completion also ends at the end of the first of these strings (the "
        "reward reads the text up to there; later tokens are not trained on)"
    )
    engine: Literal["auto", "hf", "static"] = Field(
        "auto", description="sampling engine: hf (transformers' generate), static (static KV cache, prompts padded to "
        "length buckets, a compiled decode step on GPUs) or auto (static on a GPU, hf on the CPU)"
    )
    max_kv_tokens: int | None = Field(
        None, ge=1, description="KV cache budget of sampling, in tokens: the engines generate at most floor(N / "
        "(prompt width + max_new_tokens)) rows at a time (at least 1; the static engine's cache as many rows), and "
        "each row samples from its own seeded generator, so the sequences are those of one unbounded batch under "
        "the same setting (default: no budget, one shared RNG stream)"
    )


DIVERGENCES = ("reverse_kl", "forward_kl", "jsd", "skew_kl")
TEACHER_OBJECTIVES = (*DIVERGENCES, "gopd", "rlad")
REWARD_OBJECTIVES = ("grpo", "rlad")
SAMPLED_TOKEN_OBJECTIVES = ("gopd", "grpo", "rlad")  # importance-sampled: need the student's own samples


class ObjectiveConfig(Strict):
    name: Literal["sft", "reverse_kl", "forward_kl", "jsd", "skew_kl", "gopd", "grpo", "rlad", "hybrid"] = "reverse_kl"
    weight: float = Field(1.0, ge=0, description="hybrid terms only: this term's weight in the sum")
    fidelity: Literal["sampled", "topk", "full"] | None = Field(
        None, description="teacher distribution of a divergence: sampled (reverse_kl only), topk or full "
        "(default: sampled for reverse_kl, full for the others)"
    )
    top_k: int = Field(20, ge=1, description="fidelity topk: teacher tokens kept per position (+ a tail bucket)")
    temperature: float = Field(1.0, gt=0, description="forward_kl only: tau on both logits, loss scaled by tau^2")
    beta: float = Field(0.5, ge=0, le=1, description="jsd only: 0 is forward KL, 1 reverse KL")
    skew_alpha: float = Field(0.1, gt=0, lt=1, description="skew_kl only: the skew weight a")
    skew_reverse: bool = Field(False, description="skew_kl only: KL(student || (1-a) teacher + a student)")
    reward_scale: float = Field(1.0, ge=0, description="gopd only: lambda (1 is OPD, > 1 ExOPD, < 1 interpolation)")
    clip_low: float = Field(0.2, ge=0, lt=1, description="grpo/rlad: ratio clipped below at 1 - clip_low")
    clip_high: float = Field(0.28, ge=0, description="grpo/rlad: ratio clipped above at 1 + clip_high")
    kl_coef: float = Field(0.0, ge=0, description="grpo/rlad: weight of the k3 KL to the student's initial weights")
    rlad_alpha: float = Field(0.5, ge=0, le=1, description="rlad only: weight of pi_old in the anchor (1 is GRPO)")
    rlad_teacher_clamp: float = Field(1.0, gt=0, description="rlad only: log(pi_theta/pi_T) clamped to +-this")
    terms: list["ObjectiveConfig"] = Field(default_factory=list, description="hybrid only: the weighted terms")
    chunk_size: int | None = Field(
        None, ge=1, description="positions per chunk for vocabulary-wide terms (default: about 2^26 logits a chunk, "
        "at most 1024 positions)"
    )

    @model_validator(mode="after")
    def _check(self) -> "ObjectiveConfig":
        if self.name == "hybrid":
            if not self.terms:
                raise ValueError("terms: objective 'hybrid' needs at least one term")
            if any(term.name == "hybrid" for term in self.terms):
                raise ValueError("terms: a hybrid term cannot itself be hybrid")
        elif self.terms:
            raise ValueError(f"terms: only objective 'hybrid' has terms, not {self.name!r}")
        if self.fidelity is not None and self.name not in DIVERGENCES:
            raise ValueError(f"fidelity: {self.name!r} has no teacher-distribution fidelity (divergences only)")
        if self.fidelity == "sampled" and self.name != "reverse_kl":
            raise ValueError(f"fidelity: 'sampled' is an estimator of reverse_kl only; {self.name} needs topk or full")
        if self.fidelity == "topk" and self.name == "forward_kl" and self.temperature != 1.0:
            raise ValueError("temperature: fidelity topk keeps the teacher's top-k at temperature 1; use full for tau != 1")
        return self

    @property
    def resolved_fidelity(self) -> str | None:
        if self.name not in DIVERGENCES:
            return None
        return self.fidelity or ("sampled" if self.name == "reverse_kl" else "full")

    def leaves(self) -> list["ObjectiveConfig"]:
        """The objectives that make up this one (its terms when hybrid)."""
        return self.terms if self.name == "hybrid" else [self]


class OptimConfig(Strict):
    steps: int = Field(100, ge=1, description="optimizer steps")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW's (beta1, beta2), each in [0, 1)")
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["constant", "linear", "cosine"] = "cosine"
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="decay floor as a fraction of lr")
    max_grad_norm: float | None = Field(1.0, gt=0)
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    micro_batch_tokens: int | None = Field(
        None, ge=1, description="a token budget per update micro-batch, replacing grad_accum's split: whole prompts "
        "packed longest first while rows x their padded width (prompt + completion) <= N; a prompt over N alone. "
        "The loss is still the token mean of the optimizer step (default: grad_accum shares of the prompts)"
    )
    score_batch_tokens: int | None = Field(
        None, ge=1, description="a token budget per frozen pass (pi_old, local teachers, references): rows packed "
        "as micro_batch_tokens packs prompts (default: micro_batch_tokens; neither: grad_accum shares of the rows)"
    )
    epochs: int = Field(1, ge=1, description="passes over each rollout (PPO epochs), with the recorded pi_old")
    minibatches: int = Field(1, ge=1, description="optimizer steps per epoch, each on a share of the prompts")
    skip_nonfinite_steps: int = Field(
        0, ge=0, description="optimizer steps with a non-finite loss or gradient that may be skipped (not applied) "
        "before the run stops; 0 stops at the first"
    )

    @model_validator(mode="after")
    def _check(self) -> "OptimConfig":
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas: each must be in [0, 1), got {list(self.betas)}")
        return self

    @property
    def resolved_score_tokens(self) -> int | None:
        """The frozen passes' token budget: score_batch_tokens, else micro_batch_tokens."""
        return self.score_batch_tokens or self.micro_batch_tokens


class EvalConfig(Strict):
    every: int = Field(25, ge=0, description="evaluate every N steps (0: only before and after)")
    at: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, description="also evaluate at these steps (e.g. densely early in a run, where the "
        "curve moves fastest)"
    )
    num_prompts: int = Field(200, ge=1)
    temperature: float = Field(1.0, gt=0, description="temperature of the sampled accuracy and the KL samples")
    max_new_tokens: int = Field(48, ge=1)
    batch_size: int = Field(256, ge=1)
    split: Literal["test", "validation"] = Field(
        "test", description="test: the held-out prompts; validation: a fixed set of training-split prompts, to choose "
        "settings (a learning rate) without looking at the test prompts (generated tasks only)"
    )


class CheckpointConfig(Strict):
    every: int = Field(50, ge=0, description="save every N steps (0: only at the end)")
    keep: int = Field(2, ge=1, description="checkpoints kept on disk")


class LogConfig(Strict):
    every: int = Field(10, ge=1, description="when stderr is not a terminal (a log file, CI, Slurm): a plain progress "
                       "line every N steps (step, loss, signal, accuracy, tokens/s, ETA), and one per evaluation")
    rollout_samples: int = Field(4, ge=0, description="rollouts of each step written to samples/step_N.jsonl (with "
                                 "reward, length and, where the signals have it, per-token reverse KL)")
    show_samples: int = Field(2, ge=0, description="held-out greedy completions printed at each evaluation")


class DistributedConfig(Strict):
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="how a run of several processes (torchrun, accelerate launch) holds the student: ddp, a "
        "whole copy on every rank with gradients summed over ranks; fsdp, FSDP2: parameters, gradients and "
        "optimizer states sharded over the ranks (a run of one process holds the whole student either way)"
    )


class WandbConfig(Strict):
    project: str = Field("distillrl", description="the W&B project")
    name: str | None = Field(None, description="the W&B run name (default: the output directory's name)")
    mode: Literal["online", "offline"] | None = Field(
        None, description="offline writes the run under OUTPUT_DIR/wandb for `wandb sync` (default: WANDB_MODE, "
        "else online)"
    )


class TrainConfig(Strict):
    """A run's whole configuration, the same from YAML (`load_config`) and from Python (keyword arguments).

    Every section below is a field; a bad field is a ConfigError naming it (one line per problem), never pydantic's
    raw ValidationError."""

    seed: int = 0
    output_dir: str = "runs/train"
    device: str = Field("auto", pattern=DEVICE_SPEC, description="auto (a GPU when there is one), cpu, cuda, cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16: bf16 compute over fp32 master weights, frozen models in bf16; auto: bf16 on a GPU, "
        "fp32 on the CPU"
    )
    student: StudentConfig = Field(default_factory=StudentConfig)
    teacher: TeacherConfig | None = Field(default_factory=TeacherConfig, description="one teacher for every prompt")
    teachers: list[TeacherConfig] | None = Field(
        None, description="several named teachers; each prompt goes to the teacher named by its `domain`"
    )
    task: TaskConfig = Field(default_factory=TaskConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    log: LogConfig = Field(default_factory=LogConfig, description="what a run shows and keeps as it trains")
    tensorboard: bool = True
    wandb: WandbConfig | None = Field(None, description="also log metrics to Weights & Biases (the `wandb` extra)")

    def __init__(self, **fields: Any):
        try:
            super().__init__(**fields)
        except ValidationError as error:
            raise ConfigError(format_validation_error(error, "TrainConfig", None, set(), type(self),
                                                      line_numbers=False)) from None

    # pydantic calls a model's own __init__ from model_validate too; marked as its base __init__ (as pydantic marks
    # BaseModel's and RootModel's), load_config's validation keeps its ValidationError and so its YAML line numbers
    __init__.__pydantic_base_init__ = True

    @property
    def teacher_list(self) -> list[TeacherConfig]:
        """The configured teachers: `teachers`, or the single `teacher`, or none."""
        if self.teachers:
            return self.teachers
        return [self.teacher] if self.teacher is not None else []

    @model_validator(mode="after")
    def _check_combination(self) -> "TrainConfig":
        if self.teachers is not None:
            if "teacher" in self.model_fields_set and self.teacher is not None:
                raise ValueError("teachers: give either `teacher` or `teachers`, not both")
            if not self.teachers:
                raise ValueError("teachers: the list is empty")
            names = [t.name for t in self.teachers]
            duplicate = next((n for n in names if names.count(n) > 1), None)
            if duplicate:
                raise ValueError(f"teachers: the name {duplicate!r} is used twice")
        leaves = self.objective.leaves()
        has_teacher = bool(self.teacher_list)
        source = self.rollout.source
        for leaf in leaves:
            if leaf.name in TEACHER_OBJECTIVES and not has_teacher:
                raise ValueError(f"teacher: objective {leaf.name!r} needs a teacher")
            sampled = leaf.name in SAMPLED_TOKEN_OBJECTIVES or leaf.resolved_fidelity == "sampled"
            if sampled and source != "student":
                raise ValueError(
                    f"rollout.source: {leaf.name} weighs the student's own samples by pi_theta/pi_old and needs "
                    f"source 'student' (got {source!r})"
                )
            if leaf.name in REWARD_OBJECTIVES and self.rollout.group_size < 2:
                raise ValueError(f"rollout.group_size: {leaf.name} normalises rewards within a group and needs >= 2")
            if self.teachers and leaf.resolved_fidelity == "full":
                raise ValueError(
                    "objective.fidelity: several teachers are scored per prompt at fidelity sampled or topk, not full"
                )
        if source in ("teacher", "speculative") and not has_teacher:
            raise ValueError(f"teacher: rollout.source {source!r} needs a teacher")
        if source == "mixed" and self.rollout.seq_kd and not has_teacher:
            raise ValueError("teacher: rollout.seq_kd samples off-policy sequences from a teacher")
        for index, teacher in enumerate(self.teacher_list):
            if teacher.backend == "local":
                continue
            field = f"teachers.{index}.{teacher.backend}" if self.teachers else f"teacher.{teacher.backend}"
            given = BACKEND_FIDELITIES[teacher.backend]
            wanted = next((leaf.resolved_fidelity for leaf in leaves if leaf.resolved_fidelity not in (None, *given)), None)
            if wanted is not None:
                raise ValueError(f"{field}: a {teacher.backend} teacher gives fidelity {' or '.join(sorted(given))}; "
                                 f"{wanted} (the whole vocabulary) needs a local teacher (set objective.fidelity: topk)")
            if source in ("teacher", "speculative") or (source == "mixed" and self.rollout.seq_kd):
                raise ValueError(f"{field}: rollout.source {source!r} samples from the teacher, which needs a local "
                                 f"teacher (a {teacher.backend} teacher only scores)")
            if teacher.backend == "self" and teacher.self == "ema" and self.distributed.strategy == "fsdp":
                raise ValueError(f"{field}: an ema self-teacher copies the whole student; with fsdp use ddp")
            if teacher.backend == "cache" and source != "dataset":
                raise ValueError(f"{field}: a stored teacher holds the dataset's sequences only; it needs "
                                 f"rollout.source 'dataset' (got {source!r})")
            if teacher.backend == "cache" and self.task.name != "prompts":
                raise ValueError(f"{field}: a stored teacher was written from a prompts file; train on it with "
                                 f"task: {{name: prompts, train_path: FILE}} (got task.name {self.task.name!r})")
        for index, teacher in enumerate(self.teacher_list):
            if teacher.tokenizer == "own":
                own_tokenizer_problem(teacher, f"teachers.{index}" if self.teachers else "teacher", leaves, source,
                                      self.rollout.seq_kd)  # fmt: skip
        samples_teacher = source in ("teacher", "speculative") or (source == "mixed" and self.rollout.seq_kd)
        templated = next((i for i, t in enumerate(self.teacher_list) if t.prompt is not None), None)
        if templated is not None and samples_teacher:
            field = f"teachers.{templated}.prompt" if self.teachers else "teacher.prompt"
            raise ValueError(f"{field}: the teacher scores after its own prompt, and rollout.source {source!r} samples "
                             "from it after the student's; use source student, dataset or mixed")
        if self.teachers and source == "speculative":
            raise ValueError("rollout.source: 'speculative' interleaves one teacher; use `teacher`, not `teachers`")
        if self.eval.split == "validation" and self.task.name == "prompts":
            raise ValueError("eval.split: 'validation' draws from a generated task's training split; with prompt files "
                             "hold out your own validation file as task.test_path")
        if self.distributed.strategy == "fsdp":
            if self.student.lora is not None:
                raise ValueError("distributed.strategy: fsdp shards a fully trained student; with student.lora use ddp")
            if self.optim.micro_batch_tokens or self.optim.score_batch_tokens:
                raise ValueError("optim.micro_batch_tokens: a token budget gives each rank its own number of passes, "
                                 "which fsdp's gathers in every pass cannot follow; use distributed.strategy: ddp")
            if self.rollout.max_kv_tokens is not None:
                raise ValueError("rollout.max_kv_tokens: a KV budget gives each rank its own number of generate "
                                 "batches, which fsdp's gathers cannot follow; use distributed.strategy: ddp")
            if source == "speculative" or self.rollout.engine == "static":
                what = "rollout.source: 'speculative'" if source == "speculative" else "rollout.engine: 'static'"
                raise ValueError(f"distributed.strategy: fsdp samples with transformers' generate (every rank steps "
                                 f"until all have finished); {what} is not supported with it")
        return self


COMBINATION_ERROR = re.compile(r"^(?P<field>[a-z_]+(?:\.[a-z_]+)*): (?P<message>.*)$", re.S)


def _yaml_line(root: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the deepest YAML node on the path `loc` (None when not in the file)."""
    node, line = root, None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(key)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for key in loc[:-1]:
        if isinstance(key, int):  # an index into a list of models
            continue
        field = model.model_fields.get(str(key))
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return sorted(model.model_fields)


def format_validation_error(error: ValidationError, source: str, root: yaml.Node | None, overridden: set[str],
                            model: type[BaseModel], line_numbers: bool = True) -> str:  # fmt: skip
    """One `where: field: problem` line per problem: where is `source:LINE` (the field's YAML line, `line_numbers`), or
    `--set` for a field an override gave."""
    lines = []
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if not (isinstance(part, str) and "[" in part))
        message = item["msg"].removeprefix("Value error, ")
        named = COMBINATION_ERROR.match(message)
        if named:  # a cross-field check names its own field: "a.b: problem"
            loc, message = loc + tuple(named["field"].split(".")), named["message"]
        field = ".".join(str(part) for part in loc) or "(top level)"
        from_set = any(key == field or key.startswith(field + ".") or field.startswith(key + ".") for key in overridden)
        where = "--set" if from_set else f"{source}:{_yaml_line(root, loc) or 1}" if line_numbers else source
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(model, loc))
            message = f"unknown key (allowed here: {allowed})"
        elif not named and "input" in item and not isinstance(item["input"], (dict, list)):
            message += f" (got {item['input']!r})"
        lines.append(f"{where}: {field}: {message}")
    return "\n".join(lines)


def apply_override(data: dict[str, Any], assignment: str) -> str:
    """Apply `a.b.c=value` (value parsed as YAML) to nested dicts in place; returns the dotted key."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment}: expected KEY=VALUE, for example optim.lr=1e-4")
    key, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or one_line(error)
        raise ConfigError(f"--set {assignment}: the value is not valid YAML ({problem})") from None
    return set_field(data, key.strip(), value, f"--set {assignment}")


def set_field(data: dict[str, Any], key: str, value: Any, where: str) -> str:
    """Set the dotted field `a.b.c` of nested dicts to `value` in place (sections made as needed); returns `key`."""
    parts = key.split(".")
    target = data
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{where}: {part} is not a section")
    target[parts[-1]] = value
    return key


def load_config(path: str | Path | None, overrides: list[str] | dict[str, Any] = (),
                model: type[BaseModel] = TrainConfig):  # fmt: skip
    """Read, override and validate a config (a TrainConfig unless `model` says otherwise); raises ConfigError
    naming file, line and field. `overrides`: `--set` assignments (`optim.lr=1e-4`, values read as YAML) or a
    mapping of dotted fields to Python values (`{"optim.lr": 1e-4}`)."""
    source, root, data = "(defaults)", None, {}
    if path is not None:
        source = str(path)
        try:
            text = read_utf8_text(path, "config")
        except UserError as error:
            raise ConfigError(str(error)) from None
        try:
            root = yaml.compose(text)
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else f"{source}:1"
            column = f" at column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or one_line(error)
            raise ConfigError(f"{where}: invalid YAML ({problem}{column})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source}:1: the config must be a mapping of sections")
    if isinstance(overrides, dict):
        overridden = {set_field(data, key, value, f"overrides[{key!r}]") for key, value in overrides.items()}
    else:
        overridden = {apply_override(data, item) for item in overrides}
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source, root, overridden, model)) from None
