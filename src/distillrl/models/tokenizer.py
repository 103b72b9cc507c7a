"""The built-in character-level tokenizer, a real `PreTrainedTokenizerFast`.

One token per character of a fixed alphabet (digits, lower-case letters, space and the punctuation the
built-in tasks use) plus `<pad>`, `<eos>` and `<unk>`. The chat template renders a conversation as the
user's text followed by the assistant's text and `<eos>`, so `apply_chat_template(...,
add_generation_prompt=True)` of a single user turn is the bare prompt the student continues.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
ALPHABET = string.digits + string.ascii_lowercase + " +-*/()=;#,.:[]<>|_'\"!?"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{% else %}{{ message['content'] }}{% endif %}"
    "{% endfor %}"
)


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """Build the character-level tokenizer (ids: pad 0, eos 1, unk 2, then ALPHABET in order)."""
    vocab = {PAD: 0, EOS: 1, UNK: 2}
    for char in ALPHABET:
        vocab[char] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
