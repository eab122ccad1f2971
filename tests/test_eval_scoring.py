"""Typed call comparison (xlam.eval.scoring.compare_calls): examples and properties."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlam.eval.core import ERROR_TYPES
from xlam.eval.scoring import compare_calls

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tool(name: str, properties: dict[str, Any], required: list[str] | None = None) -> dict:
    params = {"type": "object", "properties": properties}
    if required is not None:
        params["required"] = required
    return {"type": "function", "function": {"name": name, "parameters": params}}


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


WEATHER = tool(
    "get_weather",
    {
        "location": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}},
        },
        "days": {"type": "integer"},
        "scale": {"type": "number"},
        "alerts": {"type": "boolean"},
        "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
        "hours": {"type": "array", "items": {"type": "integer"}},
        "note": {"type": "string", "nullable": True},
    },
    required=["location"],
)


# ---------------------------------------------------------------------------------------
# Examples: one rule each


@pytest.mark.parametrize(
    ("pred", "gold", "error"),
    [
        # numbers by value, integer schema takes integral floats
        (call("get_weather", scale=1), call("get_weather", scale=1.0), None),
        (call("get_weather", days=2.0), call("get_weather", days=2), None),
        (call("get_weather", days=2.5), call("get_weather", days=2), "wrong_type"),
        (call("get_weather", days="2"), call("get_weather", days=2), "wrong_type"),
        (call("get_weather", scale=1.5), call("get_weather", scale=1), "wrong_value"),
        # booleans are neither numbers nor strings
        (call("get_weather", alerts="true"), call("get_weather", alerts=True), "wrong_type"),
        (call("get_weather", alerts=1), call("get_weather", alerts=True), "wrong_type"),
        (call("get_weather", scale=True), call("get_weather", scale=1), "wrong_type"),
        (call("get_weather", alerts=False), call("get_weather", alerts=True), "wrong_value"),
        # strings exact
        (call("get_weather", note="Rain"), call("get_weather", note="rain"), "wrong_value"),
        # arrays element-wise, typed by items
        (call("get_weather", hours=[1, 2.0]), call("get_weather", hours=[1, 2]), None),
        (call("get_weather", hours=[2, 1]), call("get_weather", hours=[1, 2]), "wrong_value"),
        (call("get_weather", hours=[1]), call("get_weather", hours=[1, 2]), "wrong_value"),
        (call("get_weather", hours=[1, "2"]), call("get_weather", hours=[1, 2]), "wrong_type"),
        # nullable: null is a value of the right type, elsewhere a wrong type
        (
            call("get_weather", location={"city": "X", "zip": None}),
            call("get_weather", location={"city": "X", "zip": "1"}),
            "wrong_value",
        ),
        (
            call("get_weather", location={"city": None}),
            call("get_weather", location={"city": "X"}),
            "wrong_type",
        ),
        # defaults: an argument equal to its default counts as absent, on either side
        (call("get_weather", days=1, unit="c"), call("get_weather", days=1), None),
        (call("get_weather", days=1), call("get_weather", days=1, unit="c"), None),
        (call("get_weather", days=1, unit="f"), call("get_weather", days=1), "extra_argument"),
        (call("get_weather", days=1), call("get_weather", days=1, unit="f"), "missing_argument"),
        # null for an optional argument counts as absent; for a required one it does not
        (call("get_weather", days=1, note=None), call("get_weather", days=1), None),
        (call("get_weather", location=None), call("get_weather"), "extra_argument"),
        # nested objects by their properties
        (
            call("get_weather", location={"city": "Paris"}),
            call("get_weather", location={"city": "Paris", "country": "FR"}),
            "missing_argument",
        ),
        # arguments as JSON text (the OpenAI wire form)
        ({"name": "get_weather", "arguments": '{"days": 3}'}, call("get_weather", days=3), None),
        ({"name": "get_weather", "arguments": "[3]"}, call("get_weather", days=3), "wrong_type"),
    ],
)
def test_typed_rules(pred: dict, gold: dict, error: str | None) -> None:
    m = compare_calls([pred], [gold], [WEATHER])
    assert (m.valid, m.error_type) == (error is None, error), m.detail
    assert m.name_match
    assert m.args_match == (error is None)


def test_detail_names_call_and_argument_path() -> None:
    m = compare_calls(
        [call("get_weather", location={"city": "paris"})],
        [call("get_weather", location={"city": "Paris"})],
        [WEATHER],
    )
    assert m.error_type == "wrong_value"
    assert m.detail.startswith("get_weather.location.city:") and "Paris" in m.detail
    m = compare_calls(
        [call("get_weather", hours=[1, "2"])], [call("get_weather", hours=[1, 2])], [WEATHER]
    )
    assert m.detail.startswith("get_weather.hours[1]:")


def test_untyped_arguments_compare_by_the_gold_type() -> None:
    tools = [tool("f", {})]  # no property schema at all
    assert compare_calls([call("f", a=1.0)], [call("f", a=1)], tools).valid
    assert compare_calls([call("f", a="1")], [call("f", a=1)], tools).error_type == "wrong_type"
    assert compare_calls([call("f", a=[1])], [call("f", a=1)], tools).error_type == "wrong_type"
    assert compare_calls([call("g", a=1)], [call("g", a=1)], []).valid  # tool not declared


def test_any_of_branches_and_aliases() -> None:
    tools = [
        tool(
            "f",
            {
                "x": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                "y": {"type": "dict", "properties": {"z": {"type": "int"}}},
            },
        )
    ]
    assert compare_calls([call("f", x=1.0)], [call("f", x=1)], tools).valid
    # Both types allowed: another value, not another type.
    assert compare_calls([call("f", x="1")], [call("f", x=1)], tools).error_type == "wrong_value"
    assert compare_calls([call("f", x=[1])], [call("f", x=1)], tools).error_type == "wrong_type"
    m = compare_calls([call("f", y={"z": "3"})], [call("f", y={"z": 3})], tools)
    assert (m.error_type, m.detail.split(":")[0]) == ("wrong_type", "f.y.z")


def test_counts_names_and_relevance() -> None:
    a, b = call("get_weather", days=1), call("get_weather", days=2)
    other = call("search", q="x")
    cases = [
        ([], [a], "missed_call"),
        ([a], [], "hallucinated_call"),
        ([a], [a, b], "wrong_count"),
        ([a, b, a], [a, b], "wrong_count"),
        ([other], [a], "wrong_function"),
        ([a, other], [a, b], "wrong_function"),
    ]
    for pred, gold, error in cases:
        m = compare_calls(pred, gold, [WEATHER])
        assert (m.valid, m.error_type, m.name_match, m.args_match) == (False, error, False, False)
    assert compare_calls([], [], [WEATHER]).valid


def test_parallel_calls_to_one_function_pair_by_matching() -> None:
    gold = [call("get_weather", days=d, hours=[d]) for d in (1, 2, 3)]
    for pred in (gold[::-1], [gold[1], gold[2], gold[0]]):
        assert compare_calls(pred, gold, [WEATHER]).valid
    # Duplicates count: two identical predictions do not cover two different gold calls.
    m = compare_calls([gold[0], gold[0], gold[2]], gold, [WEATHER])
    assert (m.valid, m.error_type, m.name_match) == (False, "wrong_value", True)
    assert "(call 2 of 3)" in m.detail


# ---------------------------------------------------------------------------------------
# Properties on generated tools and calls

NAMES = ("alpha", "beta", "gamma")
KEYS = st.text("abcdefgh_", min_size=1, max_size=6)
LEAF_TYPES = ("string", "integer", "number", "boolean")


def schemas(depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.sampled_from(LEAF_TYPES).map(lambda t: {"type": t})
    if depth >= 2:
        return leaf
    inner = schemas(depth + 1)
    return st.one_of(
        leaf,
        leaf,
        inner.map(lambda s: {"type": "array", "items": s}),
        st.dictionaries(KEYS, inner, min_size=1, max_size=3).map(
            lambda p: {"type": "object", "properties": p, "required": sorted(p)}
        ),
    )


def values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    t = schema["type"]
    if t == "string":
        return st.text(max_size=6)
    if t == "integer":
        return st.integers(-1000, 1000)
    if t == "number":
        return st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3))
    if t == "boolean":
        return st.booleans()
    if t == "array":
        return st.lists(values(schema["items"]), max_size=3)
    return st.fixed_dictionaries({k: values(s) for k, s in schema["properties"].items()})


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict], list[dict]]:
    """``(tools, gold calls)``: 1-3 tools, 1-4 calls (the same function may repeat)."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    tools = []
    for name in names:
        props = draw(st.dictionaries(KEYS, schemas(), min_size=1, max_size=4))
        tools.append(tool(name, props, required=sorted(props)))
    params = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    calls = []
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=4)):
        args = draw(values(params[name]))
        calls.append({"name": name, "arguments": args})
    return tools, calls


