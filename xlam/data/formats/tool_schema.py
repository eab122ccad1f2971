"""Turn the tool declarations found in datasets into OpenAI function schemas with JSON Schema.

Datasets rarely ship real JSON Schema. xlam-function-calling-60k uses a flat map
``param -> {description, type, default}`` with Python-ish types (``str``, ``float, optional``,
``List[int]``); ToolACE and others write ``"type": "dict"``; some put ``required`` beside
``parameters`` instead of inside. :func:`convert_tool` maps all of these to
``{type: "function", function: {name, description, parameters}}`` whose ``parameters`` is
a JSON Schema object. It never guesses a constraint it cannot read: an unknown Python type
becomes the empty schema (anything goes) rather than a wrong one.
"""

from __future__ import annotations

import ast
import math
import re
from functools import lru_cache
from typing import Any

from .errors import RecordError

JSON_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object", "null"})

_SIMPLE: dict[str, str] = {
    "str": "string",
    "string": "string",
    "text": "string",
    "char": "string",
    "bytes": "string",
    "date": "string",
    "datetime": "string",
    "uuid": "string",
    "int": "integer",
    "integer": "integer",
    "long": "integer",
    "float": "number",
    "double": "number",
    "number": "number",
    "decimal": "number",
    "numeric": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "list": "array",
    "array": "array",
    "sequence": "array",
    "iterable": "array",
    "tuple": "array",
    "set": "array",
    "frozenset": "array",
    "dict": "object",
    "object": "object",
    "mapping": "object",
    "map": "object",
    "json": "object",
    "none": "null",
    "nonetype": "null",
    "null": "null",
}
_ARRAYS = frozenset({"array"})
_MODIFIER = re.compile(r"^\s*(optional|default\b.*|required)\s*$", re.IGNORECASE | re.DOTALL)


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets and quotes."""
    parts: list[str] = []
    depth = 0
    quote = ""
    start = 0
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "[(":
            depth += 1
        elif c in "])":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _union(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    if any(not s for s in schemas):  # one member accepts anything: so does the union
        return {}
    if all(set(s) == {"type"} and isinstance(s["type"], str) for s in schemas):
        types = list(dict.fromkeys(s["type"] for s in schemas))
        return {"type": types[0]} if len(types) == 1 else {"type": types}
    unique: list[dict[str, Any]] = []
    for s in schemas:
        if s not in unique:
            unique.append(s)
    return unique[0] if len(unique) == 1 else {"anyOf": unique}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return _union([schema, {"type": "null"}])


def _parse_expr(text: str) -> dict[str, Any]:
    """Schema of one Python type expression (no ``, optional`` suffix)."""
    text = text.strip()
    alts = [a for a in re.split(r"\s+or\s+", text) if a.strip()] if " or " in text else [text]
    if len(alts) == 1:
        alts = _split_top(text, "|")
    if len(alts) > 1:
        return _union([_parse_expr(a) for a in alts])
    m = re.fullmatch(r"([\w. ]+?)\s*(?:\[(.*)\])?", text, re.DOTALL)
    if not m:
        return {}
    name = m.group(1).strip().lower()
    for prefix in ("typing.", "t."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    inner = m.group(2)
    args = [a.strip() for a in _split_top(inner, ",")] if inner is not None else []
    if name == "optional" and args:
        return _nullable(_parse_expr(args[0]))
    if name == "union" and args:
        return _union([_parse_expr(a) for a in args])
    if name == "literal" and args:
        values = []
        for a in args:
            try:
                v = ast.literal_eval(a)
            except (ValueError, SyntaxError, RecursionError, MemoryError):
                return {}
            if v is not None and not isinstance(v, str | int | float | bool):
                return {}
            if isinstance(v, float) and not math.isfinite(v):
                return {}
            values.append(v)
        return {"enum": values}
    jtype = _SIMPLE.get(name)
    if jtype is None:
        return {}  # Any, Callable, np.ndarray, ...: nothing we can check
    schema: dict[str, Any] = {"type": jtype}
    if jtype in _ARRAYS and args:
        if name == "tuple" and len(args) == 2 and args[1] == "...":
            args = args[:1]
        items = [_parse_expr(a) for a in args]
        if all(i == items[0] for i in items) and items[0]:
            schema["items"] = items[0]
    elif jtype == "object" and len(args) == 2:
        values = _parse_expr(args[1])
        if values:
            schema["additionalProperties"] = values
    return schema


@lru_cache(maxsize=4096)
def _python_type_cached(text: str) -> tuple[dict[str, Any], bool]:
    parts = _split_top(text, ",")
    optional = any(_MODIFIER.match(p) and "required" not in p.lower() for p in parts[1:])
    head = parts[0].strip()
    if not head:
        return {}, optional
    if head.lower().startswith("optional[") or head.lower().startswith("typing.optional["):
        optional = True
    try:
        return _parse_expr(head), optional
    except RecursionError:
        return {}, optional


def python_type_to_schema(text: str) -> tuple[dict[str, Any], bool]:
    """Convert a Python-ish type string to ``(JSON Schema, optional)``.

    Examples: ``"str"`` -> ``{"type": "string"}``; ``"float, optional"`` -> number, optional;
    ``"List[int]"`` -> array of integers; ``"Optional[str]"`` -> string or null, optional;
    ``"Dict[str, Any]"`` -> object; ``"Callable"`` -> ``{}``.

    Returns:
        A fresh schema dict (safe to mutate) and whether the type marks the parameter optional.
    """
    schema, optional = _python_type_cached(text)
    return _copy(schema), optional


def _copy(value: Any) -> Any:
    # Cached schemas are shared; hand out copies so no trajectory can alter another's.
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _fix_type(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Replace a non-JSON ``type`` (``dict``, ``str``, ``List[int]``...) by real JSON Schema."""
    t = schema.get("type")
    optional = False
    if isinstance(t, str) and t not in JSON_TYPES:
        converted, optional = python_type_to_schema(t)
    elif isinstance(t, list) and not all(isinstance(x, str) and x in JSON_TYPES for x in t):
        converted = _union([python_type_to_schema(x)[0] if isinstance(x, str) else {} for x in t])
    else:
        return schema, optional
    out: dict[str, Any] = {}
    for k, v in schema.items():
        if k == "type":  # converted keys go where "type" was; keys already present win
            out.update((ck, cv) for ck, cv in converted.items() if ck == "type" or ck not in schema)
        else:
            out[k] = v
    return out, optional


