"""Speculative KD's sequence source (SKD, Xu et al. 2025): the student proposes, the teacher vets.

At each position the student samples a token; if it is not among the teacher's top-K tokens there, the
teacher's own sample replaces it. The result interleaves student and teacher tokens: on-policy where the
student is good enough, teacher-guided where it is not. Both models decode with their KV caches.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distillrl.models.compat import base_model, cache_keyword, output_cache
from distillrl.models.vocabulary import shared_vocab_size
from distillrl.rollout.sampling import NO_TRUNCATION, Truncation, truncate_logits
from distillrl.scoring.forward import position_ids_from_mask
from distillrl.text.chat import PLAIN, ChatFormat, Prompt, stop_token_ids
from distillrl.text.sequences import Sequences, encode_prompts, join_prompts_and_completions


def sample_token(logits: Tensor, temperature: float, truncation: Truncation = NO_TRUNCATION) -> Tensor:
    """One token per row from softmax(truncate(logits / temperature)); greedy at temperature 0."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = torch.nan_to_num(logits)  # a diverged model's nan/inf reach the loss, which stops the run with one line
    return torch.multinomial(torch.softmax(truncate_logits(logits / temperature, truncation), dim=-1), 1).squeeze(-1)


def speculative_choice(proposal: Tensor, teacher_logits: Tensor, teacher_sample: Tensor, top_k: int) -> Tensor:
    """y = proposal if proposal is in top_K(pi_T(. | c)), else the teacher's sample: [B]."""
    accepted = (teacher_logits.topk(top_k, dim=-1).indices == proposal[:, None]).any(-1)
    return torch.where(accepted, proposal, teacher_sample)


@torch.no_grad()
def speculative_generate(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    num_samples: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    top_k: int = 25,
    truncation: Truncation = NO_TRUNCATION,
    chat: ChatFormat = PLAIN,
) -> tuple[Sequences, float]:
    """Interleaved completions (rows grouped by prompt) and the share of student proposals the teacher kept; both
    models sample with `truncation` over the tokenizer's ids (never a padding row of a head)."""
    repeated = [p for p in prompts for _ in range(num_samples)]
    prompt_index = torch.arange(len(prompts), device=student.device).repeat_interleave(num_samples)
    prompt_ids, prompt_mask = (t.to(student.device) for t in encode_prompts(tokenizer, repeated, chat))
    was_training = student.training
    student.eval()
    inputs, mask = prompt_ids, prompt_mask
    positions = position_ids_from_mask(mask)
    caches: dict[str, object] = {"student": None, "teacher": None}
    finished = torch.zeros(len(repeated), dtype=torch.bool, device=student.device)
    stop_ids = stop_token_ids(tokenizer, base_model(student))
    stop_tensor = torch.tensor(stop_ids, device=student.device)
    vocab_size = shared_vocab_size(tokenizer, [student, teacher])
    tokens, kept, proposed = [], 0, 0
    for _ in range(max_new_tokens):
        last = {}
        for role, model in (("student", student), ("teacher", teacher)):
            device = next(model.parameters()).device
            out = model(input_ids=inputs.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                        use_cache=True, logits_to_keep=1, **{cache_keyword(model): caches[role]})  # fmt: skip
            caches[role], last[role] = output_cache(out), out.logits[:, -1, :vocab_size].float().to(student.device)
        proposal = sample_token(last["student"], temperature, truncation)
        token = speculative_choice(proposal, last["teacher"], sample_token(last["teacher"], temperature, truncation),
                                   top_k)  # fmt: skip
        kept += ((token == proposal) & ~finished).sum()
        proposed += (~finished).sum()
        token = torch.where(finished, tokenizer.pad_token_id, token)
        tokens.append(token)
        finished |= torch.isin(token, stop_tensor)
        if finished.all():
            break
        inputs = token[:, None]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
    student.train(was_training)
    sequences = join_prompts_and_completions(tokenizer, prompt_ids, prompt_mask, torch.stack(tokens, dim=1), prompt_index,
                                             stop_ids, chat.stop_strings)  # fmt: skip
    return sequences, float(kept) / max(float(proposed), 1.0)
