"""The unified trajectory: the one contract between importers and everything downstream.

A trajectory is one agent episode: a system instruction, the tools the agent may call and
an ordered conversation of user, assistant and tool messages. Arguments of tool calls are
JSON objects in memory; on disk a trajectory is one JSON object per line (JSONL).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

Role = Literal["user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("user", "assistant", "tool")


class SchemaError(ValueError):
    """A record does not follow the unified trajectory schema."""


class ArgumentsError(SchemaError):
    """Tool-call arguments that are neither a JSON object nor the JSON text of one.

    Attributes:
        rule: ``arguments_json`` (text that is not valid JSON) or ``arguments_type`` (a
            value that is not an object).
        message: What is wrong, naming the call.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def parse_arguments(
    args: Any, name: str, loads: Callable[[str], Any] = json.loads
) -> dict[str, Any]:
    """The arguments of a tool call as an object: the one parser every reader of calls uses.

    Datasets, templates and models give arguments as an object or as its JSON text (the
    OpenAI wire form); ``None`` and blank text mean no arguments. The serving parser keeps
    a standard-library copy (``xlam.serving.parser``); a test holds both to the same
    vectors.

    Args:
        args: The value found under ``arguments`` (or ``parameters``).
        name: The call's function name, for messages.
        loads: The JSON decoder; importers pass ``fastjson.loads`` (faster, and it refuses
            ``NaN``, which ``json.loads`` reads).

    Raises:
        ArgumentsError: ``arguments_json`` for text that does not decode (too deep
            included), ``arguments_type`` for a value that is not an object.
    """
    if args is None:
        return {}
    if isinstance(args, str):
        if not args.strip():
            return {}
        try:
            args = loads(args)
        except (ValueError, RecursionError) as e:
            raise ArgumentsError(
                "arguments_json", f"arguments of call {name!r} are not valid JSON: {e}"
            ) from None
    if not isinstance(args, dict):
        raise ArgumentsError(
            "arguments_type",
            f"arguments of call {name!r} must be a JSON object, got {type(args).__name__}",
        )
    return args


@dataclass
class ToolCall:
    """One function call made by the assistant."""

    name: str
    arguments: dict[str, Any]
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    @classmethod
    def from_dict(cls, d: Any) -> ToolCall:
        if not isinstance(d, dict):
            raise SchemaError(f"tool call must be an object, got {type(d).__name__}")
        fn = d.get("function", d)
        if not isinstance(fn, dict):
            raise SchemaError("tool call 'function' must be an object")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise SchemaError("tool call needs a non-empty string 'name'")
        args = fn.get("arguments", {})
        if args is None:  # unified data omits arguments or writes {}, never null
            raise SchemaError(f"arguments of call {name!r} must be a JSON object")
        args = parse_arguments(args, name)
        call_id = d.get("id") or ""
        if not isinstance(call_id, str):
            raise SchemaError("tool call 'id' must be a string")
        return cls(name=name, arguments=args, id=call_id)


