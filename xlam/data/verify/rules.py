"""The named rules and :class:`Verifier`, which checks one trajectory against all of them.

Every rule has a name (a key of :data:`RULES`) and each broken one gives a
:class:`Violation` saying exactly what is wrong. Call arguments are checked against each
declared tool's JSON Schema (see :mod:`.schemas`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xlam.data.formats import fastjson
from xlam.data.formats.fastpath import FastRecord, encode
from xlam.data.schema import Trajectory
from xlam.data.verify.ids import IdSet
from xlam.data.verify.schemas import SchemaCache, SchemaEntry

RULES: dict[str, str] = {
    "invalid_json": "the line is not valid JSON",
    "invalid_utf8": "the line is not valid UTF-8",
    "schema": "the record is not a valid unified trajectory",
    "too_deep": "the record is nested too deeply to process",
    "duplicate_id": "the trajectory id was already seen in the same source",
    "tool_schema_invalid": "a declared tool's parameters are not a valid JSON Schema object",
    "duplicate_tool": "two declared tools share a name",
    "unknown_tool": "a call names a tool that is not declared",
    "arguments_invalid": "call arguments do not validate against the tool's JSON Schema",
    "call_id": "a call has an empty or repeated id",
    "orphan_tool_result": "a tool result does not answer an earlier call id",
    "duplicate_tool_result": "a call is answered by more than one tool result",
    "tool_name_mismatch": "a tool result names another tool than the call it answers",
    "role_order": "roles out of order (start with user, tools after calls, end with assistant)",
    "empty_assistant": "an assistant turn has neither content nor tool calls",
    "invalid_unicode": "text holds lone surrogates (not encodable as UTF-8)",
    "too_long_chars": "the serialised trajectory exceeds the character limit",
    "too_long_tokens": "the trajectory text exceeds the token limit",
}

_MAX_VIOLATIONS = 50
_MAX_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: its name (a key of :data:`RULES`) and what exactly is wrong."""

    rule: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "message": self.message}


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def trajectory_text(traj: Trajectory) -> str:
    """All text a model reads or writes in ``traj``, template markup excluded.

    Token counts of this text are template-independent and a lower bound of a render's.
    """
    parts = [traj.task_instruction]
    if traj.tools:
        parts.append(json.dumps(traj.tools, ensure_ascii=False))
    for m in traj.conversation:
        if m.reasoning:
            parts.append(m.reasoning)
        parts.append(m.content)
        for c in m.tool_calls:
            parts.append(c.name)
            parts.append(json.dumps(c.arguments, ensure_ascii=False))
    return "\n".join(p for p in parts if p)


def count_tokens(traj: Trajectory, tokenizer: Any) -> int:
    """Tokens of :func:`trajectory_text` for a Hugging Face tokenizer (no special tokens)."""
    ids = tokenizer(trajectory_text(traj), add_special_tokens=False, verbose=False)["input_ids"]
    return len(ids)


