"""Safe parsing of Python-literal values and Python call syntax, with no ``eval``.

Datasets write tool calls as Python rather than JSON: Hermes uses single-quoted dicts
(``{'name': 'f', 'arguments': {'a': 1}}``) and ToolACE uses call syntax whose function
names may contain spaces (``[Market Trends API(trend_type="GAINERS", country="us")]``).
Values are read from the Python AST and only literal nodes are accepted, so a hostile
record cannot run code; JSON spellings (``true``, ``false``, ``null``) are accepted too.
"""

from __future__ import annotations

import ast
import math
from typing import Any


class LiteralError(ValueError):
    """Text that is not a (JSON-compatible) Python literal or call list."""


_NAMES = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}


def parse_literal(text: str) -> Any:
    """Parse a Python literal (or JSON) into JSON-compatible values.

    Tuples and sets become lists; dict keys must be strings (JSON objects have no other).

    Raises:
        LiteralError: If the text is not such a literal.
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise LiteralError(f"not a literal: {type(e).__name__}: {e}") from None
    try:
        return _value(node)
    except RecursionError:
        raise LiteralError("literal nested too deeply") from None


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, float) and not math.isfinite(v):
            raise LiteralError(f"{v} is not a JSON number")  # 1e999 parses as inf
        if v is None or isinstance(v, str | bool | int | float):
            return v
        raise LiteralError(f"unsupported constant {type(v).__name__}")
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        out: dict[str, Any] = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                raise LiteralError("'**' unpacking is not a literal")
            key = _value(k)
            if not isinstance(key, str):
                raise LiteralError(f"dict key {key!r} is not a string")
            out[key] = _value(v)
        return out
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float)
        and not isinstance(node.operand.value, bool)
    ):
        v = node.operand.value
        return -v if isinstance(node.op, ast.USub) else v
    raise LiteralError(f"{type(node).__name__} is not a literal")


_OPEN = {"(": ")", "[": "]", "{": "}"}
_NAME_STOP = set("()[]{},=\"'\n")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def ws(self) -> None:
        s, n = self.s, len(self.s)
        while self.i < n and s[self.i].isspace():
            self.i += 1

    def eof(self) -> bool:
        return self.i >= len(self.s)

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, ch: str) -> None:
        self.ws()
        if self.peek() != ch:
            got = repr(self.peek()) if self.peek() else "end of text"
            raise LiteralError(f"expected {ch!r} at offset {self.i}, got {got}")
        self.i += 1

    def name(self, what: str) -> str:
        """Read up to the next structural character; names may contain spaces."""
        start = self.i
        s, n = self.s, len(self.s)
        while self.i < n and s[self.i] not in _NAME_STOP:
            self.i += 1
        name = s[start : self.i].strip()
        if not name:
            raise LiteralError(f"missing {what} at offset {start}")
        return name

    def value_source(self) -> str:
        """Source text of one argument value: up to a ``,`` or ``)`` at bracket depth 0."""
        s, n = self.s, len(self.s)
        start = self.i
        stack: list[str] = []
        while self.i < n:
            c = s[self.i]
            if c in "'\"":
                self._skip_string(c)
                continue
            if c in _OPEN:
                stack.append(_OPEN[c])
            elif c in ")]}":
                if not stack:
                    if c == ")":
                        break
                    raise LiteralError(f"unbalanced {c!r} at offset {self.i}")
                if stack.pop() != c:
                    raise LiteralError(f"mismatched {c!r} at offset {self.i}")
            elif c == "," and not stack:
                break
            self.i += 1
        if stack:
            raise LiteralError("unclosed bracket in argument value")
        src = s[start : self.i].strip()
        if not src:
            raise LiteralError(f"empty argument value at offset {start}")
        return src

    def _skip_string(self, q: str) -> None:
        s, n = self.s, len(self.s)
        triple = s.startswith(q * 3, self.i)
        end = q * 3 if triple else q
        self.i += len(end)
        while self.i < n:
            c = s[self.i]
            if c == "\\":
                self.i += 2
                continue
            if s.startswith(end, self.i):
                self.i += len(end)
                return
            self.i += 1
        raise LiteralError("unterminated string")


def parse_python_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse ``[f(a=1, b="x"), Name With Spaces(c=[1, 2])]`` into ``(name, arguments)`` pairs.

    The surrounding brackets are optional. Only keyword arguments with literal values are
    accepted; positional arguments, repeated keywords and expressions raise.

    Raises:
        LiteralError: With the offset of the first problem.
    """
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    sc = _Scanner(s)
    calls: list[tuple[str, dict[str, Any]]] = []
    sc.ws()
    if sc.eof():
        raise LiteralError("no call found")
    while True:
        name = sc.name("function name")
        sc.expect("(")
        args: dict[str, Any] = {}
        sc.ws()
        if sc.peek() == ")":
            sc.i += 1
        else:
            while True:
                sc.ws()
                key_start = sc.i
                key = sc.name("argument name")
                sc.ws()
                if sc.peek() != "=":
                    raise LiteralError(
                        f"argument at offset {key_start} of {name!r} is positional or malformed"
                    )
                sc.i += 1
                if key in args:
                    raise LiteralError(f"argument {key!r} repeated in call {name!r}")
                args[key] = parse_literal(sc.value_source())
                sc.ws()
                c = sc.peek()
                sc.i += 1
                if c == ")":
                    break
                if c != ",":
                    raise LiteralError(f"expected ',' or ')' in call {name!r}")
                sc.ws()
                if sc.peek() == ")":  # trailing comma
                    sc.i += 1
                    break
        calls.append((name, args))
        sc.ws()
        if sc.eof():
            return calls
        sc.expect(",")
        sc.ws()
