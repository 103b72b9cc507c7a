"""Layer 3, text as the models see it: prompts rendered through a chat template, completions stopped at the end of
a turn (`chat`), and (prompt, completion) token sequences with their masks (`sequences`).

Above the models (it reads tokenizers), below the tasks (which render their prompts through it)."""
