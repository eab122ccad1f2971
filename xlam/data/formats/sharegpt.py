"""ShareGPT-style tool data: APIGen-MT-5k, glaive (LLaMA-Factory), other ShareGPT dumps.

Turns are ``{"from", "value"}`` with ``human``/``gpt``/``function_call``/``observation``
(``user``/``assistant``/``tool`` spellings too); ``tools`` is a JSON string and ``system``
holds the instruction (APIGen-MT's domain policy). A ``function_call`` turn holds one call
(or a list) as JSON; consecutive ``function_call`` turns are one assistant turn of parallel
calls. The sources have no call ids: ids are generated from the message position and each
``observation`` answers the oldest pending call.
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
    load_json_field,
    make_call_id,
    parse_tools,
    require_dict,
    result_text,
    text_field,
    tool_message,
    turn_role_text,
)

NAME = "sharegpt"
DESCRIPTION = "ShareGPT / APIGen-MT / glaive: human, gpt, function_call, observation turns"

USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "assistant", "model", "chatgpt", "bing"})
CALL_ROLES = frozenset({"function_call", "tool_call", "tool_calls"})
RESULT_ROLES = frozenset({"observation", "tool", "function", "function_response", "ipython"})
_CONSUMED = frozenset({"id", "conversations", "messages", "tools", "system"})


def _calls(value: Any, msg_index: int, first: int) -> list[ToolCall]:
    if not isinstance(value, str | dict | list):
        raise RecordError("call_parse", f"function_call value must be JSON text, not {value!r}")
    obj = load_json_field(value, "function_call value", rule="call_parse")
    items = obj if isinstance(obj, list) else [obj]
    if not items:
        raise RecordError("call_parse", "function_call turn holds no call")
    return [call_from_object(c, make_call_id(msg_index, first + k)) for k, c in enumerate(items)]


def convert(record: Any, ctx: Context) -> Trajectory:
    """Map one ShareGPT record; see the module docstring for the rules."""
    record = require_dict(record)
    turns = get_turns(record, ("conversations", "messages"))
    system = text_field(record.get("system"), "'system'")
    conversation: list[Message] = []
    pairer = CallPairer()
    for i, turn in enumerate(turns):
        role, value = turn_role_text(turn, i)
        role = role.lower()
        if role in CALL_ROLES:
            prev = conversation[-1] if conversation else None
            if prev is not None and prev.role == "assistant" and prev.tool_calls:
                # Parallel calls written as consecutive turns: one assistant turn.
                calls = _calls(value, len(conversation) - 1, len(prev.tool_calls))
                prev.tool_calls.extend(calls)
            else:
                calls = _calls(value, len(conversation), 0)
                conversation.append(Message(role="assistant", content="", tool_calls=calls))
            pairer.add(calls)
        elif role in RESULT_ROLES:
            conversation.append(tool_message(result_text(value), pairer))
        elif role in USER_ROLES:
            conversation.append(Message(role="user", content=text_field(value, f"turn {i}")))
        elif role in ASSISTANT_ROLES:
            conversation.append(Message(role="assistant", content=text_field(value, f"turn {i}")))
        elif role == "system":
            if conversation:
                raise RecordError(
                    "system_position", f"system turn {i} after the conversation began"
                )
            text = text_field(value, f"turn {i}")
            system = f"{system}\n\n{text}" if system else text
        else:
            raise RecordError("unknown_role", f"turn {i} has unknown role {role!r}")
    tools = parse_tools(record.get("tools"))
    return finish(record, ctx, conversation, tools, system, _CONSUMED)
