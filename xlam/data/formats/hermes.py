"""Hermes function calling (NousResearch hermes-function-calling-v1) and raw glaive-v2 records.

Hermes: ShareGPT turns; tools inside the system prompt in ``<tools>...</tools>`` (JSON or
Python literals); each call in ``<tool_call>...</tool_call>`` as JSON or a single-quoted
Python dict (parsed as a literal, never evaluated); a ``tool`` turn may hold several
``<tool_response>`` blocks, one tool message each. A leading ``<think>`` block becomes the
turn's reasoning. The stock "You are a function calling AI model" system prompt only
describes the Hermes output format, which the model's own chat template replaces, so it is
dropped; any other system text is kept as the task instruction.

Glaive-v2 (``system`` + ``chat`` strings with ``USER:``/``ASSISTANT:``/``FUNCTION RESPONSE:``
markers and ``<functioncall> {"name": ..., "arguments": '{...}'}``) is read here too.
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
    call_from_object,
    finish,
    get_turns,
    make_call_id,
    parse_arguments,
    parse_call_text,
    parse_tools,
    require_dict,
    result_text,
    text_field,
    tool_message,
    turn_role_text,
)
from .pyliteral import LiteralError, parse_literal
from .sharegpt import ASSISTANT_ROLES, RESULT_ROLES, USER_ROLES
from .tool_schema import convert_tools

NAME = "hermes"
DESCRIPTION = "Hermes <tool_call>/<tool_response> turns, tools in <tools>; raw glaive-v2"
_CONSUMED = frozenset({"id", "conversations", "messages", "tools", "system", "chat"})

_TOOLS_BLOCK = re.compile(r"<tools>(.*?)</tools>", re.S)
_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
_RESPONSE = re.compile(r"<tool_response>(.*?)</tool_response>", re.S)
_THINK = re.compile(r"^\s*<think>(.*?)</think>", re.S)
_HERMES_BOILERPLATE = "You are a function calling AI model"
_GLAIVE_TURN = re.compile(r"^(USER|ASSISTANT|FUNCTION RESPONSE):[ \t]?", re.M)
_GLAIVE_INTRO = re.compile(r"^You are a helpful assistant,? with access to the following functions")
_GLAIVE_CALL = re.compile(
    r'^\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*\'(.*)\'\s*\}$', re.S
)


def _decode(text: str) -> Any:
    """JSON, else a Python literal; raises :class:`LiteralError`."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return parse_literal(text)


def parse_tools_block(text: str) -> list[dict[str, Any]]:
    """Tools written in a ``<tools>`` block: a list, one object, or objects one per line."""
    text = text.strip()
    if not text:
        return []
    try:
        obj = _decode(text)
    except LiteralError:
        try:
            obj = _decode("[" + re.sub(r"\}\s*\n\s*\{", "},{", text) + "]")
        except LiteralError as e:
            msg = f"<tools> block is neither JSON nor literals: {e}"
            raise RecordError("tool_schema", msg) from None
    if isinstance(obj, dict):
        obj = [obj]
    if not isinstance(obj, list):
        raise RecordError("tool_schema", "<tools> block must hold tool objects")
    return convert_tools(obj)


def _system(text: str) -> tuple[str, list[dict[str, Any]]]:
    tools: list[dict[str, Any]] = []
    for m in _TOOLS_BLOCK.finditer(text):
        tools.extend(parse_tools_block(m.group(1)))
    rest = _TOOLS_BLOCK.sub("", text).strip()
    if rest.startswith(_HERMES_BOILERPLATE):
        rest = ""
    return rest, tools


def _assistant(text: str, idx: int) -> Message:
    reasoning = None
    m = _THINK.match(text)
    if m:
        reasoning = m.group(1).strip()
        text = text[m.end() :]
    calls = [parse_call_text(c, make_call_id(idx, k)) for k, c in enumerate(_CALL.findall(text))]
    content = _CALL.sub("", text).strip() if calls else text.strip()
    if "<tool_call>" in content:
        raise RecordError("call_parse", "<tool_call> without a closing </tool_call>")
    return Message(role="assistant", content=content, reasoning=reasoning, tool_calls=calls)


def _responses(text: str, pairer: CallPairer) -> list[Message]:
    blocks = _RESPONSE.findall(text) or [text]
    out = []
    for block in blocks:
        name = None
        content = block.strip()
        try:
            obj = _decode(content)
        except LiteralError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("name"), str) and "content" in obj:
            name = obj["name"]
            content = result_text(obj["content"])
        out.append(tool_message(content, pairer, name))
    return out


