"""Finding a tool call in rendered text: the "did the template drop it" check."""

from __future__ import annotations

import json
from typing import Any

_DECODER = json.JSONDecoder()


def _leaves(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _leaves(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _leaves(v)]
    return [obj]


def call_in_text(name: str, arguments: dict[str, Any], text: str) -> bool:
    """Whether ``text`` shows the call: its name and its arguments.

    Arguments count as shown when some JSON object in the text equals them (or holds them
    as a direct value, e.g. ``{"name": ..., "arguments": {...}}``), whatever the spacing,
    key order or escaping; for templates that render arguments in another syntax, every
    key and scalar value must appear.
    """
    if name not in text:
        return False
    pos = text.find("{")
    while pos != -1:
        try:
            obj, _ = _DECODER.raw_decode(text, pos)
        except ValueError:
            obj = None
        if obj == arguments or (
            isinstance(obj, dict) and any(v == arguments for v in obj.values())
        ):
            return True
        pos = text.find("{", pos + 1)
    if not arguments:
        return False
    keys = _keys(arguments)
    vals = [v for v in _leaves(arguments) if v is not None]
    return all(k in text for k in keys) and all(
        (v if isinstance(v, str) else json.dumps(v)) in text for v in vals
    )


def _keys(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [k for k, v in obj.items() for k in [k, *_keys(v)]]
    if isinstance(obj, list):
        return [k for v in obj for k in _keys(v)]
    return []
