"""Tool parameter schemas, checked and compiled once: meta-check, validators, cache.

:func:`build_entry` checks a tool's ``parameters`` against the Draft 2020-12 meta-schema
(:func:`meta_valid_fast` spares ``jsonschema``'s slow check for common schemas) and
compiles its validators; :class:`SchemaCache` keeps one :class:`SchemaEntry` per distinct
schema. Messages always come from ``jsonschema``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError as JsonSchemaError
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

from xlam.data.formats import fastjson
from xlam.data.verify.compiler import always, compile_predicate, is_num


@dataclass(slots=True)
class SchemaEntry:
    """A tool's parameter schema, checked once: meta-schema error or ready validators."""

    error: str | None
    validator: Any = None
    fast: Callable[[Any], bool] | None = None

    def is_valid(self, instance: Any) -> bool:
        if self.fast is not None:
            return self.fast(instance)
        try:
            return bool(self.validator.is_valid(instance))
        except Exception:  # unresolvable $ref, bad regex...: cannot accept the call
            return False

    def explain(self, instance: Any) -> str:
        """jsonschema's best message for why ``instance`` is invalid."""
        try:
            err = best_match(self.validator.iter_errors(instance))
        except Exception as e:
            return f"schema could not be applied: {type(e).__name__}: {e}"
        if err is None:
            return "does not validate"
        path = "/".join(str(p) for p in err.absolute_path)
        return f"{err.message} (at {path})" if path else err.message


# Keywords the Draft 2020-12 meta-schema constrains. Others are unconstrained by it.
_META_KEYWORDS = frozenset(
    [
        "$anchor",
        "$comment",
        "$defs",
        "$dynamicAnchor",
        "$dynamicRef",
        "$id",
        "$recursiveAnchor",
        "$recursiveRef",
        "$ref",
        "$schema",
        "$vocabulary",
        "additionalProperties",
        "allOf",
        "anyOf",
        "const",
        "contains",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
        "default",
        "definitions",
        "dependencies",
        "dependentRequired",
        "dependentSchemas",
        "deprecated",
        "description",
        "else",
        "enum",
        "examples",
        "exclusiveMaximum",
        "exclusiveMinimum",
        "format",
        "if",
        "items",
        "maxContains",
        "maxItems",
        "maxLength",
        "maxProperties",
        "maximum",
        "minContains",
        "minItems",
        "minLength",
        "minProperties",
        "minimum",
        "multipleOf",
        "not",
        "oneOf",
        "pattern",
        "patternProperties",
        "prefixItems",
        "properties",
        "propertyNames",
        "readOnly",
        "required",
        "then",
        "title",
        "type",
        "unevaluatedItems",
        "unevaluatedProperties",
        "uniqueItems",
        "writeOnly",
    ]
)
_SIMPLE_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})


def _non_negative_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 0
    return isinstance(v, float) and v.is_integer() and v >= 0


def _type_ok(v: Any) -> bool:
    if isinstance(v, str):
        return v in _SIMPLE_TYPES
    return (
        isinstance(v, list)
        and len(v) > 0
        and all(isinstance(t, str) and t in _SIMPLE_TYPES for t in v)
        and len(set(v)) == len(v)
    )


_META_CHECKS: dict[str, Callable[[Any], bool]] = {
    "type": _type_ok,
    "properties": lambda v: isinstance(v, dict) and all(meta_valid_fast(s) for s in v.values()),
    "additionalProperties": lambda v: meta_valid_fast(v),
    "items": lambda v: meta_valid_fast(v),
    "required": lambda v: (
        isinstance(v, list) and all(isinstance(x, str) for x in v) and len(set(v)) == len(v)
    ),
    "enum": lambda v: isinstance(v, list),
    "const": always,
    "default": always,
    "examples": lambda v: isinstance(v, list),
    "minimum": is_num,
    "maximum": is_num,
    "exclusiveMinimum": is_num,
    "exclusiveMaximum": is_num,
    "minLength": _non_negative_int,
    "maxLength": _non_negative_int,
    "minItems": _non_negative_int,
    "maxItems": _non_negative_int,
    "format": lambda v: isinstance(v, str),
    "description": lambda v: isinstance(v, str),
    "title": lambda v: isinstance(v, str),
    "$comment": lambda v: isinstance(v, str),
    "deprecated": lambda v: isinstance(v, bool),
    "readOnly": lambda v: isinstance(v, bool),
    "writeOnly": lambda v: isinstance(v, bool),
}


def meta_valid_fast(schema: Any) -> bool:
    """``True`` only if ``schema`` surely passes the Draft 2020-12 meta-schema.

    One-sided and conservative: it knows the keywords tool schemas commonly use and says
    ``False`` for anything else, so the caller then runs ``check_schema`` (~2 ms, because
    the meta-schema is resolved through ``$dynamicRef``s) for the verdict and the message.
    """
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    for key, value in schema.items():
        if key in _META_KEYWORDS:
            check = _META_CHECKS.get(key)
            if check is None or not check(value):
                return False
    return True


def build_entry(params: Any) -> SchemaEntry:
    """Meta-check ``params`` and compile its validators (see :class:`SchemaCache`)."""
    if not isinstance(params, dict):
        return SchemaEntry(error=f"parameters must be an object, not {type(params).__name__}")
    if params.get("type", "object") != "object":
        return SchemaEntry(error=f"parameters must have type 'object', not {params['type']!r}")
    try:
        cls = validator_for(params, default=Draft202012Validator)
        if cls is not Draft202012Validator or not meta_valid_fast(params):
            cls.check_schema(params)
        validator = cls(params)
    except JsonSchemaError as e:
        path = "/".join(str(p) for p in e.absolute_path)
        return SchemaEntry(
            error=f"invalid JSON Schema: {e.message}" + (f" (at {path})" if path else "")
        )
    except Exception as e:  # RecursionError on absurd nesting, referencing errors...
        return SchemaEntry(error=f"invalid JSON Schema: {type(e).__name__}: {e}")
    fast = compile_predicate(params) if cls is Draft202012Validator else None
    return SchemaEntry(error=None, validator=validator, fast=fast)


class SchemaCache:
    """Checked and compiled parameter schemas, keyed by their JSON text.

    ``jsonschema``'s meta-schema check costs ~2 ms (:func:`meta_valid_fast` spares it for
    common schemas) and compiling a validator more; datasets reuse a few thousand tools
    across millions of records, so each distinct schema is checked and compiled once. The
    cache is bounded (cleared when full) so memory stays flat whatever the input size.
    """

    def __init__(self, maxsize: int = 16384) -> None:
        self.maxsize = maxsize
        self._entries: dict[bytes, SchemaEntry] = {}
        self.hits = 0
        self.misses = 0

    def get(self, params: Any) -> SchemaEntry:
        key = fastjson.cache_key(params)
        if key is None:
            return build_entry(params)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            return entry
        self.misses += 1
        if len(self._entries) >= self.maxsize:
            self._entries.clear()
        entry = self._entries[key] = build_entry(params)
        return entry
