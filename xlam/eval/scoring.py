"""Typed comparison of predicted tool calls with gold calls.

:func:`compare_calls` decides whether a model's calls for one assistant turn equal the
gold calls, reading each argument through the tool's JSON schema, and names the first
difference it finds (one of :data:`xlam.eval.core.ERROR_TYPES`).

Rules:

- **Names**: the multiset of function names must be equal. Different counts are
  ``wrong_count`` (``missed_call``/``hallucinated_call`` when one side has none); the same
  count with another name is ``wrong_function``.
- **Order**: parallel calls are order-insensitive. Calls are paired by a maximum bipartite
  matching per function name, so any permutation of calls to the same function matches.
- **Types** (from the property schema, else from the gold value): numbers compare by value
  (``1 == 1.0``; an ``integer`` schema accepts ``1.0`` but not ``1.5``); a boolean is never a
  number and ``"1"``/``"true"`` are never numbers/booleans (``wrong_type``); strings compare
  exactly; arrays element-wise (by ``items``); objects key by key (by ``properties`` and
  ``additionalProperties``), recursively. ``null`` is allowed where the schema says so
  (``"type": [..., "null"]``, ``nullable: true``, an ``anyOf``/``oneOf`` branch); a value of
  another JSON type than the gold is ``wrong_type`` unless the schema allows that type too
  (then ``wrong_value``). ``enum`` adds nothing: the gold value decides.
- **Absent arguments**: an argument present on one side only is compared with the schema's
  ``default``: a predicted argument absent from the gold is fine when it equals the
  property's ``default`` (else ``extra_argument``); a gold argument absent from the
  prediction is fine when its value equals the ``default`` (else ``missing_argument``).
  ``null`` for an argument the schema does not list as ``required`` counts as absent
  (OpenAI strict mode sends optional arguments as ``null``). The same rules hold inside
  nested objects.

Pure Python, no ``jsonschema``: a few microseconds per call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xlam.eval.core import Completion, Request, Verdict, prompt_hash

# JSON Schema type names, and the spellings datasets use for them.
_TYPE_ALIASES: dict[str, str] = {
    "string": "string",
    "str": "string",
    "integer": "integer",
    "int": "integer",
    "number": "number",
    "float": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "object": "object",
    "dict": "object",
    "null": "null",
    "none": "null",
}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class CallMatch:
    """How predicted calls compare with the gold calls of one turn.

    Attributes:
        valid: All calls match (names, count and every argument).
        error_type: The first difference, one of :data:`xlam.eval.core.ERROR_TYPES`
            (``None`` when valid).
        detail: A message naming the call and the argument path
            (``get_weather.location.city: expected 'Paris', got 'paris'``).
        name_match: The multisets of function names are equal.
        args_match: The names match and every paired call's arguments match.
    """

    valid: bool
    error_type: str | None = None
    detail: str | None = None
    name_match: bool = False
    args_match: bool = False


@dataclass(frozen=True, slots=True)
class _Diff:
    error_type: str
    detail: str


# ---------------------------------------------------------------------------------------
# Values


def _jtype(v: Any) -> str:
    """The JSON type of a decoded value (``integer`` for integral numbers)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "integer" if v.is_integer() else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return "array"
    if isinstance(v, Mapping):
        return "object"
    return type(v).__name__


