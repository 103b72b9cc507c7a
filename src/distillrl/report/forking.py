"""Forking tokens: where, in the student's own sample, the teacher disagrees most.

For a sampled completion y ~ pi_theta, the per-token reverse KL at position t is
KL_t = sum_v pi_theta(v | x, y<t) [log pi_theta(v | x, y<t) - log pi_T(v | x, y<t)], the penalty OPD puts there.
`inspect_samples` computes it with the teacher's preferred token at each position, the prompts rendered and the
samples stopped as a run renders and stops them (a ChatFormat); `render_html` shades each token by it
(`token_shades`; the teacher's choice on hover). Every token is shown as the text it adds to the decoded sequence
(`token_texts`), never as a byte-level BPE piece (`Ġthe`, `Ċ`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distillrl.models.vocabulary import shared_vocab_size
from distillrl.objectives.divergences import reverse_kl_per_token
from distillrl.report.token_shades import kl_legend, kl_shade
from distillrl.rollout.hf_generate import generate
from distillrl.scoring.forward import completion_logits
from distillrl.text.chat import PLAIN, ChatFormat, Prompt


@dataclass
class TokenView:
    text: str  # what the token adds to the decoded text ("" for a byte that starts a character the next one ends)
    reverse_kl: float  # nats
    student_prob: float  # pi_theta of the sampled token
    teacher_prob: float  # pi_T of the sampled token
    teacher_token: str  # the teacher's most likely token here, as the text it would add
    teacher_token_prob: float
    token_id: int
    teacher_token_id: int


@dataclass
class SampleView:
    prompt: str  # the prompt as the model read it: its tokens decoded (chat template, BOS and truncation included)
    completion: str  # the completion's text as the reward reads it (special tokens and a stop string removed)
    tokens: list[TokenView]
    correct: bool | None  # by the verifier, when an answer is known

    @property
    def fork(self) -> int | None:
        """Index of the first token that is not the teacher's preferred one (None if the student always agrees)."""
        return next((i for i, t in enumerate(self.tokens) if t.token_id != t.teacher_token_id), None)

    @property
    def peak(self) -> int:
        """Index of the token with the largest reverse KL."""
        return max(range(len(self.tokens)), key=lambda i: self.tokens[i].reverse_kl)

    @property
    def text(self) -> str:
        """The completion as sampled: every token's text, the stop token or stop string included."""
        return "".join(t.text for t in self.tokens)


def _decode(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _added(tokenizer: PreTrainedTokenizerBase, prefix: list[int], shown: str, token: int) -> str | None:
    """What `token` adds to the decoded `prefix` (whose text is `shown`); None when it ends inside a character."""
    text = _decode(tokenizer, prefix + [token])
    if text.endswith("\ufffd"):
        return None
    return text[len(shown) :] if text.startswith(shown) else _decode(tokenizer, [token])


def token_texts(tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int], completion_ids: list[int],
                alternatives: list[int]) -> tuple[list[str], list[str]]:  # fmt: skip
    """The text each completion token adds to the decoded sequence before it (prompt included), and the text each of
    `alternatives` (one token per position) would add there instead. A byte-level BPE token that stops inside a
    multi-byte character adds "" and the token that completes it carries the character."""
    texts, instead = [], []
    prefix, shown = list(prompt_ids), _decode(tokenizer, prompt_ids)
    for token, other in zip(completion_ids, alternatives):
        alone = _added(tokenizer, prefix, shown, other)
        instead.append(_decode(tokenizer, [other]) if alone is None else alone)
        added = _added(tokenizer, prefix, shown, token)
        prefix.append(token)
        texts.append(added or "")
        if added is not None:
            shown += added
    return texts, instead


