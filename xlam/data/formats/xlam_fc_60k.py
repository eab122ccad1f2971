"""Salesforce xlam-function-calling-60k: ``query``, ``tools`` and ``answers`` (JSON strings).

One record is one user query answered by one assistant turn of (often parallel) calls;
there are no tool results. Tool parameters are a flat ``param -> {description, type,
default}`` map with Python-ish types, converted to JSON Schema by
:func:`~xlam.data.formats.tool_schema.convert_tool` (required = no default, not optional).
"""

from __future__ import annotations

from typing import Any

from xlam.data.schema import Message, Trajectory

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
