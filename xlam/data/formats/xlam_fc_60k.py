"""Salesforce xlam-function-calling-60k: ``query``, ``tools`` and ``answers`` (JSON strings).

One record is one user query answered by one assistant turn of (often parallel) calls;
there are no tool results. Tool parameters are a flat ``param -> {description, type,
default}`` map with Python-ish types, converted to JSON Schema by
:func:`~xlam.data.formats.tool_schema.convert_tool` (required = no default, not optional).
"""

from __future__ import annotations

from typing import Any

from xlam.data.schema import Message, Trajectory

from . import fastjson
from .base import (
    Context,
    RecordError,
    call_from_object,
    finish,
    load_json_field,
    make_call_id,
    parse_tools,
    require_dict,
)
from .fastpath import FastRecord, ToolTable

NAME = "xlam_fc_60k"
DESCRIPTION = "Salesforce xlam-function-calling-60k (query, tools, answers as JSON strings)"
_CONSUMED = frozenset({"id", "query", "tools", "answers"})


def convert(record: Any, ctx: Context) -> Trajectory:
    """Map one xlam-60k record to a trajectory ``user -> assistant(calls)``."""
    record = require_dict(record)
    query = record.get("query")
    if not isinstance(query, str):
        raise RecordError("missing_field", "'query' must be a string")
    if "answers" not in record:
        raise RecordError("missing_field", "'answers' is missing")
    answers = load_json_field(record["answers"], "'answers'", rule="arguments_json")
    if answers is None:
        answers = []
    if isinstance(answers, dict):
        answers = [answers]
    if not isinstance(answers, list):
        raise RecordError("field_type", "'answers' must be a list of calls")
    calls = [call_from_object(a, make_call_id(1, k)) for k, a in enumerate(answers)]
    conversation = [
        Message(role="user", content=query),
        Message(role="assistant", content="", tool_calls=calls),
    ]
    tools = parse_tools(record.get("tools"))
    return finish(record, ctx, conversation, tools, "", _CONSUMED)


_CALL_IDS = tuple(make_call_id(1, k) for k in range(64))


def fast_convert(
    record: Any, origin: dict[str, Any], source: str, tools: ToolTable
) -> FastRecord | None:
    """What :func:`convert` makes of a plain record, ready to write (see
    :mod:`~xlam.data.formats.fastpath`); ``None`` for anything else: the caller then runs
    :func:`convert`, which also says what is wrong."""
    if type(record) is not dict:
        return None
    query = record.get("query")
    answers = record.get("answers")
    tools_text = record.get("tools")
    if type(query) is not str or type(answers) is not str or type(tools_text) is not str:
        return None
    native = record.get("id")
    if not (type(native) is int or (type(native) is str and native)):
        return None  # no usable id: the general path makes one from the origin
    try:
        answers = fastjson.loads(answers)
    except (ValueError, RecursionError):
        return None
    if type(answers) is not list or not answers or len(answers) > len(_CALL_IDS):
        return None
    calls = []
    out_calls = []
    for k, call in enumerate(answers):
        if type(call) is not dict or "function" in call or "id" in call:
            return None
        name = call.get("name")
        args = call["arguments"] if "arguments" in call else call.get("parameters")
        if type(name) is not str or not name.strip() or type(args) is not dict:
            return None
        calls.append((name, args))
        out_calls.append(
            {"id": _CALL_IDS[k], "type": "function", "function": {"name": name, "arguments": args}}
        )
    declared = tools.from_text(tools_text)
    if declared is None:
        return None
    metadata: dict[str, Any] = {"origin": origin} if origin else {}
    if len(record) > len(_CONSUMED):
        metadata["native"] = {k: v for k, v in record.items() if k not in _CONSUMED}
    tid = f"{source}-{native}"
    out = {
        "unique_trajectory_id": tid,
        "source": source,
        "task_instruction": "",
        "tools": [t.fragment for t in declared],
        "conversation": [
            {"role": "user", "content": query},
            {"role": "assistant", "content": "", "tool_calls": out_calls},
        ],
        "metadata": metadata,
    }
    return FastRecord(tid, source, out, calls, declared)
