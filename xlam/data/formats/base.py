"""What every importer shares: the import context, field and call parsing, call pairing.

Importers are pure functions ``(record, ctx) -> Trajectory``. A record that cannot be mapped
raises :class:`~xlam.data.formats.errors.RecordError` (importable from here too) whose
``rule`` names the mapping rule it breaks; the conversion loop turns it into a reject line,
so nothing is ever dropped silently.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xlam.data import schema
from xlam.data.schema import ArgumentsError, Message, ToolCall, Trajectory

from . import fastjson
from .errors import RecordError
from .pyliteral import LiteralError, parse_literal
from .tool_schema import convert_tool


@dataclass(frozen=True, slots=True)
class Context:
    """What an importer knows besides the record itself.

    Attributes:
        source: Dataset name written into ``Trajectory.source``.
        fallback_id: Id to use (after the source prefix) when the record has none.
        origin: Provenance of the record (file, line, index), stored in ``metadata``.
    """

    source: str
    fallback_id: str = "0"
    origin: dict[str, Any] = field(default_factory=dict)


def require_dict(record: Any) -> dict[str, Any]:
    """Return ``record`` if it is a JSON object, else raise ``record_type``."""
    if not isinstance(record, dict):
        raise RecordError("record_type", f"expected a JSON object, got {type(record).__name__}")
    return record


def trajectory_id(record: dict[str, Any], ctx: Context) -> str:
    """``<source>-<native id>``, or ``<source>-<fallback>`` when the record has no usable id."""
    native = record.get("id")
    if isinstance(native, bool) or not isinstance(native, str | int) or native == "":
        native = ctx.fallback_id
    return f"{ctx.source}-{native}"


def load_json_field(value: Any, what: str, rule: str = "field_type") -> Any:
    """Decode a field that datasets store either as JSON text or as the value itself."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return fastjson.loads(value)
        except (ValueError, RecursionError) as e:
            raise RecordError(rule, f"{what} is a string but not valid JSON: {e}") from None
    return value


# Datasets repeat the same tools across many records (xlam-60k: ~3.7k tools, 60k records;
# APIGen-MT: one tool list per domain). Converting a declaration costs far more than parsing
# it, so results are cached as JSON text and parsed again on a hit: every trajectory still
# gets its own objects. Both caches are bounded: cleared when full.
_CACHE_MAX = 8192
_LIST_CACHE: dict[str, tuple[bytes, bool]] = {}
_TOOL_CACHE: dict[bytes, tuple[bytes, bool]] = {}


def _cached_tool(raw: Any) -> tuple[bytes, bool]:
    key = fastjson.cache_key(raw)
    hit = _TOOL_CACHE.get(key) if key is not None else None
    if hit is None:
        hit = fastjson.dumps_exact(convert_tool(raw))
        if key is not None:
            if len(_TOOL_CACHE) >= _CACHE_MAX:
                _TOOL_CACHE.clear()
            _TOOL_CACHE[key] = hit
    return hit


def parse_tools(value: Any) -> list[dict[str, Any]]:
    """Read a ``tools`` field (list, JSON text, empty or absent) into OpenAI function schemas."""
    text = value if isinstance(value, str) else None
    if text is not None:
        hit = _LIST_CACHE.get(text)
        if hit is not None:
            return fastjson.loads_exact(*hit)
    value = load_json_field(value, "'tools'", rule="tools_json")
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RecordError("tool_schema", f"'tools' must be a list, got {type(value).__name__}")
    if text is None:  # already objects (Parquet, in-memory): may hold NaN, so no JSON round trip
        return [convert_tool(t) for t in value]
    parts = [_cached_tool(t) for t in value]
    data = b"[" + b",".join(p[0] for p in parts) + b"]"
    exact = all(p[1] for p in parts)
    if len(_LIST_CACHE) >= _CACHE_MAX:
        _LIST_CACHE.clear()
    _LIST_CACHE[text] = (data, exact)
    return fastjson.loads_exact(data, exact)


