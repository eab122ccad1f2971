"""Preference-pair importers: native pair records -> :class:`~xlam.data.preference.PreferencePair`.

``conversational`` is the format of TRL's and Hugging Face's preference datasets: ``prompt``
(a list of OpenAI chat messages, possibly with a system message, earlier assistant turns
with ``tool_calls`` and tool results; or a string, one user message), ``chosen`` and
``rejected`` (each a list holding one assistant message, a single message object, or a
string: the assistant's text) and optional ``tools`` (a list of function schemas or its JSON
text). Without ``prompt`` (TRL's implicit prompt) the shared leading messages of ``chosen``
and ``rejected`` are the prompt. Messages are read by the ``openai`` importer, so calls,
arguments (objects or JSON text), reasoning and content parts follow its rules.

``unified`` is this project's pair format itself, validated (``metadata`` as JSON text in
columnar stores is decoded).
"""

from __future__ import annotations

from typing import Any

from xlam.data.preference import SIDES, PreferencePair, pair_problem
from xlam.data.schema import Message

from . import openai
from .base import Context, RecordError, parse_tools, record_metadata, require_dict, trajectory_id
from .registry import Format
from .unified import read_unified

NAME = "conversational"
DESCRIPTION = "TRL/HF conversational preference pairs: prompt, chosen, rejected, tools"
_CONSUMED = frozenset({"id", "prompt", "chosen", "rejected", "tools"})


def _messages(value: Any, what: str, role: str) -> list[Any]:
    """A field holding messages as a list; a string is one message of ``role``."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return value
    raise RecordError(
        "field_type",
        f"'{what}' must be a list of messages, a message or a string, got {type(value).__name__}",
    )


def _split(record: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """``(prompt messages, {side: its one message})``."""
    sides: dict[str, list[Any]] = {}
    for side in SIDES:
        if side not in record or record[side] is None:
            raise RecordError("missing_field", f"no '{side}' field")
        sides[side] = _messages(record[side], side, "assistant")
    if record.get("prompt") is not None:
        prompt = _messages(record["prompt"], "prompt", "user")
    else:
        # TRL's implicit prompt: both sides repeat the history before their last turn.
        chosen, rejected = sides["chosen"], sides["rejected"]
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        prompt = chosen[:n]
        sides = {"chosen": chosen[n:], "rejected": rejected[n:]}
    out = {}
    for side, msgs in sides.items():
        if len(msgs) != 1:
            raise RecordError(
                "pair_side", f"'{side}' must hold one assistant message, got {len(msgs)} messages"
            )
        msg = msgs[0]
        role = msg.get("role") if isinstance(msg, dict) else type(msg).__name__
        if role != "assistant":
            raise RecordError("pair_side", f"'{side}' must be an assistant message, got {role!r}")
        out[side] = msg
    return prompt, out


def _relabel(err: RecordError, where: str, label: str, prefix: str) -> RecordError:
    """``err`` located in the pair: the ``openai`` importer's ``where`` (``message i``)
    becomes ``label``; a message without it gets ``prefix``."""
    msg = err.message
    msg = label + msg[len(where) :] if msg.startswith(where) else f"{prefix}: {msg}"
    return RecordError(err.rule, msg)


def _side(prompt: list[Any], msg: dict[str, Any], side: str, history: list[Message]) -> Message:
    """The side's message, read after the prompt (so that call ids count its position)."""
    where = f"message {len(prompt)}"
    try:
        traj = openai.convert({"messages": [*prompt, msg]}, Context(source=""))
    except RecordError as e:
        raise _relabel(e, where, f"'{side}'", f"'{side}'") from None
    assert traj.conversation[:-1] == history  # the prompt reads the same with a side after it
    return traj.conversation[-1]


def convert(record: Any, ctx: Context) -> PreferencePair:
    """Map one conversational pair record; see the module docstring for the rules."""
    record = require_dict(record)
    prompt, sides = _split(record)
    if not prompt:
        raise RecordError("empty", "the prompt holds no message")
    tools = parse_tools(record.get("tools"))
    try:
        hist = openai.convert({"messages": prompt}, Context(source=""))
    except RecordError as e:
        raise _relabel(e, "message", "prompt message", "prompt") from None
    chosen, rejected = (_side(prompt, sides[s], s, hist.conversation) for s in SIDES)
    problem = pair_problem(hist.conversation, chosen, rejected)
    if problem is not None:
        raise RecordError(*problem)
    return PreferencePair(
        unique_trajectory_id=trajectory_id(record, ctx),
        source=ctx.source,
        conversation=hist.conversation,
        chosen=chosen,
        rejected=rejected,
        task_instruction=hist.task_instruction,
        tools=tools,
        metadata=record_metadata(record, ctx, _CONSUMED),
    )


def convert_unified(record: Any, ctx: Context) -> PreferencePair:
    """Validate a unified pair record; its ``metadata['origin']`` is set only if absent."""
    return read_unified(record, ctx, PreferencePair.from_dict)


PAIR_FORMATS: dict[str, Format] = {
    NAME: Format(NAME, DESCRIPTION, convert),
    "unified": Format(
        "unified", "xlam preference pairs (validated, kept as they are)", convert_unified
    ),
}
