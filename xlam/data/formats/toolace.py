"""ToolACE: tools as JSON inside the system prompt, calls in Python call syntax.

The system prompt embeds the tool list as JSON (with ``"type": "dict"`` for objects); the
stock prompt around it only explains ToolACE's output format and is dropped. Assistant
calls are written ``[Name With Spaces(a="x", b=2), other(c=[1, 2])]`` and parsed by a
small scanner plus a literal-only AST walk (no ``eval``). A tool turn holds all results
as one JSON list, ``[{"name", "results"}, ...]``: one tool message per element, each
answering the oldest pending call of that name.
"""

from __future__ import annotations

import json
import re
from typing import Any

from xlam.data.schema import Message, ToolCall, Trajectory

from .base import (
    CallPairer,
    Context,
    RecordError,
    finish,
    get_turns,
    make_call_id,
    parse_tools,
    require_dict,
    result_text,
    text_field,
    tool_message,
    turn_role_text,
)
from .pyliteral import LiteralError, parse_python_calls
from .sharegpt import ASSISTANT_ROLES, RESULT_ROLES, USER_ROLES
from .tool_schema import convert_tools

NAME = "toolace"
DESCRIPTION = "ToolACE: tools JSON in the system prompt, [Func(a=1), ...] calls"
_CONSUMED = frozenset({"id", "conversations", "messages", "system", "tools"})
_BOILERPLATE = "You are an expert in composing functions"
_LIST_START = re.compile(r"\[\s*\{")
_LOOKS_LIKE_CALL = re.compile(r"^\[\s*[^\[\]()\"'=,]+\(")


def _system(system: str) -> tuple[str, list[dict[str, Any]]]:
    """The tool list embedded in the prompt, and what instruction text remains."""
    decode = json.JSONDecoder().raw_decode
    for m in _LIST_START.finditer(system):
        try:
            obj, end = decode(system, m.start())
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(obj, list) and all(isinstance(t, dict) for t in obj):
            rest = (system[: m.start()] + system[end:]).strip()
            return ("" if rest.startswith(_BOILERPLATE) else rest), convert_tools(obj)
    return ("" if system.strip().startswith(_BOILERPLATE) else system.strip()), []


def parse_calls(text: str, msg_index: int) -> list[ToolCall] | None:
    """Calls of an assistant turn, or ``None`` when the turn is plain text."""
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return None
    try:
        parsed = parse_python_calls(stripped)
    except LiteralError as e:
        if _LOOKS_LIKE_CALL.match(stripped):
            raise RecordError("call_parse", f"cannot parse the call list: {e}") from None
        return None
    return [
        ToolCall(name=name, arguments=args, id=make_call_id(msg_index, k))
        for k, (name, args) in enumerate(parsed)
    ]


def _results(text: str, pairer: CallPairer) -> list[Message]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return [tool_message(text, pairer)]
    items = value if isinstance(value, list) and value else [value]
    out = []
    for item in items:
        name = None
        content: Any = item
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            name = item["name"]
            if set(item) == {"name", "results"}:
                content = item["results"]
        out.append(tool_message(result_text(content), pairer, name))
    return out


def convert(record: Any, ctx: Context) -> Trajectory:
    """Map one ToolACE record; see the module docstring for the rules."""
    record = require_dict(record)
    turns = get_turns(record, ("conversations", "messages"))
    instruction, tools = _system(text_field(record.get("system"), "'system'"))
    if record.get("tools"):
        tools = parse_tools(record["tools"]) + tools
    conversation: list[Message] = []
    pairer = CallPairer()
    for i, turn in enumerate(turns):
        role, value = turn_role_text(turn, i)
        role = role.lower()
        text = text_field(value, f"turn {i}")
        if role in USER_ROLES:
            conversation.append(Message(role="user", content=text))
        elif role in ASSISTANT_ROLES:
            calls = parse_calls(text, len(conversation))
            if calls is None:
                conversation.append(Message(role="assistant", content=text))
            else:
                pairer.add(calls)
                conversation.append(Message(role="assistant", content="", tool_calls=calls))
        elif role in RESULT_ROLES:
            conversation.extend(_results(text, pairer))
        elif role == "system":
            if conversation:
                raise RecordError(
                    "system_position", f"system turn {i} after the conversation began"
                )
            extra, more = _system(text)
            instruction = f"{instruction}\n\n{extra}".strip()
            tools.extend(more)
        else:
            raise RecordError("unknown_role", f"turn {i} has unknown role {role!r}")
    return finish(record, ctx, conversation, tools, instruction, _CONSUMED)
