"""Final answers: where a completion states one, and when two answers are the same.

Extraction (`task.answer_format`):
- `hash`: the rest of the line after the completion's last `#` (`... so #42`);
- `boxed`: the contents of the last `\\boxed{...}` (braces balanced);
- `last_line`: the last non-empty line, without a leading `answer:` / `the answer is`;
- `tag`: the contents of the last `<answer>...</answer>` (the tag is `task.answer_tag`), stripped; a last `<answer>`
  left open runs to the end of the completion (a stop string `</answer>` ends the completion the reward reads
  before its close);
- `regex:PATTERN`: the last match of PATTERN in the completion: its first capture group, or the whole match
  when the pattern has no group;
- `auto`: tag when the completion has an `<answer>` (the most explicit marker: a `#` or `\\boxed{}` inside a
  reasoning before it is not the answer), else boxed when it has a `\\boxed{`, else hash when it has a `#`, else
  last_line.

Equivalence (`task.answer_match`): `normalized` compares the answers with surrounding `$`, `\\boxed{}`, a final
full stop and all white space removed, case-insensitively, and numbers by value (2 = 2.0 = 2.00, 1e3 = 1000);
`math` asks the `math-verify` library (LaTeX and expressions: 1/2 = 0.5, x+1 = 1+x), falling back to
`normalized` when it parses neither side.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from distillrl.core.errors import UserError

ANSWER_FORMATS = ("auto", "hash", "boxed", "last_line", "tag", "regex:PATTERN")
REGEX = "regex:"
DEFAULT_TAG = "answer"
TAG_NAME = re.compile(r"^[A-Za-z_][\w.-]*$")
ANSWER_MATCHES = ("normalized", "math")
BOXED = "\\boxed{"
ANSWER_PREFIX = re.compile(r"^\s*(?:final answer|the answer is|answer)\s*[:=]?\s*", re.IGNORECASE)
NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def last_boxed(text: str) -> str | None:
    """The contents of the last `\\boxed{...}` of `text` (nested braces balanced); None without a whole one."""
    start = text.rfind(BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(BOXED)
    for index in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[begin:index]
    return None


def after_last_hash(text: str) -> str | None:
    """The rest of the line after the last `#`, stripped; None without a `#`."""
    index = text.rfind("#")
    return None if index < 0 else text[index + 1 :].split("\n", 1)[0].strip()


def last_line(text: str) -> str | None:
    """The last non-empty line without a leading `answer:`-style prefix; None for an empty text."""
    lines = [line for line in text.splitlines() if line.strip()]
    return ANSWER_PREFIX.sub("", lines[-1]).strip() if lines else None


def in_last_tag(text: str, tag: str = DEFAULT_TAG) -> str | None:
    """The contents of the last `<tag>...</tag>` of `text`, stripped (an open last `<tag>` runs to the end); None
    without a `<tag>`."""
    start = text.rfind(f"<{tag}>")
    if start < 0:
        return None
    inside = text[start + len(tag) + 2 :]
    return inside.split(f"</{tag}>", 1)[0].strip()


def last_regex_match(text: str, pattern: str) -> str | None:
    """The last match of `pattern` in `text`: its first group when it has one, else the whole match, stripped;
    None without a match."""
    matches = list(re.finditer(pattern, text))
    if not matches:
        return None
    found = matches[-1].group(1 if matches[-1].re.groups else 0)
    return None if found is None else found.strip()


def check_answer_format(answer_format: str, tag: str = DEFAULT_TAG) -> None:
    """Raise ValueError (naming the field) for an unknown format, a `regex:` that does not compile or a tag that is
    not a tag name."""
    if answer_format.startswith(REGEX):
        try:
            re.compile(answer_format[len(REGEX) :])
        except re.error as error:
            raise ValueError(f"answer_format: {answer_format!r} is not a valid regular expression ({error})") from None
    elif answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format: unknown format {answer_format!r} (use {', '.join(ANSWER_FORMATS)})")
    if not TAG_NAME.match(tag):
        raise ValueError(f"answer_tag: {tag!r} is not a tag name (write `answer` for <answer>...</answer>)")


def extract_answer(completion: str, answer_format: str = "auto", tag: str = DEFAULT_TAG) -> str | None:
    """The final answer a completion states in `answer_format` (see the module docstring; `tag` names the tag of
    `tag` and `auto`); None when it states none."""
    if answer_format.startswith(REGEX):
        return last_regex_match(completion, answer_format[len(REGEX) :])
    if answer_format == "tag" or (answer_format == "auto" and f"<{tag}>" in completion):
        return in_last_tag(completion, tag)
    if answer_format == "boxed" or (answer_format == "auto" and BOXED in completion):
        return last_boxed(completion)
    if answer_format == "hash" or (answer_format == "auto" and "#" in completion):
        return after_last_hash(completion)
    return last_line(completion)


def normalize_answer(answer: str) -> str:
    """An answer as `normalized` matching compares it: `$`, `\\boxed{}` and a final full stop removed, no white
    space, case-folded."""
    text = answer.strip().strip("$").strip()
    boxed = last_boxed(text)
    if boxed is not None and text.startswith(BOXED) and text.endswith("}"):
        text = boxed
    text = text.rstrip(".").strip()
    return re.sub(r"\s+", "", text).casefold()


def as_number(text: str) -> Decimal | None:
    """A normalized answer's numeric value (thousands separators `1,000` not accepted: `[1,000]` is a list)."""
    if not NUMBER.match(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def same_answer(predicted: str, reference: str) -> bool:
    """`normalized` equivalence: equal normalized text, or equal numbers (2 = 2.0 = 2.00)."""
    a, b = normalize_answer(predicted), normalize_answer(reference)
    if a == b:
        return True
    x, y = as_number(a), as_number(b)
    return x is not None and y is not None and x == y


def math_verify_module():
    """The `math-verify` library (the `math` extra), imported on first use."""
    try:
        import math_verify
    except ImportError:
        raise UserError("task.answer_match: 'math' needs the math-verify library: pip install 'distillrl[math]' "
                        "(or pip install math-verify)") from None  # fmt: skip
    return math_verify


def same_math_answer(predicted: str, reference: str) -> bool:
    """`math` equivalence through math-verify (symbolic and numeric); `normalized` when it parses neither side."""
    math_verify = math_verify_module()
    wrap = lambda text: text if "$" in text or BOXED in text else f"${text}$"  # noqa: E731 - LaTeX or plain expression
    gold, answer = math_verify.parse(wrap(reference)), math_verify.parse(wrap(predicted))
    if gold and answer and math_verify.verify(gold, answer):
        return True
    return same_answer(predicted, reference)


def answers_match(predicted: str | None, reference: str, answer_match: str = "normalized") -> bool:
    """Whether an extracted answer (None: none stated) equals the reference under `answer_match`."""
    if predicted is None:
        return False
    return same_math_answer(predicted, reference) if answer_match == "math" else same_answer(predicted, reference)


def stated(answer: str, answer_format: str, tag: str = DEFAULT_TAG) -> str | None:
    """A completion that states `answer` in `answer_format`: what a model must be able to write to score 1; None
    for a `regex:` (no completion can be made from a pattern)."""
    if answer_format.startswith(REGEX):
        return None
    if answer_format == "tag":
        return f"<{tag}>{answer}</{tag}>"
    if answer_format == "boxed":
        return f"{BOXED}{answer}}}"
    if answer_format == "last_line":
        return answer
    return f"#{answer}"  # hash, and auto (which reads a `#`)