_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "contains", "if", "then", "else")


def fix_schema(schema: Any) -> Any:
    """Make a near-JSON-Schema valid: Python type names, ``dict``, ``required: true`` flags.

    Properties whose type says ``optional`` are taken out of ``required``; a property marked
    ``"required": true`` (draft-3 style) is moved into the parent's ``required`` list.
    """
    if not isinstance(schema, dict):
        return schema
    schema, _ = _fix_type(schema)
    out: dict[str, Any] = {}
    for key, val in schema.items():
        if key in _SUBSCHEMA_MAPS and isinstance(val, dict):
            out[key] = {k: fix_schema(v) for k, v in val.items()}
        elif key in _SUBSCHEMA_LISTS and isinstance(val, list):
            out[key] = [fix_schema(v) for v in val]
        elif key in _SUBSCHEMA_ONE and isinstance(val, dict):
            out[key] = fix_schema(val)
        elif key == "items" and isinstance(val, list):
            out[key] = [fix_schema(v) for v in val]
        else:
            out[key] = val
    props = out.get("properties")
    if isinstance(props, dict):
        required = out.get("required")
        req: list[Any] = list(required) if isinstance(required, list) else []
        optional_names = set()
        for name, prop in list(props.items()):
            if not isinstance(prop, dict):
                continue
            orig = schema["properties"][name]
            if isinstance(orig, dict):
                _, opt = _fix_type(orig)
                if opt:
                    optional_names.add(name)
            flag = prop.get("required")
            if isinstance(flag, bool):
                props[name] = {k: v for k, v in prop.items() if k != "required"}
                if flag and name not in req:
                    req.append(name)
                elif not flag:
                    optional_names.add(name)
        if optional_names and req:
            req = [r for r in req if r not in optional_names]
        if isinstance(required, list) or req:
            out["required"] = req
    return out