def paths(value: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """Every (path, value) below an argument object, containers included."""
    out = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        out.append(((*path, k), v))
        if isinstance(v, dict | list):
            out.extend(paths(v, (*path, k)))
    return out


def at(args: dict, path: tuple) -> Any:
    for k in path[:-1]:
        args = args[k]
    return args


@given(scenarios(), st.randoms(use_true_random=False))
@SETTINGS
def test_property_parallel_calls_match_in_any_order(scenario, rnd) -> None:
    tools, gold = scenario
    pred = copy.deepcopy(gold)
    rnd.shuffle(pred)
    m = compare_calls(pred, gold, tools)
    assert (m.valid, m.error_type, m.name_match, m.args_match) == (True, None, True, True)


def _renumber(v: Any) -> Any:
    """Integers as floats and integral floats as integers: the same numbers."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return float(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, dict):
        return {k: _renumber(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_renumber(x) for x in v]
    return v


@given(scenarios())
@SETTINGS
def test_property_numbers_compare_by_value(scenario) -> None:
    tools, gold = scenario
    pred = [{"name": c["name"], "arguments": _renumber(c["arguments"])} for c in gold]
    assert compare_calls(pred, gold, tools).valid
    # ... and through the JSON text a model would emit.
    assert compare_calls(json.loads(json.dumps(pred)), gold, tools).valid


def _scalars(args: dict) -> list[tuple[tuple, Any]]:
    return [(p, v) for p, v in paths(args) if not isinstance(v, dict | list)]


@given(scenarios(), st.data())
@SETTINGS
def test_property_a_value_of_another_type_is_wrong_type(scenario, data) -> None:
    tools, gold = scenario
    i = data.draw(st.integers(0, len(gold) - 1))
    leaves = _scalars(gold[i]["arguments"])
    if not leaves:
        return
    path, v = data.draw(st.sampled_from(leaves))
    pred = copy.deepcopy(gold)
    # The same "look" as text, or a number for a string: what sloppy models emit.
    at(pred[i]["arguments"], path)[path[-1]] = (
        json.dumps(v) if not isinstance(v, str) else data.draw(st.sampled_from([1, True, None]))
    )
    m = compare_calls(pred, gold, tools)
    assert (m.valid, m.error_type, m.name_match, m.args_match) == (False, "wrong_type", True, False)
    assert m.detail.startswith(gold[i]["name"] + ".")


PERTURBATIONS = {
    "change_value": "wrong_value",
    "drop_argument": "missing_argument",
    "add_argument": "extra_argument",
    "rename_function": "wrong_function",
}


def _changed(v: Any) -> Any:
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 1  # still an integer: a value change, not a type change
    if isinstance(v, float):
        return v + 1.5
    return v + "x"


@given(scenarios(), st.sampled_from(sorted(PERTURBATIONS)), st.data())
@SETTINGS
def test_property_one_perturbation_is_invalid_with_its_error(scenario, kind, data) -> None:
    tools, gold = scenario
    i = data.draw(st.integers(0, len(gold) - 1))
    pred = copy.deepcopy(gold)
    args = pred[i]["arguments"]
    if kind == "rename_function":
        pred[i]["name"] += "_renamed"
    elif kind == "change_value":
        leaves = _scalars(args)
        if not leaves:
            return
        path, v = data.draw(st.sampled_from(leaves))
        at(args, path)[path[-1]] = _changed(v)
    else:
        objects = [((), args)] + [(p, v) for p, v in paths(args) if isinstance(v, dict)]
        path, obj = data.draw(st.sampled_from(objects))
        if kind == "drop_argument":
            obj.pop(data.draw(st.sampled_from(sorted(obj))))
        else:
            obj["zz_new"] = data.draw(st.sampled_from([0, "x", False, [1]]))
    m = compare_calls(pred, gold, tools)
    assert not m.valid and m.error_type == PERTURBATIONS[kind], (kind, m)
    assert m.error_type in ERROR_TYPES
    assert m.name_match == (kind != "rename_function") and not m.args_match
