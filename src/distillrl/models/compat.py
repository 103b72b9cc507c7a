"""Differences between the transformers versions distillrl supports, answered in one place.

transformers 5.24 renamed the KV-cache argument of the models' `forward` from `past_key_values` to `cache` (the
old name still works there, with a deprecation warning); 5.17 knows only `past_key_values`.
"""

from __future__ import annotations

import inspect
from functools import lru_cache

from transformers import PreTrainedModel


def base_model(model) -> PreTrainedModel:
    """The transformers model under a PEFT wrapper (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@lru_cache(maxsize=None)
def _cache_keyword(model_class: type) -> str:
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_keyword(model) -> str:
    """The name under which this model's `forward` takes a KV cache: `cache` or `past_key_values`."""
    return _cache_keyword(type(base_model(model)))


def output_cache(output):
    """The KV cache a forward pass returned, under either name."""
    return output.cache if hasattr(output, "cache") else output.past_key_values
