"""OpenAI chat-completions records: ``messages`` with ``tools`` and ``tool_calls``.

Handles ``content: null`` on call turns, ``arguments`` as JSON text or as an object, legacy
``function_call``/``function`` messages, reasoning fields (``reasoning_content``,
``reasoning``, ``thinking``) and content given as a list of typed parts, as in the
reasoning-tool-use data: ``text``, ``reasoning``/``thinking`` and ``tool_call`` parts, each
with its text under ``text`` or ``value``. Tool results without ``tool_call_id`` answer the
oldest pending call; calls without an id get a deterministic one.
"""

from __future__ import annotations

from typing import Any

from xlam.data.schema import Message, ToolCall, Trajectory

from .base import (
    CallPairer,
    Context,
    RecordError,
    call_from_object,
    finish,
    get_turns,
    make_call_id,
    parse_call_text,
    parse_tools,
    require_dict,
    result_text,
    text_field,
)

NAME = "openai"
DESCRIPTION = "OpenAI chat messages with tools/tool_calls (also typed content parts)"
_CONSUMED = frozenset({"id", "messages", "tools", "functions"})
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
_REASONING_PARTS = frozenset({"reasoning", "thinking"})
_CALL_PARTS = frozenset({"tool_call", "function_call"})


def _parts(content: Any, where: str) -> tuple[str, list[str], list[Any]]:
    """``(text, reasoning pieces, raw call parts)`` of a message content."""
    if content is None or isinstance(content, str):
        return content or "", [], []
    if not isinstance(content, list):
        raise RecordError(
            "content_type",
            f"{where}: content must be text or a list of parts, not {type(content).__name__}",
        )
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[Any] = []
    for j, part in enumerate(content):
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise RecordError("content_type", f"{where}: part {j} is not an object")
        kind = part.get("type")
        value = part["text"] if "text" in part else part.get("value")
        if kind in _TEXT_PARTS:
            texts.append(text_field(value, f"{where} part {j}"))
        elif kind in _REASONING_PARTS:
            reasoning.append(text_field(value, f"{where} part {j}"))
        elif kind in _CALL_PARTS:
            calls.append(value if value is not None else part)
        else:
            raise RecordError("content_type", f"{where}: unsupported content part type {kind!r}")
    return "\n".join(texts), reasoning, calls


def _plain(content: Any, where: str) -> str:
    """Text of a system or user message, which cannot hold reasoning or calls."""
    text, reasoning, calls = _parts(content, where)
    if reasoning or calls:
        raise RecordError(
            "content_type", f"{where}: reasoning or tool_call parts outside assistant"
        )
    return text


def _assistant(m: dict[str, Any], idx: int, where: str) -> Message:
    text, reasoning, call_parts = _parts(m.get("content"), where)
    for key in _REASONING_KEYS:
        value = m.get(key)
        if value:
            reasoning.insert(0, text_field(value, f"{where} {key}"))
    raw_calls = m.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise RecordError("field_type", f"{where}: 'tool_calls' must be a list")
    calls: list[ToolCall] = []
    for c in raw_calls:
        calls.append(call_from_object(c, make_call_id(idx, len(calls))))
    if isinstance(m.get("function_call"), dict):
        calls.append(call_from_object(m["function_call"], make_call_id(idx, len(calls))))
    for c in call_parts:
        call_id = make_call_id(idx, len(calls))
        if isinstance(c, str):
            calls.append(parse_call_text(c, call_id))
        else:
            calls.append(call_from_object(c, call_id))
    return Message(
        role="assistant",
        content=text,
        reasoning="\n".join(reasoning) if reasoning else None,
        tool_calls=calls,
    )


def _tool(m: dict[str, Any], pairer: CallPairer, where: str) -> Message:
    content = m.get("content")
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") in _TEXT_PARTS for p in content
    ):
        text = _parts(content, where)[0]
    else:
        text = result_text(content if content is not None else "")
    name = m.get("name")
    if name is not None and not isinstance(name, str):
        raise RecordError("field_type", f"{where}: 'name' must be a string")
    call_id = m.get("tool_call_id")
    if call_id is not None and not isinstance(call_id, str):
        raise RecordError("field_type", f"{where}: 'tool_call_id' must be a string")
    if call_id:
        call = pairer.answer_id(call_id)
        return Message(
            role="tool",
            content=text,
            tool_call_id=call_id,
            name=name or (call.name if call else None),
        )
    call = pairer.answer(name)
    if call is None:
        return Message(role="tool", content=text, tool_call_id=None, name=name)
    return Message(role="tool", content=text, tool_call_id=call.id, name=name or call.name)


def convert(record: Any, ctx: Context) -> Trajectory:
    """Map one OpenAI-style record; see the module docstring for the rules."""
    record = require_dict(record)
    messages = get_turns(record, ("messages",))
    system_parts: list[str] = []
    conversation: list[Message] = []
    pairer = CallPairer()
    for i, m in enumerate(messages):
        where = f"message {i}"
        if not isinstance(m, dict):
            raise RecordError("field_type", f"{where} must be an object")
        role = m.get("role")
        if role in ("system", "developer"):
            if conversation:
                raise RecordError("system_position", f"{where}: system message after the start")
            system_parts.append(_plain(m.get("content"), where))
        elif role == "user":
            conversation.append(Message(role="user", content=_plain(m.get("content"), where)))
        elif role == "assistant":
            msg = _assistant(m, len(conversation), where)
            pairer.add(msg.tool_calls)
            conversation.append(msg)
        elif role in ("tool", "function"):
            conversation.append(_tool(m, pairer, where))
        else:
            raise RecordError("unknown_role", f"{where} has unknown role {role!r}")
    tools_value = record["tools"] if record.get("tools") is not None else record.get("functions")
    tools = parse_tools(tools_value)
    return finish(record, ctx, conversation, tools, "\n\n".join(system_parts), _CONSUMED)
