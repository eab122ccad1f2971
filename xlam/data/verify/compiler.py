"""Compiled argument checks: a fast predicate with ``jsonschema``'s verdict.

``jsonschema``'s generic ``is_valid`` costs ~50 µs a call, more than everything else the
verifier does per record. For the keywords tool schemas actually use (``type``,
``properties``, ``required``, ``enum``, ``items``, bounds...) :func:`compile_predicate`
builds a Python predicate with the same semantics (Draft 2020-12); any other keyword makes
it return ``None`` so the caller keeps ``jsonschema``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator


def is_num(v: Any) -> bool:
    """A JSON number (``bool`` is not one)."""
    return isinstance(v, int | float) and not isinstance(v, bool)


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": is_num,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}

# For each type check above, a Python type whose values it always accepts.
_SURE_TYPES: dict[Callable[[Any], bool], type] = {
    _TYPE_CHECKS["string"]: str,
    _TYPE_CHECKS["integer"]: int,
    _TYPE_CHECKS["number"]: float,
    _TYPE_CHECKS["boolean"]: bool,
    _TYPE_CHECKS["null"]: type(None),
    _TYPE_CHECKS["array"]: list,
    _TYPE_CHECKS["object"]: dict,
}

# Keywords the compiled predicate implements exactly as jsonschema does (Draft 2020-12).
_FAST_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "format",  # an annotation unless a format checker is configured, and none is
    }
)
_ASSERTIONS = frozenset(Draft202012Validator.VALIDATORS)


def always(v: Any) -> bool:
    """The predicate of the ``true`` schema."""
    return True


def _never(v: Any) -> bool:
    return False


class _Unsupported(Exception):
    pass


def compile_predicate(schema: Any) -> Callable[[Any], bool] | None:
    """A fast ``instance -> bool`` equal to ``Draft202012Validator(schema).is_valid``.

    Only for schemas whose every assertion keyword is one of a common subset; keywords
    that jsonschema ignores are ignored too. Returns ``None`` when the schema uses anything
    else (``$ref``, ``anyOf``, ``pattern``...), so the caller falls back to jsonschema.
    The schema must already have passed the meta-schema check.
    """
    try:
        return _compile(schema)
    except (_Unsupported, KeyError, TypeError, RecursionError):
        return None


def _compile(schema: Any) -> Callable[[Any], bool]:
    if schema is True:
        return always
    if schema is False:
        return _never
    if not isinstance(schema, dict):
        raise _Unsupported
    for key in schema:
        if key in _ASSERTIONS and key not in _FAST_KEYWORDS:
            raise _Unsupported
    checks: list[Callable[[Any], bool]] = []
    if "type" in schema:
        t = schema["type"]
        fns = [_TYPE_CHECKS[x] for x in ([t] if isinstance(t, str) else t)]
        checks.append(fns[0] if len(fns) == 1 else lambda v, fns=fns: any(f(v) for f in fns))
    if "enum" in schema:
        members = schema["enum"]
        if not all(isinstance(m, str) for m in members):
            raise _Unsupported  # jsonschema's equality (1 == 1.0, True != 1) is subtle
        allowed = frozenset(members)
        checks.append(lambda v: isinstance(v, str) and v in allowed)
    if "const" in schema:
        const = schema["const"]
        if not isinstance(const, str):
            raise _Unsupported
        checks.append(lambda v: isinstance(v, str) and v == const)
    # Bounds fail exactly when jsonschema's comparisons fail (NaN passes, as there).
    if "minimum" in schema:
        lo = schema["minimum"]
        checks.append(lambda v: not is_num(v) or not v < lo)
    if "maximum" in schema:
        hi = schema["maximum"]
        checks.append(lambda v: not is_num(v) or not v > hi)
    if "exclusiveMinimum" in schema:
        xlo = schema["exclusiveMinimum"]
        checks.append(lambda v: not is_num(v) or not v <= xlo)
    if "exclusiveMaximum" in schema:
        xhi = schema["exclusiveMaximum"]
        checks.append(lambda v: not is_num(v) or not v >= xhi)
    if "minLength" in schema:
        n_min = schema["minLength"]
        checks.append(lambda v: not isinstance(v, str) or len(v) >= n_min)
    if "maxLength" in schema:
        n_max = schema["maxLength"]
        checks.append(lambda v: not isinstance(v, str) or len(v) <= n_max)
    if "minItems" in schema:
        i_min = schema["minItems"]
        checks.append(lambda v: not isinstance(v, list) or len(v) >= i_min)
    if "maxItems" in schema:
        i_max = schema["maxItems"]
        checks.append(lambda v: not isinstance(v, list) or len(v) <= i_max)
    # A check that tests ``type: array`` or ``type: object`` itself replaces that type
    # check, ``checks[0]`` (one call instead of three for the usual schema).
    t = schema.get("type")
    if "items" in schema:
        item = _compile(schema["items"])
        if item is not always:
            typed_array = t == "array"
            sure = _SURE_TYPES.get(item)  # as in _compile_object

            def items(v: Any) -> bool:
                if not isinstance(v, list):
                    return not typed_array
                for x in v:
                    if type(x) is sure:
                        continue
                    if not item(x):
                        return False
                return True

            if typed_array:
                checks[0] = items
            else:
                checks.append(items)
    typed_object = t == "object"
    obj = _compile_object(schema, typed_object)
    if obj is not None:
        if typed_object:
            checks[0] = obj
        else:
            checks.append(obj)
    return _all_of(checks)


def _all_of(checks: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    # Unrolled for the usual one to three checks: a generator per call costs more than
    # the checks themselves.
    if not checks:
        return always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda v: a(v) and b(v)
    if len(checks) == 3:
        a, b, c = checks
        return lambda v: a(v) and b(v) and c(v)
    return lambda v: all(c(v) for c in checks)


def _compile_object(schema: dict[str, Any], typed: bool = False) -> Callable[[Any], bool] | None:
    """The object keywords of ``schema`` as one check; ``typed`` folds ``type: object`` in
    (one call instead of three for the usual tool schema)."""
    compiled = {k: _compile(s) for k, s in (schema.get("properties") or {}).items()}
    declared = frozenset(compiled)
    props = {k: f for k, f in compiled.items() if f is not always}
    # A property whose schema is only a type passes at once when the value has the Python
    # type that type check surely accepts; any other value gets the full check.
    quick = {k: _SURE_TYPES[f] for k, f in props.items() if f in _SURE_TYPES}
    required = tuple(schema.get("required") or ())
    extra = schema.get("additionalProperties", True)
    extra_fn = None if extra is True else _compile(extra)
    if not required and extra_fn is None and not props:
        return None

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return not typed  # object keywords only constrain objects
        for k in required:
            if k not in v:
                return False
        for k, x in v.items():
            if type(x) is quick.get(k):
                continue
            sub = props.get(k)
            if sub is not None:
                if not sub(x):
                    return False
            elif extra_fn is not None and k not in declared and not extra_fn(x):
                return False
        return True

    return check