@dataclass
class Message:
    """One turn of the conversation.

    Attributes:
        role: ``user``, ``assistant`` or ``tool``.
        content: The text of the turn (may be empty for an assistant turn with calls).
        reasoning: Optional reasoning ("thinking") of an assistant turn.
        tool_calls: Calls made by an assistant turn.
        tool_call_id: For a ``tool`` turn, the id of the call it answers.
        name: For a ``tool`` turn, the name of the tool that answered.
    """

    role: str
    content: str = ""
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        # Every field that is set is written, whatever the role, so that
        # ``Message.from_dict(m.to_dict()) == m`` holds for any message (lossless round trip).
        if self.reasoning is not None:
            d["reasoning"] = self.reasoning
        if self.tool_calls:
            d["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.role == "tool":
            d["tool_call_id"] = self.tool_call_id
            d["name"] = self.name
        else:
            if self.tool_call_id is not None:
                d["tool_call_id"] = self.tool_call_id
            if self.name is not None:
                d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Message:
        if not isinstance(d, dict):
            raise SchemaError(f"message must be an object, got {type(d).__name__}")
        role = d.get("role")
        if role not in ROLES:
            raise SchemaError(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
        content = d.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise SchemaError(f"{role} message 'content' must be a string")
        reasoning = d.get("reasoning")
        if reasoning is not None and not isinstance(reasoning, str):
            raise SchemaError("'reasoning' must be a string")
        raw_calls = d.get("tool_calls") or []
        if not isinstance(raw_calls, list):
            raise SchemaError("'tool_calls' must be a list")
        if raw_calls and role != "assistant":
            raise SchemaError(f"only assistant messages carry tool_calls, not {role}")
        calls = [ToolCall.from_dict(c) for c in raw_calls]
        tool_call_id = d.get("tool_call_id")
        name = d.get("name")
        for key, val in (("tool_call_id", tool_call_id), ("name", name)):
            if val is not None and not isinstance(val, str):
                raise SchemaError(f"'{key}' must be a string")
        return cls(
            role=role,
            content=content,
            reasoning=reasoning,
            tool_calls=calls,
            tool_call_id=tool_call_id,
            name=name,
        )


@dataclass
class Trajectory:
    """One agent episode in the unified format."""

    unique_trajectory_id: str
    source: str
    conversation: list[Message]
    task_instruction: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.unique_trajectory_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "unique_trajectory_id": self.unique_trajectory_id,
            "source": self.source,
            "task_instruction": self.task_instruction,
            "tools": self.tools,
            "conversation": [m.to_dict() for m in self.conversation],
            "metadata": self.metadata,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: Any) -> Trajectory:
        if not isinstance(d, dict):
            raise SchemaError(f"trajectory must be a JSON object, got {type(d).__name__}")
        tid = d.get("unique_trajectory_id")
        if isinstance(tid, int) and not isinstance(tid, bool):
            tid = str(tid)
        if not isinstance(tid, str) or not tid:
            raise SchemaError("missing or empty 'unique_trajectory_id'")
        source = d.get("source", "")
        if not isinstance(source, str):
            raise SchemaError("'source' must be a string")
        conv = d.get("conversation")
        if not isinstance(conv, list) or not conv:
            raise SchemaError("'conversation' must be a non-empty list of messages")
        tools = d.get("tools") or []
        if isinstance(tools, str):
            try:
                tools = json.loads(tools)
            except json.JSONDecodeError as e:
                raise SchemaError(f"'tools' is a string but not valid JSON: {e}") from e
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise SchemaError("'tools' must be a list of function schemas")
        instr = d.get("task_instruction") or ""
        if not isinstance(instr, str):
            raise SchemaError("'task_instruction' must be a string")
        meta = d.get("metadata") or {}
        if not isinstance(meta, dict):
            raise SchemaError("'metadata' must be an object")
        return cls(
            unique_trajectory_id=tid,
            source=source,
            conversation=[Message.from_dict(m) for m in conv],
            task_instruction=instr,
            tools=[normalize_tool(t) for t in tools],
            metadata=meta,
        )

    @classmethod
    def from_json(cls, line: str) -> Trajectory:
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise SchemaError(f"invalid JSON: {e}") from e
        return cls.from_dict(d)

    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    def to_chat(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Return ``(messages, tools)`` in the shape HF chat templates expect.

        Tool-call arguments stay objects; renderers adapt them to templates that want strings.
        """
        msgs: list[dict[str, Any]] = []
        if self.task_instruction:
            msgs.append({"role": "system", "content": self.task_instruction})
        for m in self.conversation:
            d: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.role == "assistant":
                if m.reasoning:
                    d["reasoning_content"] = m.reasoning
                    d["thinking"] = m.reasoning
                if m.tool_calls:
                    d["tool_calls"] = [c.to_dict() for c in m.tool_calls]
            elif m.role == "tool":
                d["tool_call_id"] = m.tool_call_id or ""
                d["name"] = m.name or ""
            msgs.append(d)
        return msgs, self.tools


def normalize_tool(t: dict[str, Any]) -> dict[str, Any]:
    """Wrap a bare ``{name, description, parameters}`` schema in the OpenAI envelope."""
    if "function" in t and isinstance(t["function"], dict):
        fn = t["function"]
    else:
        fn = t
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaError("every tool needs a non-empty string 'name'")
    out = {"name": name, "description": fn.get("description", "") or ""}
    out["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
    # Keep any other keys of the function (``strict``, ``returns``...): dropping them would
    # make a read-write round trip lossy.
    for key, val in fn.items():
        if key not in out:
            out[key] = val
    return {"type": "function", "function": out}


T = TypeVar("T")


def read_jsonl(path: str | Path, from_json: Callable[[str], T]) -> Iterator[T]:
    """Stream ``from_json(line)`` for every non-blank line of a JSONL file.

    Raises:
        SchemaError: On the first bad line, naming the file and line number.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield from_json(line)
            except SchemaError as e:
                raise SchemaError(f"{path}:{lineno}: {e}") from e


def write_jsonl(items: Iterable[Any], path: str | Path) -> int:
    """Write objects with a ``to_json()`` as JSONL; returns the count written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(item.to_json() + "\n")
            n += 1
    return n


def read_trajectories(path: str | Path) -> Iterator[Trajectory]:
    """Stream trajectories from a unified JSONL file.

    Raises:
        SchemaError: On the first bad line, naming the file and line number.
    """
    return read_jsonl(path, Trajectory.from_json)


def write_trajectories(trajs: list[Trajectory] | Iterator[Trajectory], path: str | Path) -> int:
    """Write trajectories as JSONL; returns the count written."""
    return write_jsonl(trajs, path)
