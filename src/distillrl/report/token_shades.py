"""Tokens shaded by their reverse KL to the teacher, as the forking-token page (`inspect`) and the run page show
them: red at opacity min(KL_t / scale, 1), where KL_t is the token's reverse KL in nats and `scale` the largest on
the page (the darkest token is the page's largest penalty)."""

from __future__ import annotations


def kl_shade(reverse_kl: float, scale: float) -> str:
    """The CSS background of a token whose reverse KL is `reverse_kl` nats, on a page whose largest is `scale`."""
    opacity = min(reverse_kl / scale, 1.0) if scale > 0 else 0.0
    return f"background: rgba(220, 40, 40, {opacity:.3f})"


def kl_legend(scale: float) -> str:
    """Five swatches, 0 to `scale` nats in quarters, each shaded as a token of that reverse KL."""
    values = [scale * i / 4 for i in range(5)]
    return "".join(f'<span class="tok" style="{kl_shade(value, scale)}">&nbsp;{value:.2f}&nbsp;</span>' for value in values)