def text_field(value: Any, what: str) -> str:
    """Message text: a string, or ``None`` for empty. Other types break ``content_type``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise RecordError("content_type", f"{what} must be a string, got {type(value).__name__}")


def parse_arguments(args: Any, name: str) -> dict[str, Any]:
    """Arguments of a call as an object (:func:`xlam.data.schema.parse_arguments` with the
    fast decoder): JSON text is decoded, ``None``/empty means ``{}``.

    Raises:
        RecordError: ``arguments_json`` or ``arguments_type``.
    """
    try:
        return schema.parse_arguments(args, name, fastjson.loads)
    except ArgumentsError as e:
        raise RecordError(e.rule, e.message) from None


def call_from_object(obj: Any, call_id: str) -> ToolCall:
    """A call written as ``{"name", "arguments"}`` (also ``parameters``, or OpenAI-wrapped)."""
    if not isinstance(obj, dict):
        raise RecordError("call_parse", f"a tool call must be an object, got {type(obj).__name__}")
    fn = obj.get("function") if isinstance(obj.get("function"), dict) else obj
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RecordError("call_parse", "a tool call needs a non-empty string 'name'")
    args = fn["arguments"] if "arguments" in fn else fn.get("parameters")
    native_id = obj.get("id")
    if isinstance(native_id, str) and native_id:
        call_id = native_id
    return ToolCall(name=name, arguments=parse_arguments(args, name), id=call_id)


def parse_call_text(text: str, call_id: str) -> ToolCall:
    """Parse one call serialised as JSON or as a Python literal dict (single quotes).

    ``ast.literal_eval``-style parsing only: no name lookup, no call, no attribute access.
    """
    stripped = text.strip()
    try:
        obj = fastjson.loads(stripped)
    except (ValueError, RecursionError):
        try:
            obj = parse_literal(stripped)
        except LiteralError as e:
            raise RecordError(
                "call_parse", f"tool call is neither JSON nor a literal: {e}"
            ) from None
    return call_from_object(obj, call_id)


def make_call_id(message_index: int, k: int) -> str:
    """Deterministic id for a call that has none: its message index and rank in the turn."""
    return f"call_{message_index}_{k}"


class CallPairer:
    """Pairs tool results with the calls they answer when the source has no call ids.

    Results answer pending calls in order; a result that names its tool takes the oldest
    pending call of that name. A result with nothing pending gets no id (the verifier then
    reports it as an orphan) rather than being dropped here.
    """

    def __init__(self) -> None:
        self._pending: deque[ToolCall] = deque()

    def add(self, calls: list[ToolCall]) -> None:
        self._pending.extend(calls)

    def answer(self, name: str | None = None) -> ToolCall | None:
        if not self._pending:
            return None
        if name:
            for i, call in enumerate(self._pending):
                if call.name == name:
                    del self._pending[i]
                    return call
        return self._pending.popleft()

    def answer_id(self, call_id: str) -> ToolCall | None:
        """Mark the call with ``call_id`` answered (sources that do carry ids)."""
        for i, call in enumerate(self._pending):
            if call.id == call_id:
                del self._pending[i]
                return call
        return None


def tool_message(content: str, pairer: CallPairer, name: str | None = None) -> Message:
    """A tool turn paired with the pending call it answers (by name, else in order)."""
    call = pairer.answer(name)
    if call is None:
        return Message(role="tool", content=content, tool_call_id=None, name=name)
    return Message(role="tool", content=content, tool_call_id=call.id, name=name or call.name)


def result_text(value: Any) -> str:
    """Tool output as text: strings stay, structured values are serialised as JSON."""
    if isinstance(value, str):
        return value
    # The stdlib's spacing matches how most sources print JSON (``{"a": 1}``).
    return json.dumps(value, ensure_ascii=False)


def get_turns(record: dict[str, Any], keys: tuple[str, ...]) -> list[Any]:
    """The list of turns under the first present key of ``keys``."""
    for key in keys:
        if key in record:
            turns = record[key]
            if not isinstance(turns, list):
                raise RecordError("field_type", f"'{key}' must be a list of turns")
            if not turns:
                raise RecordError("empty", f"'{key}' is empty")
            return turns
    raise RecordError("missing_field", f"no conversation field (expected one of {', '.join(keys)})")


def turn_role_text(turn: Any, index: int) -> tuple[str, Any]:
    """``(role, value)`` of a ShareGPT (``from``/``value``) or chat (``role``/``content``) turn."""
    if not isinstance(turn, dict):
        raise RecordError("field_type", f"turn {index} must be an object")
    role = turn.get("from", turn.get("role"))
    if not isinstance(role, str):
        raise RecordError("unknown_role", f"turn {index} has no string 'from'/'role'")
    value = turn["value"] if "value" in turn else turn.get("content")
    return role, value


def extras(record: dict[str, Any], consumed: frozenset[str]) -> dict[str, Any]:
    """Native fields the mapping does not use, kept in ``metadata['native']`` for provenance."""
    return {k: v for k, v in record.items() if k not in consumed}


def record_metadata(
    record: dict[str, Any], ctx: Context, consumed: frozenset[str]
) -> dict[str, Any]:
    """A converted record's metadata: its ``origin`` and the native fields left unused."""
    metadata: dict[str, Any] = {"origin": ctx.origin} if ctx.origin else {}
    native = extras(record, consumed)
    if native:
        metadata["native"] = native
    return metadata


def finish(
    record: dict[str, Any],
    ctx: Context,
    conversation: list[Message],
    tools: list[dict[str, Any]],
    task_instruction: str,
    consumed: frozenset[str],
) -> Trajectory:
    """Assemble the trajectory and its metadata (origin and unused native fields)."""
    if not conversation:
        raise RecordError("empty", "the record has no user, assistant or tool turn")
    return Trajectory(
        unique_trajectory_id=trajectory_id(record, ctx),
        source=ctx.source,
        conversation=conversation,
        task_instruction=task_instruction,
        tools=tools,
        metadata=record_metadata(record, ctx, consumed),
    )


Importer = Callable[[Any, Context], Trajectory]
