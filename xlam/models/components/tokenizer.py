"""Does a model folder load back the tokenizer the model was trained with?

transformers and vLLM choose a model folder's tokenizer class from its ``model_type`` (a
``qwen2`` folder loads ``Qwen2Tokenizer``, which rebuilds Qwen2's pre-tokenizer whatever
``tokenizer.json`` says), so a tokenizer saved beside a model is not always the one that comes
back. Training checks it before the first step, the export after writing.
"""

from __future__ import annotations

from typing import Any

# Digits, JSON, whitespace runs, line breaks and non-ASCII: where pre-tokenizers differ.
_PROBE_TEXT = (
    "Find 2 flights < $1,250.00 on 2026-11-24T09:30 \u2014 caf\u00e9 \u5317\u4eac\n\n  "
    '{"name": "search", "arguments": {"max_results": 10, "query": "owls"}}\t\r\n'
)
_PROBE_MESSAGES = [
    {"role": "system", "content": "You call functions."},
    {"role": "user", "content": "Weather in Paris, 3 days?"},
]
_PROBE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather forecast.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
]


def _probe_ids(tokenizer: Any) -> list[list[int]]:
    specials = " ".join(str(t) for t in tokenizer.all_special_tokens)
    ids = [tokenizer.encode(t, add_special_tokens=False) for t in (_PROBE_TEXT, specials)]
    if not tokenizer.chat_template:
        return ids
    # Templates may refuse tools, or a system turn; the first render that works is compared.
    for kwargs in (
        {"tools": _PROBE_TOOLS},
        {},
        {"conversation": _PROBE_MESSAGES[1:]},
    ):
        try:
            text = tokenizer.apply_chat_template(
                kwargs.pop("conversation", _PROBE_MESSAGES),
                tokenize=False,
                add_generation_prompt=True,
                **kwargs,
            )
        except Exception:
            continue
        ids.append(tokenizer.encode(text, add_special_tokens=False))
        break
    return ids


def check_tokenizer_matches(trained: Any, loaded: Any, where: str) -> None:
    """Raise unless ``loaded`` tokenizes (and templates) exactly like ``trained``.

    transformers and vLLM choose a model folder's tokenizer class from its ``model_type``
    (a ``qwen2`` folder loads ``Qwen2Tokenizer``, which rebuilds Qwen2's pre-tokenizer
    whatever ``tokenizer.json`` says), so a tokenizer saved beside a model is not always the
    one that comes back. A model served with another tokenization than it was trained on
    degrades silently; this makes it an error.

    Args:
        trained: The tokenizer the model is trained with.
        loaded: The tokenizer as the model folder loads it.
        where: What ``loaded`` is, for the message.
    """
    a, b = _probe_ids(trained), _probe_ids(loaded)
    if a == b:
        return
    first = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    text = (_PROBE_TEXT, "the special tokens", "a chat-template render")[first]
    raise ValueError(
        f"{where} loads as {type(loaded).__name__}, which tokenizes {text} differently from "
        f"the training tokenizer ({type(trained).__name__}): a served model would see other "
        "tokens than it was trained on. Train with the model's own tokenizer, or with one "
        "whose pre-tokenizer matches the class transformers picks for this model_type "
        "(see scripts/build_tiny_tokenizer.py)."
    )


__all__ = ["check_tokenizer_matches"]