@torch.no_grad()
def inspect_samples(student: PreTrainedModel, teacher: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    prompts: list[Prompt], num_samples: int = 1, temperature: float = 1.0, max_new_tokens: int = 48,
                    verify=None, chat: ChatFormat = PLAIN) -> list[SampleView]:  # fmt: skip
    """Sample `num_samples` completions per prompt from the student, the prompts rendered and the completions
    stopped as `chat` says; score every token against the teacher.

    `verify(prompt_index, completion) -> bool | None`, when given, marks each sample right or wrong (None: the
    prompt's answer is not known).
    """
    sequences = generate(student, tokenizer, prompts, num_samples, temperature, max_new_tokens, chat=chat)
    args = (sequences.input_ids, sequences.attention_mask, sequences.completion_mask)
    vocab_size = shared_vocab_size(tokenizer, [student, teacher])  # padding rows of either head are never scored
    student_logits = completion_logits(student, *args, vocab_size=vocab_size)
    teacher_logits = completion_logits(teacher, *args, vocab_size=vocab_size)
    student_lp = torch.log_softmax(student_logits.project(student_logits.hidden), dim=-1)
    teacher_lp = torch.log_softmax(teacher_logits.project(teacher_logits.hidden), dim=-1)
    kl = reverse_kl_per_token(student_lp, teacher_lp)
    targets, rows = sequences.target_ids, sequences.sequence_index
    positions = torch.arange(len(targets))
    student_p = student_lp[positions, targets].exp()
    teacher_p = teacher_lp[positions, targets].exp()
    best_p, best = teacher_lp.max(-1)
    views = []
    for row in range(len(sequences)):
        index = (rows == row).nonzero().squeeze(-1).tolist()
        width = sequences.prompt_width
        prompt_ids = sequences.input_ids[row, :width][sequences.attention_mask[row, :width].bool()].tolist()
        ids, preferred = targets[index].tolist(), best[index].tolist()
        texts, preferred_texts = token_texts(tokenizer, prompt_ids, ids, preferred)
        tokens = [TokenView(texts[j], kl[i].item(), student_p[i].item(), teacher_p[i].item(), preferred_texts[j],
                            best_p[i].exp().item(), ids[j], preferred[j]) for j, i in enumerate(index)]  # fmt: skip
        prompt_index = sequences.prompt_index[row].item()
        completion = sequences.completions[row]
        correct = None if verify is None else verify(prompt_index, completion)
        views.append(SampleView(_decode(tokenizer, prompt_ids), completion, tokens, correct))
    return views


def _cell(token: TokenView, scale: float) -> str:
    title = (f"reverse KL {token.reverse_kl:.3f} nats | student p={token.student_prob:.3f}, teacher p="
             f"{token.teacher_prob:.3f} | teacher prefers {token.teacher_token!r} (p={token.teacher_token_prob:.3f})")
    text = html.escape(token.text).replace("\n", "&#8629;\n") or "&#183;"  # a line break shows; "" as a dot
    return f'<span class="tok" style="{kl_shade(token.reverse_kl, scale)}" title="{html.escape(title)}">{text}</span>'


VERDICTS = {True: ('<span class="mark right" title="right: the verifier accepts the answer">&#10003;</span>'),
            False: ('<span class="mark wrong" title="wrong: the verifier rejects the answer">&#10007;</span>'),
            None: '<span class="mark" title="no known answer to check">?</span>'}  # fmt: skip


def render_html(views: list[SampleView], title: str = "Forking tokens") -> str:
    """A page with one paragraph per sample: a right/wrong mark from the verifier, the prompt as the model read it,
    then each token's text shaded by its reverse KL (darkest = the sample set's largest), under a colour legend."""
    scale = max((t.reverse_kl for v in views for t in v.tokens), default=0.0)
    rows = []
    for view in views:
        total = sum(t.reverse_kl for t in view.tokens)
        peak = view.tokens[view.peak] if view.tokens else None
        note = f"sum {total:.2f} nats" + (f"; peak {peak.reverse_kl:.2f} at {peak.text!r}, teacher prefers "
                                         f"{peak.teacher_token!r}" if peak else "")  # fmt: skip
        rows.append(f'<div class="sample">{VERDICTS[view.correct]}<span class="prompt">{html.escape(view.prompt)}</span>'
                    + "".join(_cell(t, scale) for t in view.tokens)
                    + f'<span class="note">{html.escape(note)}</span></div>')  # fmt: skip
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
.sample {{ font-family: monospace; font-size: 15px; margin: 0.8em 0; white-space: pre-wrap; }}
.prompt {{ color: #555; margin-right: 0.2em; }}
.tok {{ padding: 1px 0; border-right: 1px solid #eee; }}
.mark {{ display: inline-block; width: 1.5em; font-weight: bold; color: #777; }}
.right {{ color: #1a7f37; }}
.wrong {{ color: #c62828; }}
.note {{ color: #777; font-family: sans-serif; font-size: 12px; margin-left: 1em; }}
.legend {{ font-size: 13px; margin: 1em 0; }}
.legend .tok {{ font-family: monospace; }}
</style></head><body>
<h2>{html.escape(title)}</h2>
<p>Each token of the student's own sample is shaded by the per-token reverse KL to the teacher, KL(pi_student ||
pi_teacher) at that position: the penalty on-policy distillation puts there. Hover a token for the teacher's
preferred token.</p>
<div class="legend">reverse KL (nats): {kl_legend(scale)}
&nbsp; {VERDICTS[True]} right &nbsp; {VERDICTS[False]} wrong (the task's verifier on the sample's final answer)</div>
{''.join(rows)}
</body></html>
"""