def _family(t: str) -> str:
    return "number" if t == "integer" else t


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, booleans never equal to numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        return a == b if isinstance(a, str) and isinstance(b, str) else False
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return len(a) == len(b) and all(k in b and _equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a is None and b is None


def _show(v: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(v, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------
# Schemas


def _types(schema: Mapping[str, Any]) -> set[str] | None:
    """JSON types a schema allows, or ``None`` when it does not say (anything goes)."""
    t = schema.get("type")
    out: set[str] | None
    if isinstance(t, str):
        name = _TYPE_ALIASES.get(t.lower())
        out = None if name is None else {name}
    elif isinstance(t, list) and t:
        names = [_TYPE_ALIASES.get(str(x).lower()) for x in t]
        out = None if None in names else set(names)  # type: ignore[arg-type]
    else:
        branches = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(branches, list) and branches:
            out = set()
            for b in branches:
                bt = _types(b) if isinstance(b, Mapping) else None
                if bt is None:
                    return None
                out |= bt
        elif isinstance(schema.get("enum"), list) and schema["enum"]:
            out = {_jtype(x) for x in schema["enum"]}
        else:
            return None
    if out is not None and schema.get("nullable") is True:
        out.add("null")
    return out


def _allows(types: set[str], v: Any) -> bool:
    t = _jtype(v)
    if t in types:
        return True
    # ``number`` covers integers; ``integer`` covers integral floats (``_jtype`` of 1.0).
    return t == "integer" and "number" in types


def _branch(schema: Mapping[str, Any], v: Any) -> Mapping[str, Any]:
    """The sub-schema that describes ``v``: the ``anyOf``/``oneOf`` branch of its type."""
    branches = schema.get("anyOf") or schema.get("oneOf")
    if "type" in schema or not isinstance(branches, list):
        return schema
    for b in branches:
        if isinstance(b, Mapping):
            bt = _types(b)
            if bt is not None and _allows(bt, v):
                return b
    return {}


def _prop(schema: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    props = schema.get("properties")
    if isinstance(props, Mapping) and isinstance(props.get(key), Mapping):
        return props[key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else {}


def _required(schema: Mapping[str, Any]) -> set[str]:
    req = schema.get("required")
    return set(req) if isinstance(req, list) else set()


def _absent_ok(schema: Mapping[str, Any], key: str, value: Any) -> bool:
    """Whether an argument given on one side only equals its absence (see module rules)."""
    sub = _prop(schema, key)
    if "default" in sub and _equal(value, sub["default"]):
        return True
    return value is None and key not in _required(schema)


# ---------------------------------------------------------------------------------------
# Comparison


def _diff_value(p: Any, g: Any, schema: Mapping[str, Any], path: str) -> _Diff | None:
    if _equal(p, g):
        return None
    schema = _branch(schema, p)
    types = _types(schema)
    tp, tg = _jtype(p), _jtype(g)
    if types is not None and not _allows(types, p):
        want = "/".join(sorted(types))
        return _Diff("wrong_type", f"{path}: expected {want}, got {tp} {_show(p)}")
    if _family(tp) != _family(tg):
        kind = "wrong_type" if types is None else "wrong_value"
        return _Diff(kind, f"{path}: expected {tg} {_show(g)}, got {tp} {_show(p)}")
    if tp == "object":
        return _diff_object(p, g, schema, path)
    if tp == "array":
        items = schema.get("items")
        items = items if isinstance(items, Mapping) else {}
        if len(p) != len(g):
            return _Diff("wrong_value", f"{path}: expected {len(g)} items {_show(g)}, got {len(p)}")
        for i, (x, y) in enumerate(zip(p, g, strict=True)):
            d = _diff_value(x, y, items, f"{path}[{i}]")
            if d is not None:
                return d
        return None
    return _Diff("wrong_value", f"{path}: expected {_show(g)}, got {_show(p)}")


def _diff_object(
    p: Mapping[str, Any], g: Mapping[str, Any], schema: Mapping[str, Any], path: str
) -> _Diff | None:
    for key, gv in g.items():
        if key not in p and not _absent_ok(schema, key, gv):
            return _Diff("missing_argument", f"{path}.{key}: missing (expected {_show(gv)})")
    for key, pv in p.items():
        if key not in g and not _absent_ok(schema, key, pv):
            return _Diff("extra_argument", f"{path}.{key}: not in the gold call ({_show(pv)})")
    for key, gv in g.items():
        if key in p:
            d = _diff_value(p[key], gv, _prop(schema, key), f"{path}.{key}")
            if d is not None:
                return d
    return None


def _arguments(call: Mapping[str, Any]) -> Any:
    args = call.get("arguments")
    if args is None:
        return {}
    if isinstance(args, str):  # the OpenAI wire form
        try:
            return json.loads(args) if args.strip() else {}
        except ValueError:
            return args
    return args


def _diff_call(
    p: Mapping[str, Any], g: Mapping[str, Any], schema: Mapping[str, Any]
) -> _Diff | None:
    name = g["name"]
    pa, ga = _arguments(p), _arguments(g)
    if not isinstance(pa, Mapping):
        return _Diff("wrong_type", f"{name}: arguments must be a JSON object, got {_show(pa)}")
    if not isinstance(ga, Mapping):
        raise ValueError(f"gold call {name!r} has arguments that are not an object: {_show(ga)}")
    return _diff_object(pa, ga, schema, name)


def _cost(p: Mapping[str, Any], g: Mapping[str, Any]) -> int:
    """How many top-level arguments differ: pairs the closest calls for the message."""
    pa, ga = _arguments(p), _arguments(g)
    if not isinstance(pa, Mapping) or not isinstance(ga, Mapping):
        return 1 << 30
    keys = set(pa) | set(ga)
    return sum(not (k in pa and k in ga and _equal(pa[k], ga[k])) for k in keys)


def _max_matching(ok: list[list[bool]]) -> list[int]:
    """Kuhn's augmenting paths: ``match[j]`` is the gold row paired with column ``j`` or -1."""
    n = len(ok)
    match = [-1] * (len(ok[0]) if ok else 0)

    def augment(i: int, seen: list[bool]) -> bool:
        for j, good in enumerate(ok[i]):
            if good and not seen[j]:
                seen[j] = True
                if match[j] < 0 or augment(match[j], seen):
                    match[j] = i
                    return True
        return False

    for i in range(n):
        augment(i, [False] * len(match))
    return match


def tool_parameters(tools: list[dict[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Function name -> its ``parameters`` schema, for OpenAI or bare function schemas."""
    out: dict[str, Mapping[str, Any]] = {}
    for t in tools:
        fn = t.get("function", t) if isinstance(t, Mapping) else {}
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            out[fn["name"]] = params if isinstance(params, Mapping) else {}
    return out


def compare_calls(
    predicted: list[dict[str, Any]],
    gold: list[dict[str, Any]],
    tools: list[dict[str, Any]] | Mapping[str, Mapping[str, Any]],
) -> CallMatch:
    """Compare the calls a model made with the gold calls of the same turn.

    Args:
        predicted: The model's calls, ``[{"name", "arguments"}]`` (arguments an object or
            its JSON text).
        gold: The expected calls, same shape.
        tools: OpenAI function schemas (or :func:`tool_parameters` of them, to reuse).

    Returns:
        A :class:`CallMatch`; see the module docstring for the rules.
    """
    if not gold and not predicted:
        return CallMatch(True, name_match=True, args_match=True)
    if not predicted:
        names = ", ".join(c["name"] for c in gold)
        return CallMatch(False, "missed_call", f"no call; expected {names}")
    if not gold:
        names = ", ".join(str(c.get("name")) for c in predicted)
        return CallMatch(False, "hallucinated_call", f"calls {names} where none was expected")
    if len(predicted) == len(gold) and all(
        p.get("name") == g["name"] and _equal(_arguments(p), _arguments(g))
        for p, g in zip(predicted, gold, strict=True)
    ):  # the common case, settled without reading the schemas
        return CallMatch(True, name_match=True, args_match=True)
    params = tools if isinstance(tools, Mapping) else tool_parameters(tools)

    by_name: dict[str, tuple[list[int], list[int]]] = {}
    for i, c in enumerate(gold):
        by_name.setdefault(c["name"], ([], []))[0].append(i)
    for j, c in enumerate(predicted):
        by_name.setdefault(c.get("name"), ([], []))[1].append(j)  # type: ignore[arg-type]
    name_match = all(len(gi) == len(pj) for gi, pj in by_name.values())
    if not name_match:
        if len(predicted) != len(gold):
            return CallMatch(
                False,
                "wrong_count",
                f"{len(predicted)} calls ({', '.join(str(c.get('name')) for c in predicted)}); "
                f"expected {len(gold)} ({', '.join(c['name'] for c in gold)})",
            )
        wrong = next(str(n) for n, (gi, pj) in by_name.items() if len(pj) > len(gi))
        missing = next(str(n) for n, (gi, pj) in by_name.items() if len(gi) > len(pj))
        return CallMatch(False, "wrong_function", f"called {wrong}; expected {missing}")

    parallel = len(gold) > 1
    for name, (gi, pj) in by_name.items():
        schema = params.get(name, {})
        diffs = [[_diff_call(predicted[j], gold[i], schema) for j in pj] for i in gi]
        match = _max_matching([[d is None for d in row] for row in diffs])
        if all(m >= 0 for m in match):
            continue
        # No perfect pairing: report the gold call left over, against the closest
        # unpaired prediction.
        paired = {m for m in match if m >= 0}
        rows = [r for r in range(len(gi)) if r not in paired]
        cols = [c for c in range(len(pj)) if match[c] < 0]
        r = rows[0]
        c = min(cols, key=lambda c: _cost(predicted[pj[c]], gold[gi[r]]))
        d = diffs[r][c]
        assert d is not None
        where = f" (call {gi[r] + 1} of {len(gold)})" if parallel else ""
        return CallMatch(False, d.error_type, d.detail + where, name_match=True)
    return CallMatch(True, name_match=True, args_match=True)


def score_turn(
    request: Request,
    out: Completion,
    params: Any,
    *,
    category: str,
    turn: int,
    final: bool,
    extra: dict[str, Any],
) -> tuple[Verdict, str | None]:
    """Score one next-action turn given the gold history, up to the text checks.

    The backend's error, a parse error, the calls against ``request.gold`` (typed by
    ``params``, :func:`tool_parameters`) and a call where text was expected decide the
    verdict. Otherwise the turn answered in text without calling: the verdict is left
    invalid with no error and the stripped text is returned for the suite's own answer
    checks. ``extra`` gets ``expects_call``, ``relevance_ok``, ``name_match``,
    ``args_match`` and (final turns) ``answered``.

    Returns:
        ``(verdict, text)``: ``text`` is ``None`` when the verdict is already decided.
    """
    expects = request.gold is not None
    extra.update(
        {
            "turn": turn,
            "expects_call": expects,
            "final": final,
            "name_match": False,
            "args_match": False,
            "relevance_ok": False,
            "answered": None,
        }
    )
    verdict = Verdict(
        id=request.id,
        category=category,
        valid=False,
        prompt_hash=prompt_hash(out.prompt if out.prompt is not None else request.messages),
        raw=out.text,
        extra=extra,
    )
    if out.error is not None:
        verdict.error_type, verdict.detail = "backend_error", out.error
        return verdict, None
    parsed = out.parse()
    calls = [{"name": c.name, "arguments": c.arguments} for c in parsed.calls]
    verdict.calls = calls
    # A call that could not be parsed was still an attempt to call.
    extra["relevance_ok"] = (bool(calls) or parsed.error is not None) == expects
    if parsed.error is not None:
        verdict.error_type, verdict.detail = "parse_error", parsed.error
        return verdict, None
    if expects:
        m = compare_calls(calls, request.gold or [], params)
        extra["name_match"], extra["args_match"] = m.name_match, m.args_match
        verdict.valid, verdict.error_type, verdict.detail = m.valid, m.error_type, m.detail
        return verdict, None
    if calls:
        names = ", ".join(c["name"] for c in calls)
        verdict.error_type = "hallucinated_call"
        verdict.detail = f"turn {turn}: called {names} where a text answer was expected"
        return verdict, None
    text = (parsed.content or "").strip()
    if final:
        extra["answered"] = bool(text)
    return verdict, text


__all__ = ["CallMatch", "compare_calls", "score_turn", "tool_parameters"]
