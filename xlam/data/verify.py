"""Rule checks on unified trajectories, in the spirit of APIGen's format checker.

Pure code (no Lightning, no Hydra). :class:`Verifier` checks one trajectory and returns the
named rules it breaks; :func:`verify_file` streams a file through it, writes good
trajectories and rejects (rule, message, provenance, original record) and counts both per
source and rule. ``read == good + rejected`` always: every record ends up in one file.

Argument checks use ``jsonschema``. Validators are compiled once per distinct schema and
cached; for the keywords tool schemas actually use (``type``, ``properties``, ``required``,
``enum``, ``items``, bounds...) the cache also holds a compiled Python predicate with the
same semantics, because ``jsonschema``'s generic ``is_valid`` costs ~50 µs a call, more than
everything else per record. Any other keyword goes to ``jsonschema`` itself, and messages
always come from ``jsonschema``.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError as JsonSchemaError
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

from xlam.data.formats import fastjson, fastpath
from xlam.data.formats.convert import Reject, import_records
from xlam.data.formats.fastpath import FastRecord, encode
from xlam.data.formats.io import JsonlWriter
from xlam.data.schema import Trajectory

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
_PROGRESS_EVERY = 4096


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: its name (a key of :data:`RULES`) and what exactly is wrong."""

    rule: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "message": self.message}


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


# ----------------------------------------------------------------------------------------
# Compiled argument checks


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": _is_num,
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


def _always(v: Any) -> bool:
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
        return _always
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
        checks.append(lambda v: not _is_num(v) or not v < lo)
    if "maximum" in schema:
        hi = schema["maximum"]
        checks.append(lambda v: not _is_num(v) or not v > hi)
    if "exclusiveMinimum" in schema:
        xlo = schema["exclusiveMinimum"]
        checks.append(lambda v: not _is_num(v) or not v <= xlo)
    if "exclusiveMaximum" in schema:
        xhi = schema["exclusiveMaximum"]
        checks.append(lambda v: not _is_num(v) or not v >= xhi)
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
        if item is not _always:
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
        return _always
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
    props = {k: f for k, f in compiled.items() if f is not _always}
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
    "const": _always,
    "default": _always,
    "examples": lambda v: isinstance(v, list),
    "minimum": _is_num,
    "maximum": _is_num,
    "exclusiveMinimum": _is_num,
    "exclusiveMaximum": _is_num,
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


class IdSet:
    """Set of (source, id) keys in 8 bytes each: an open-addressing table of 64-bit hashes.

    A Python ``set`` of id strings costs ~100 bytes an entry; this keeps the verifier's only
    per-record state small (16 MB per million ids). Two different ids collide with
    probability ~n²/2⁶⁵ (3e-8 for a million): such a pair would be reported as a duplicate.
    """

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._table = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, key: str) -> bool:
        """Insert ``key``; ``False`` if it was already there."""
        h = (hash(key) & 0xFFFFFFFFFFFFFFFF) or 1  # 0 marks an empty slot
        table, mask = self._table, self._mask
        i = h & mask
        while True:
            v = table[i]
            if v == 0:
                table[i] = h
                self._n += 1
                if self._n * 2 > mask:
                    self._grow()
                return True
            if v == h:
                return False
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._table
        self._table = array("Q", bytes(16 * len(old)))
        self._mask = len(self._table) - 1
        table, mask = self._table, self._mask
        for h in old:
            if h:
                i = h & mask
                while table[i]:
                    i = (i + 1) & mask
                table[i] = h


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


# ----------------------------------------------------------------------------------------
# Files and reports


@dataclass
class SourceCounts:
    """Counts for one source; ``rules`` counts trajectories per broken rule."""

    read: int = 0
    good: int = 0
    rejected: int = 0
    rules: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "good": self.good,
            "rejected": self.rejected,
            "rules": dict(self.rules.most_common()),
        }


@dataclass
class VerifyReport:
    """What a verification run read, kept and rejected, per source and rule.

    A trajectory that breaks several rules counts once in ``rejected`` and once under each
    rule it breaks.
    """

    read: int = 0
    good: int = 0
    rejected: int = 0
    sources: dict[str, SourceCounts] = field(default_factory=dict)

    def add(self, source: str, rules: Iterable[str] = ()) -> None:
        counts = self.sources.get(source)
        if counts is None:
            counts = self.sources[source] = SourceCounts()
        broken = set(rules)
        self.read += 1
        counts.read += 1
        if broken:
            self.rejected += 1
            counts.rejected += 1
            counts.rules.update(broken)
        else:
            self.good += 1
            counts.good += 1

    def add_good(self, source: str) -> None:
        """``add(source)`` for a good trajectory, without the rule bookkeeping."""
        counts = self.sources.get(source)
        if counts is None:
            counts = self.sources[source] = SourceCounts()
        self.read += 1
        counts.read += 1
        self.good += 1
        counts.good += 1

    def by_rule(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for c in self.sources.values():
            total.update(c.rules)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "good": self.good,
            "rejected": self.rejected,
            "by_rule": dict(self.by_rule().most_common()),
            "by_source": {s: c.to_dict() for s, c in sorted(self.sources.items())},
        }

    def table(self) -> Any:
        """A ``rich`` table: a column per source (and total), a row per count and rule.

        Sources are few and rules many, so rules go down the rows and the table stays
        readable in 80 columns.
        """
        from rich.table import Table

        names = sorted(self.sources)
        table = Table(title="verify: trajectories per source and rule")
        table.add_column("")
        for name in names:
            table.add_column(name, justify="right", overflow="fold")
        with_total = len(names) > 1
        if with_total:
            table.add_column("total", justify="right")
        rows = [
            ("read", [self.sources[n].read for n in names], self.read),
            ("good", [self.sources[n].good for n in names], self.good),
            ("rejected", [self.sources[n].rejected for n in names], self.rejected),
        ]
        total = self.by_rule()
        for rule, n in total.most_common():
            rows.append((f"  {rule}", [self.sources[s].rules[rule] for s in names], n))
        for label, values, tot in rows:
            cells = [f"{v:,}" for v in values] + ([f"{tot:,}"] if with_total else [])
            table.add_row(label, *cells, end_section=label == "rejected" and bool(total))
        return table