def _is_flat_map(params: dict[str, Any]) -> bool:
    """xlam-60k style ``{param: {type, description, default}}`` rather than JSON Schema.

    A parameter may itself be called ``type`` or ``properties``: in JSON Schema those keys hold
    a string and a map of schemas, in a flat map they hold a parameter spec.
    """
    if not params or isinstance(params.get("type"), str | list):
        return False
    if not all(isinstance(v, dict) for v in params.values()):
        return False
    props = params.get("properties")
    return not (isinstance(props, dict) and not isinstance(props.get("type"), str))


def _flat_to_schema(params: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in params.items():
        t = spec.get("type")
        optional = False
        if isinstance(t, str):
            prop, optional = ({"type": t}, False) if t in JSON_TYPES else python_type_to_schema(t)
        else:
            prop = {}
        for k, v in spec.items():
            if k not in ("type", "optional", "required"):
                prop.setdefault(k, v)
        prop = fix_schema(prop)
        if spec.get("optional") is True or spec.get("required") is False:
            optional = True
        if spec.get("required") is True or (not optional and "default" not in spec):
            required.append(name)
        properties[name] = prop
    return {"type": "object", "properties": properties, "required": required}


def convert_parameters(params: Any, outer_required: Any = None) -> dict[str, Any]:
    """The ``parameters`` of one tool as a JSON Schema object.

    Args:
        params: Whatever the dataset put there (JSON Schema, flat map, ``None``).
        outer_required: A ``required`` list found beside ``parameters`` (a common slip).
    """
    outer_ok = isinstance(outer_required, list) and all(isinstance(r, str) for r in outer_required)
    if params is None or params == {}:
        out: dict[str, Any] = {"type": "object", "properties": {}}
        if outer_ok and outer_required:
            out["required"] = list(outer_required)
        return out
    if not isinstance(params, dict):
        raise RecordError(
            "tool_schema", f"parameters must be an object, not {type(params).__name__}"
        )
    if _is_flat_map(params):
        return _flat_to_schema(params)
    if outer_ok and "required" not in params:
        # Moved inside before fixing, so properties typed "optional" still leave the list.
        params = {**params, "required": list(outer_required)}
    out = fix_schema(params)
    if "type" not in out:
        out["type"] = "object"
    return out


def convert_tool(raw: Any) -> dict[str, Any]:
    """One tool declaration -> ``{type: "function", function: {name, description, parameters}}``.

    Raises:
        RecordError: ``tool_schema`` if the declaration has no name or unusable parameters.
    """
    if not isinstance(raw, dict):
        raise RecordError("tool_schema", f"a tool must be an object, not {type(raw).__name__}")
    fn = raw["function"] if isinstance(raw.get("function"), dict) else raw
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RecordError("tool_schema", "a tool needs a non-empty string 'name'")
    desc = fn.get("description")
    if desc is None:
        desc = ""
    elif not isinstance(desc, str):
        raise RecordError("tool_schema", f"description of tool {name!r} must be a string")
    params = fn["parameters"] if "parameters" in fn else fn.get("arguments")
    out: dict[str, Any] = {
        "name": name,
        "description": desc,
        "parameters": convert_parameters(params, fn.get("required")),
    }
    for k, v in fn.items():
        if k not in out and k not in ("required", "arguments", "type"):
            out[k] = v
    return {"type": "function", "function": out}


def convert_tools(raw: list[Any]) -> list[dict[str, Any]]:
    """Convert a list of tool declarations (see :func:`convert_tool`)."""
    return [convert_tool(t) for t in raw]
