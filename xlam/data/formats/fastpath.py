"""A shortcut for the hot path of ``convert`` and ``convert --verify``: no object rebuilt twice.

The general path builds a :class:`~xlam.data.schema.Trajectory` per record, with its own copy
of every converted tool, turns it into a dict and serialises that. For the records that
make up nearly all of a real dataset, a format may instead offer a *fast converter*
``(record, origin, source, tools) -> FastRecord | None`` that returns what the general path
would write, as a dict ready for ``orjson``, with each tool as an ``orjson.Fragment`` of
its converted JSON (converted once per distinct tool, shared and never mutated, since only
the serialiser reads it).

A fast converter returns ``None`` whenever the record is anything but plain (missing or
oddly typed fields, native call ids, ...): the caller then runs the general path on it, so
the output is byte for byte what the general path writes, for every record.

Tools are looked up by the text of each element of the ``tools`` JSON list. Splitting the
list on ``"}, {"`` (the separator ``json.dumps`` writes) can cut inside a string, but such a
piece is never a complete JSON object by itself, and only pieces that are one are ever
stored. When every piece of a list is a stored object, the list text *is* those objects in
that order (a complete JSON object ends at its own closing brace whatever follows), so the
lookup is exact. Anything else goes through a real parse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from . import fastjson
from .tool_schema import convert_tool

try:
    import orjson as _orjson

    _Fragment: Any = getattr(_orjson, "Fragment", None)
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _orjson = None
    _Fragment = None

AVAILABLE = _Fragment is not None
"""Whether the fast path can run (it needs ``orjson.Fragment``, orjson >= 3.9)."""


@dataclass(slots=True, eq=False)
class CachedTool:
    """One converted tool declaration, shared by every record that declares it.

    Attributes:
        name: The function name.
        fragment: ``orjson.dumps(convert_tool(raw))`` as an ``orjson.Fragment``.
        parameters: The converted ``parameters`` as read back from that JSON (what a
            trajectory built by the general path holds). Read-only.
        entry: Slot for the verifier's compiled schema check (it depends on ``parameters``
            only), filled on first use.
    """

    name: str
    fragment: Any
    parameters: Any
    entry: Any = None


class FastRecord(NamedTuple):
    """A one-turn trajectory ``user -> assistant(calls)`` ready to be written.

    ``out`` is exactly ``Trajectory.to_dict()`` of what the general path builds, tools as
    fragments; ``calls`` are ``(name, arguments)`` in order, with distinct generated ids.
    """

    tid: str
    source: str
    out: dict[str, Any]
    calls: list[tuple[str, dict[str, Any]]]
    tools: list[CachedTool]


# Declarations longer than this are converted each time rather than kept (a bound on the
# tables' memory in bytes, not only in entries).
_MAX_CACHED = 1 << 16


class ToolTable:
    """Converted tools by element text and by value, bounded (each map is cleared when
    full): ~16 KiB a tool with its compiled checks, so memory stays flat at any input size
    (real datasets declare a few thousand distinct tools)."""

    def __init__(self, maxsize: int = 8192) -> None:
        self.maxsize = maxsize
        self._by_text: dict[str, CachedTool] = {}
        self._by_key: dict[bytes, CachedTool | None] = {}

    def clear(self) -> None:
        self._by_text.clear()
        self._by_key.clear()

    def from_text(self, text: str) -> list[CachedTool] | None:
        """The converted tools of a JSON list text, or ``None`` when the shortcut cannot tell
        (not a non-empty list of objects, a tool that does not convert...)."""
        pieces = _pieces(text)
        if pieces is not None:
            by_text = self._by_text
            tools = []
            for piece in pieces:
                tool = by_text.get(piece)
                if tool is None:
                    break
                tools.append(tool)
            else:
                return tools
        try:
            value = fastjson.loads(text)
        except (ValueError, RecursionError):
            return None
        if type(value) is not list or not value:
            return None
        tools = []
        for element in value:
            tool = self.from_value(element)
            if tool is None:
                return None
            tools.append(tool)
        if pieces is not None:
            self._learn(pieces)
        return tools

    def _learn(self, pieces: list[str]) -> None:
        by_text = self._by_text
        for piece in pieces:
            if piece in by_text or len(piece) > _MAX_CACHED:
                continue
            try:
                value = fastjson.loads("{" + piece + "}")
            except (ValueError, RecursionError):
                continue  # not a whole object: the split cut inside a string
            tool = self.from_value(value)
            if tool is not None:
                if len(by_text) >= self.maxsize:
                    by_text.clear()
                by_text[piece] = tool

    def from_value(self, raw: Any) -> CachedTool | None:
        """The converted tool for one decoded declaration; ``None`` if it does not convert
        or cannot be written by orjson (the general path then reports or handles it)."""
        if type(raw) is not dict or _orjson is None:
            return None
        try:
            key = _orjson.dumps(raw)
        except TypeError:
            return None
        if len(key) > _MAX_CACHED:
            return _convert(raw)
        by_key = self._by_key
        if key in by_key:
            return by_key[key]
        tool = _convert(raw)
        if len(by_key) >= self.maxsize:
            by_key.clear()
        by_key[key] = tool
        return tool


def _pieces(text: str) -> list[str] | None:
    """``[{A}, {B}]`` -> ``["A", "B"]`` (split on ``}, {``, maybe inside strings: see above)."""
    pieces = text.split("}, {")
    if not (pieces[0].startswith("[{") and pieces[-1].endswith("}]")):
        return None
    pieces[0] = pieces[0][2:]
    pieces[-1] = pieces[-1][:-2]
    return pieces


def _convert(raw: dict[str, Any]) -> CachedTool | None:
    assert _orjson is not None
    try:
        converted = convert_tool(raw)
        data = _orjson.dumps(converted)
    except Exception:  # RecordError, big integers...: the general path says what is wrong
        return None
    fn = _orjson.loads(data)["function"]
    return CachedTool(name=fn["name"], fragment=_Fragment(data), parameters=fn["parameters"])


def encode(obj: Any) -> bytes | None:
    """``orjson.dumps(obj)``, or ``None`` where the general writer would do something else
    (lone surrogates, integers wider than 64 bits: it falls back to the stdlib)."""
    try:
        return _orjson.dumps(obj)  # type: ignore[union-attr]
    except TypeError:
        return None


TOOLS = ToolTable()
"""The process-wide table (conversion is pure, so sharing it is safe)."""