def convert(record: Any, ctx: Context) -> Trajectory:
    """Map one Hermes (or glaive-v2) record; see the module docstring for the rules."""
    record = require_dict(record)
    if isinstance(record.get("chat"), str):
        return _glaive(record, ctx)
    turns = get_turns(record, ("conversations", "messages"))
    system, tools = _system(text_field(record.get("system"), "'system'"))
    if record.get("tools"):
        tools = parse_tools(record["tools"]) + tools
    conversation: list[Message] = []
    pairer = CallPairer()
    for i, turn in enumerate(turns):
        role, value = turn_role_text(turn, i)
        role = role.lower()
        text = text_field(value, f"turn {i}")
        if role == "system":
            if conversation:
                raise RecordError(
                    "system_position", f"system turn {i} after the conversation began"
                )
            extra, more = _system(text)
            system = f"{system}\n\n{extra}".strip()
            tools.extend(more)
        elif role in USER_ROLES:
            conversation.append(Message(role="user", content=text))
        elif role in ASSISTANT_ROLES:
            msg = _assistant(text, len(conversation))
            pairer.add(msg.tool_calls)
            conversation.append(msg)
        elif role in RESULT_ROLES:
            conversation.extend(_responses(text, pairer))
        else:
            raise RecordError("unknown_role", f"turn {i} has unknown role {role!r}")
    return finish(record, ctx, conversation, tools, system, _CONSUMED)


def _glaive_tools(system: str) -> tuple[str, list[dict[str, Any]]]:
    """Split a glaive system prompt into its instruction and the JSON tool objects after it."""
    system = re.sub(r"^\s*SYSTEM:\s*", "", system)
    first = system.find("{")
    if first < 0:
        return system.strip(), []
    decode = json.JSONDecoder().raw_decode
    raw: list[Any] = []
    pos = first
    while pos < len(system):
        while pos < len(system) and system[pos].isspace():
            pos += 1
        if pos >= len(system):
            break
        try:
            obj, pos = decode(system, pos)
        except (json.JSONDecodeError, RecursionError) as e:
            msg = f"glaive system prompt: tool JSON is invalid: {e}"
            raise RecordError("tool_schema", msg) from None
        raw.append(obj)
    instruction = system[:first].strip()
    if _GLAIVE_INTRO.match(instruction):
        instruction = "You are a helpful assistant."
    return instruction, convert_tools(raw)


def _glaive_call(payload: str, call_id: str) -> ToolCall:
    payload = payload.strip()
    try:
        return call_from_object(json.loads(payload), call_id)
    except (json.JSONDecodeError, RecursionError):
        pass
    # Glaive quotes the arguments JSON in single quotes: '{"a": 1}'.
    m = _GLAIVE_CALL.match(payload)
    if not m:
        raise RecordError("call_parse", f"<functioncall> payload is not a call: {payload[:80]!r}")
    try:
        name = json.loads(f'"{m.group(1)}"')
    except json.JSONDecodeError as e:
        raise RecordError("call_parse", f"<functioncall> name is not a JSON string: {e}") from None
    return ToolCall(name=name, arguments=parse_arguments(m.group(2), name), id=call_id)


def _glaive(record: dict[str, Any], ctx: Context) -> Trajectory:
    instruction, tools = _glaive_tools(text_field(record.get("system"), "'system'"))
    parts = _GLAIVE_TURN.split(record["chat"])
    if parts[0].strip():
        raise RecordError("unknown_role", "text before the first USER:/ASSISTANT: marker")
    conversation: list[Message] = []
    pairer = CallPairer()
    for role, text in zip(parts[1::2], parts[2::2]):
        text = text.replace("<|endoftext|>", "").strip()
        if role == "USER":
            conversation.append(Message(role="user", content=text))
        elif role == "ASSISTANT":
            before, marker, payload = text.partition("<functioncall>")
            calls = [_glaive_call(payload, make_call_id(len(conversation), 0))] if marker else []
            pairer.add(calls)
            conversation.append(Message(role="assistant", content=before.strip(), tool_calls=calls))
        else:
            conversation.append(tool_message(text, pairer))
    return finish(record, ctx, conversation, tools, instruction, _CONSUMED)