class Verifier:
    """Named rule checks on unified trajectories.

    Args:
        max_chars: Limit on the serialised (JSON) length of a trajectory; ``None``: no limit.
        tokenizer: Optional Hugging Face tokenizer for the token limit.
        max_tokens: Limit on :func:`count_tokens`; needs ``tokenizer``.
        check_ids: Track ids to reject a repeated (source, id). The first one wins.
    """

    def __init__(
        self,
        max_chars: int | None = 200_000,
        tokenizer: Any = None,
        max_tokens: int | None = None,
        check_ids: bool = True,
    ) -> None:
        if max_tokens is not None and tokenizer is None:
            raise ValueError("max_tokens needs a tokenizer")
        self.max_chars = max_chars
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.check_ids = check_ids
        self.schemas = SchemaCache()
        self._ids = IdSet()

    def reset(self) -> None:
        """Forget the ids seen so far (start a new, independent input)."""
        self._ids = IdSet()

    def check(
        self, traj: Trajectory, encoded: tuple[bytes, str | None] | None = None
    ) -> list[Violation]:
        """Every rule ``traj`` breaks (empty if it is good).

        Args:
            traj: The trajectory.
            encoded: ``fastjson.dumps_checked(traj.to_dict())`` if the caller already has it
                (it is what gets written; passing it saves serialising twice).
        """
        out: list[Violation] = []
        add = out.append
        tools = self._check_tools(traj, add)
        self._check_conversation(traj, tools, add)
        data, unicode_problem = encoded or fastjson.dumps_checked(traj.to_dict())
        if unicode_problem is not None:
            add(Violation("invalid_unicode", unicode_problem))
        # UTF-8 bytes >= characters: decode to count only when the bytes exceed the limit.
        if self.max_chars is not None and len(data) > self.max_chars:
            chars = len(data.decode("utf-8", "replace"))
            if chars > self.max_chars:
                add(Violation("too_long_chars", f"{chars} characters > {self.max_chars}"))
        if self.max_tokens is not None:
            try:
                n = count_tokens(traj, self.tokenizer)
            except Exception as e:  # tokenizers refuse some text (lone surrogates)
                add(Violation("invalid_unicode", f"tokenizer failed: {type(e).__name__}: {e}"))
            else:
                if n > self.max_tokens:
                    add(Violation("too_long_tokens", f"{n} tokens > {self.max_tokens}"))
        if self.check_ids and not self._ids.add(f"{traj.source}\x00{traj.unique_trajectory_id}"):
            add(Violation("duplicate_id", f"id {traj.unique_trajectory_id!r} already seen"))
        return out[:_MAX_VIOLATIONS]

    def check_fast(self, fast: FastRecord) -> bytes | None:
        """The JSON line of a shortcut record (see :mod:`~xlam.data.formats.fastpath`) if it
        surely breaks no rule, else ``None``: then :meth:`check` must judge the trajectory
        (it gives the same verdict and says why). Records the id only for a good record, so
        the general path, when it runs, sees the ids exactly as without the shortcut.
        """
        if self.max_tokens is not None:
            return None
        entries: dict[str, SchemaEntry] = {}
        for tool in fast.tools:
            entry = tool.entry
            if entry is None:  # depends on the parameters only: shared like the tool
                entry = tool.entry = self.schemas.get(tool.parameters)
            if entry.error is not None or tool.name in entries:
                return None
            entries[tool.name] = entry
        for name, args in fast.calls:
            entry = entries.get(name)
            if entry is None or not entry.is_valid(args):
                return None
        data = encode(fast.out)
        if data is None or (self.max_chars is not None and len(data) > self.max_chars):
            return None
        if self.check_ids and not self._ids.add(f"{fast.source}\x00{fast.tid}"):
            return None
        return data

    def _check_tools(
        self, traj: Trajectory, add: Callable[[Violation], None]
    ) -> dict[str, SchemaEntry]:
        tools: dict[str, SchemaEntry] = {}
        get = self.schemas.get
        for i, tool in enumerate(traj.tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            name = fn.get("name") if isinstance(fn, dict) else None
            if not isinstance(name, str):  # only a hand-built Trajectory can get here
                add(Violation("tool_schema_invalid", f"tool {i} is not a named function schema"))
                continue
            if name in tools:
                add(Violation("duplicate_tool", f"tool {name!r} is declared twice"))
                continue
            entry = get(fn.get("parameters"))
            if entry.error is not None:
                add(Violation("tool_schema_invalid", _short(f"tool {name!r}: {entry.error}")))
            tools[name] = entry
        return tools

    def _check_conversation(
        self, traj: Trajectory, tools: dict[str, SchemaEntry], add: Callable[[Violation], None]
    ) -> None:
        conv = traj.conversation
        if not conv:
            add(Violation("role_order", "the conversation is empty"))
            return
        if conv[0].role != "user":
            add(Violation("role_order", f"conversation starts with {conv[0].role}, not user"))
        calls: dict[str, str] = {}
        answered: set[str] = set()
        after_calls = False  # inside the tool block that follows an assistant's calls
        for i, m in enumerate(conv):
            role = m.role
            if role == "assistant":
                after_calls = bool(m.tool_calls)
                if not m.tool_calls and not m.content.strip():
                    add(Violation("empty_assistant", f"message {i}: no content and no tool calls"))
                for c in m.tool_calls:
                    if not c.id:
                        add(Violation("call_id", f"message {i}: call {c.name!r} has no id"))
                    elif c.id in calls:
                        add(Violation("call_id", f"message {i}: call id {c.id!r} repeated"))
                    else:
                        calls[c.id] = c.name
                    entry = tools.get(c.name)
                    if entry is None:
                        add(Violation("unknown_tool", f"message {i}: {c.name!r} is not declared"))
                    elif entry.error is None and not entry.is_valid(c.arguments):
                        why = entry.explain(c.arguments)
                        add(Violation("arguments_invalid", _short(f"message {i}: {c.name}: {why}")))
            elif role == "tool":
                if not after_calls:
                    add(Violation("role_order", f"message {i}: tool result not after a tool call"))
                cid = m.tool_call_id
                if not cid or cid not in calls:
                    add(Violation("orphan_tool_result", f"message {i}: answers no call ({cid!r})"))
                elif cid in answered:
                    add(Violation("duplicate_tool_result", f"message {i}: {cid!r} answered twice"))
                else:
                    answered.add(cid)
                    if m.name and m.name != calls[cid]:
                        add(
                            Violation(
                                "tool_name_mismatch",
                                f"message {i}: result of {m.name!r} answers {calls[cid]!r}",
                            )
                        )
            else:
                after_calls = False
        if conv[-1].role != "assistant":
            add(Violation("role_order", f"conversation ends with {conv[-1].role}, not assistant"))