UNKNOWN_SOURCE = "<unparsed>"


def reject_record(
    violations: list[Violation],
    origin: dict[str, Any],
    record: Any,
    traj: Trajectory | None = None,
) -> dict[str, Any]:
    """The JSON object written to the rejects file for one rejected record."""
    out: dict[str, Any] = {
        "rule": violations[0].rule,
        "message": violations[0].message,
        "violations": [v.to_dict() for v in violations],
        "origin": origin,
    }
    if traj is not None:
        out["id"] = traj.unique_trajectory_id
        out["source"] = traj.source
        if "origin" in traj.metadata:
            out["provenance"] = traj.metadata["origin"]
    out["record"] = record
    return out


def _source_of(record: Any) -> str:
    if isinstance(record, dict) and isinstance(record.get("source"), str):
        return record["source"]
    return UNKNOWN_SOURCE


def _shortcut(
    fmt: str, source: str, verifier: Verifier
) -> Callable[[Any, dict[str, Any]], bytes | None] | None:
    """``(record, origin) -> JSON line of a good trajectory, or None`` for a native format
    with a fast converter (see :mod:`~xlam.data.formats.fastpath`)."""
    from xlam.data.formats import FORMATS

    spec = FORMATS.get(fmt)
    if spec is None or spec.fast is None or not fastpath.AVAILABLE:
        return None
    if verifier.max_tokens is not None:
        return None
    convert, tools, check = spec.fast, fastpath.TOOLS, verifier.check_fast

    def shortcut(record: Any, origin: dict[str, Any]) -> bytes | None:
        fast = convert(record, origin, source, tools)
        return None if fast is None else check(fast)

    return shortcut


def verify_file(
    path: str | Path,
    good_path: str | Path,
    rejects_path: str | Path,
    verifier: Verifier | None = None,
    on_progress: Callable[[int], None] | None = None,
    fmt: str = "unified",
    source: str | None = None,
) -> VerifyReport:
    """Verify a file: good trajectories to ``good_path``, rejects to ``rejects_path``.

    Streams (memory does not grow with the input beyond the 8-byte id hashes). Records
    that cannot be read or mapped are rejected under the import rules (``invalid_json``,
    ``schema``...), never dropped.

    Args:
        path: Input file (see :func:`~xlam.data.formats.iter_records`).
        good_path: JSONL of trajectories that break no rule.
        rejects_path: JSONL of rejects: rule, message, all violations, origin, record.
        verifier: Rule settings and state (default: :class:`Verifier` defaults).
        on_progress: Called with the number of records done, now and then.
        fmt: Input format. ``unified`` verifies converted data; a native format converts
            and verifies in one pass (``xlam-data convert --verify``), without the
            intermediate file.
        source: Source name for a native format (default: the format name).
    """
    from xlam.data.formats import get_importer

    verifier = verifier or Verifier()
    report = VerifyReport()
    native = fmt != "unified"
    importer = get_importer(fmt)
    reject_source = source or fmt
    dumps_checked = fastjson.dumps_checked
    fast = _shortcut(fmt, reject_source, verifier) if native else None
    with JsonlWriter(good_path) as good, JsonlWriter(rejects_path) as bad:
        for result, record, origin in import_records(
            path, importer, source=reject_source, fast=fast
        ):
            if type(result) is bytes:  # the shortcut's line: a good trajectory
                good.write_bytes(result)
                report.add_good(reject_source)
            elif isinstance(result, Reject):
                violations = [Violation(result.rule, result.message)]
                bad.write(reject_record(violations, origin, record))
                report.add(reject_source if native else _source_of(record), [result.rule])
            else:
                encoded = dumps_checked(result.to_dict())
                violations = verifier.check(result, encoded)
                if violations:
                    bad.write(reject_record(violations, origin, record, result))
                    report.add(result.source, [v.rule for v in violations])
                else:
                    good.write_bytes(encoded[0])
                    report.add(result.source)
            if on_progress is not None and report.read % _PROGRESS_EVERY == 0:
                on_progress(report.read)
    return report
