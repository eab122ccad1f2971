"""The verifier: one test per rule, the compiled checks against jsonschema, the file loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from xlam.data.formats import fastjson
from xlam.data.schema import Message, ToolCall, Trajectory
from xlam.data.verify import (
    RULES,
    IdSet,
    SchemaCache,
    Verifier,
    compile_predicate,
    count_tokens,
    meta_valid_fast,
    verify_file,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def call(args: dict[str, Any], cid: str = "c1", name: str = "get_weather") -> ToolCall:
    return ToolCall(name=name, arguments=args, id=cid)


def traj(*messages: Message, tools: list | None = None, tid: str = "t1") -> Trajectory:
    return Trajectory(
        unique_trajectory_id=tid,
        source="test",
        conversation=list(messages),
        tools=[WEATHER] if tools is None else tools,
    )


def good() -> Trajectory:
    return traj(
        Message(role="user", content="Weather in Oslo for 3 days?"),
        Message(role="assistant", tool_calls=[call({"city": "Oslo", "days": 3})]),
        Message(role="tool", content='{"temp": 4}', tool_call_id="c1", name="get_weather"),
        Message(role="assistant", content="4°C."),
    )


def rules(t: Trajectory, verifier: Verifier | None = None) -> set[str]:
    return {v.rule for v in (verifier or Verifier()).check(t)}


def test_good_trajectory_passes() -> None:
    assert Verifier().check(good()) == []


U = Message(role="user", content="hi")
A = Message(role="assistant", content="ok")


@pytest.mark.parametrize(
    "rule, t",
    [
        ("unknown_tool", traj(U, Message(role="assistant", tool_calls=[call({}, name="nope")]))),
        ("arguments_invalid", traj(U, Message(role="assistant", tool_calls=[call({})]))),
        ("arguments_invalid", traj(U, Message(role="assistant", tool_calls=[call({"city": 5})]))),
        (
            "arguments_invalid",
            traj(U, Message(role="assistant", tool_calls=[call({"city": "a", "unit": "K"})])),
        ),
        (
            "arguments_invalid",
            traj(U, Message(role="assistant", tool_calls=[call({"city": "a", "days": 9})])),
        ),
        (
            "arguments_invalid",
            traj(U, Message(role="assistant", tool_calls=[call({"city": "a", "x": 1})])),
        ),
        ("call_id", traj(U, Message(role="assistant", tool_calls=[call({"city": "a"}, cid="")]))),
        (
            "call_id",
            traj(
                U, Message(role="assistant", tool_calls=[call({"city": "a"}), call({"city": "b"})])
            ),
        ),
        (
            "orphan_tool_result",
            traj(
                U,
                Message(role="assistant", tool_calls=[call({"city": "a"})]),
                Message(role="tool", content="x", tool_call_id="zz"),
                A,
            ),
        ),
        (
            "duplicate_tool_result",
            traj(
                U,
                Message(role="assistant", tool_calls=[call({"city": "a"})]),
                Message(role="tool", content="x", tool_call_id="c1"),
                Message(role="tool", content="y", tool_call_id="c1"),
                A,
            ),
        ),
        (
            "tool_name_mismatch",
            traj(
                U,
                Message(role="assistant", tool_calls=[call({"city": "a"})]),
                Message(role="tool", content="x", tool_call_id="c1", name="other"),
                A,
            ),
        ),
        ("role_order", traj(A)),  # does not start with user
        ("role_order", traj(U)),  # does not end with assistant
        ("role_order", traj(U, Message(role="tool", content="x", tool_call_id="c1"), A)),
        ("empty_assistant", traj(U, Message(role="assistant", content="  "))),
        (
            "tool_schema_invalid",
            traj(
                U,
                A,
                tools=[
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {"a": {"type": "strng"}},
                            },
                        },
                    }
                ],
            ),
        ),
        (
            "tool_schema_invalid",
            traj(
                U,
                A,
                tools=[
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
                ],
            ),
        ),
        ("duplicate_tool", traj(U, A, tools=[WEATHER, WEATHER])),
        ("invalid_unicode", traj(Message(role="user", content="bad \ud800"), A)),
    ],
)
def test_each_rule(rule: str, t: Trajectory) -> None:
    assert rule in RULES
    found = Verifier().check(t)
    assert rule in {v.rule for v in found}
    assert all(v.message for v in found)


def test_messages_come_from_jsonschema() -> None:
    t = traj(U, Message(role="assistant", tool_calls=[call({"city": "a", "unit": "K"})]))
    (v,) = Verifier().check(t)
    assert (
        v.message == "message 1: get_weather: 'K' is not one of ['celsius', 'fahrenheit'] (at unit)"
    )


def test_duplicate_ids_first_wins() -> None:
    v = Verifier()
    assert rules(good(), v) == set()
    assert rules(good(), v) == {"duplicate_id"}
    other_source = good()
    other_source.source = "elsewhere"  # ids are unique within a source
    assert rules(other_source, v) == set()
    v.reset()
    assert rules(good(), v) == set()


def test_length_limits(tiny_tokenizer: Any) -> None:
    long = traj(U, Message(role="assistant", content="é" * 600))
    data = fastjson.dumps(long.to_dict())
    chars = len(data.decode())
    assert len(data) == chars + 600  # the limit counts characters, not UTF-8 bytes
    assert rules(long, Verifier(max_chars=chars)) == set()
    assert rules(long, Verifier(max_chars=chars - 1)) == {"too_long_chars"}
    n = count_tokens(long, tiny_tokenizer)
    assert n > 0
    assert rules(long, Verifier(tokenizer=tiny_tokenizer, max_tokens=n)) == set()
    assert rules(long, Verifier(tokenizer=tiny_tokenizer, max_tokens=n - 1)) == {"too_long_tokens"}
    with pytest.raises(ValueError, match="tokenizer"):
        Verifier(max_tokens=5)


def test_schema_cache_checks_each_schema_once() -> None:
    cache = SchemaCache(maxsize=2)
    p = WEATHER["function"]["parameters"]
    assert cache.get(p) is cache.get(json.loads(json.dumps(p)))
    assert (cache.hits, cache.misses) == (1, 1)
    for i in range(3):
        cache.get({"type": "object", "title": str(i)})
    assert len(cache._entries) <= 2  # bounded


def test_unsupported_keywords_fall_back_to_jsonschema() -> None:
    params = {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "b": {"pattern": "^x"},
        },
    }
    assert compile_predicate(params) is None
    tool = {"type": "function", "function": {"name": "f", "parameters": params}}
    ok = traj(
        U, Message(role="assistant", tool_calls=[call({"a": 1, "b": "xy"}, name="f")]), tools=[tool]
    )
    bad = traj(
        U,
        Message(role="assistant", tool_calls=[call({"a": 1.5, "b": "y"}, name="f")]),
        tools=[tool],
    )
    assert rules(ok) == set()
    assert rules(bad) == {"arguments_invalid"}


def test_id_set_grows_and_stays_exact_for_distinct_ids() -> None:
    ids = IdSet(capacity=4)
    keys = [f"src\x00id-{i}" for i in range(5000)]
    assert all(ids.add(k) for k in keys)
    assert not any(ids.add(k) for k in keys[::7])
    assert len(ids) == 5000


# --------------------------------------------------------------------------------------
# Compiled predicates and the fast meta check agree with jsonschema (hypothesis).

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(-5, 5, allow_nan=False)
    | st.sampled_from(["", "a", "abc", "celsius"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner, max_size=3)
    ),
    max_leaves=8,
)
_types = st.sampled_from(["string", "integer", "number", "boolean", "null", "array", "object"])


def _schemas() -> st.SearchStrategy[dict]:
    leaf = st.fixed_dictionaries(
        {},
        optional={
            "type": _types | st.lists(_types, min_size=1, max_size=3, unique=True),
            "enum": st.lists(st.sampled_from(["a", "abc", "celsius"]), min_size=1, max_size=3),
            "minimum": st.integers(-3, 3),
            "maximum": st.floats(-3, 3, allow_nan=False),
            "exclusiveMinimum": st.integers(-3, 3),
            "minLength": st.integers(0, 3),
            "maxLength": st.integers(0, 3),
            "minItems": st.integers(0, 2),
            "maxItems": st.integers(0, 2),
            "description": st.just("d"),
            "default": _json,
            "format": st.just("date"),
        },
    )
    return st.recursive(
        leaf,
        lambda inner: (
            st.fixed_dictionaries(
                {"type": st.just("object")},
                optional={
                    "properties": st.dictionaries(st.sampled_from("abc"), inner, max_size=3),
                    "required": st.lists(st.sampled_from("abc"), unique=True, max_size=3),
                    "additionalProperties": st.booleans() | inner,
                },
            )
            | st.fixed_dictionaries({"type": st.just("array")}, optional={"items": inner})
        ),
        max_leaves=6,
    )


@settings(max_examples=300, deadline=None)
@given(_schemas(), _json)
def test_compiled_predicate_equals_jsonschema(schema: dict, instance: Any) -> None:
    fast = compile_predicate(schema)
    assert fast is not None
    assert fast(instance) == Draft202012Validator(schema).is_valid(instance)


_bad_values = st.sampled_from([-1, 1.5, "x", None, [], {}, ["a", "a"], [1], True, "strng"])


@settings(max_examples=300, deadline=None)
@given(
    _schemas(),
    st.sampled_from(
        [
            "type",
            "required",
            "minLength",
            "maximum",
            "enum",
            "properties",
            "items",
            "description",
            "format",
            "additionalProperties",
            "examples",
            "x-extra",
        ]
    ),
    _bad_values,
)
def test_fast_meta_check_never_accepts_what_jsonschema_rejects(
    schema: dict, key: str, value: Any
) -> None:
    assert meta_valid_fast(schema)  # the generated schemas are all valid: no slow path
    Draft202012Validator.check_schema(schema)
    mutated = {**schema, key: value}
    # One-sided: when the fast check accepts, jsonschema must accept too. When it declines,
    # the verifier asks jsonschema, so declining a valid schema only costs time.
    if meta_valid_fast(mutated):
        Draft202012Validator.check_schema(mutated)
    if key == "x-extra":
        assert meta_valid_fast(mutated)  # keywords outside the meta-schema are free


# --------------------------------------------------------------------------------------
# The file loop


def test_verify_file_good_plus_rejected_is_read(tmp_path: Path) -> None:
    lines = [
        good().to_json(),
        good().to_json(),  # duplicate id
        traj(U, tid="t2").to_json(),  # ends with user
        "{not json",
        json.dumps(
            {"unique_trajectory_id": "t3", "source": "other", "conversation": [{"role": "robot"}]}
        ),
        json.dumps({**good().to_dict(), "unique_trajectory_id": "t4", "source": "other"}),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    report = verify_file(src, tmp_path / "good.jsonl", tmp_path / "bad.jsonl")
    assert (report.read, report.good, report.rejected) == (6, 2, 4)
    assert report.to_dict()["by_source"] == {
        "<unparsed>": {"read": 1, "good": 0, "rejected": 1, "rules": {"invalid_json": 1}},
        "other": {"read": 2, "good": 1, "rejected": 1, "rules": {"schema": 1}},
        "test": {
            "read": 3,
            "good": 1,
            "rejected": 2,
            "rules": {"duplicate_id": 1, "role_order": 1},
        },
    }
    good_ids = [
        json.loads(x)["unique_trajectory_id"]
        for x in (tmp_path / "good.jsonl").read_text().splitlines()
    ]
    assert good_ids == ["t1", "t4"]
    rejects = [json.loads(x) for x in (tmp_path / "bad.jsonl").read_text().splitlines()]
    assert [r["rule"] for r in rejects] == ["duplicate_id", "role_order", "invalid_json", "schema"]
    assert [r["origin"]["line"] for r in rejects] == [2, 3, 4, 5]
    assert rejects[0]["record"] == json.loads(lines[1])
    assert rejects[0]["id"] == "t1" and rejects[0]["violations"][0]["rule"] == "duplicate_id"
    table = report.table()
    assert table.row_count == 3 + 4  # read, good, rejected and one row per rule


def test_verify_file_keeps_native_provenance(shared_fixtures: Path, tmp_path: Path) -> None:
    src = shared_fixtures / "datasets" / "sharegpt_glaive" / "glaive_toolcall_zh_demo.json"
    report = verify_file(
        src, tmp_path / "g.jsonl", tmp_path / "r.jsonl", fmt="sharegpt", source="glaive_zh"
    )
    assert report.read == 300 and report.good + report.rejected == 300
    assert report.sources["glaive_zh"].rules["orphan_tool_result"] == 2
    rejects = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rejects) == report.rejected
    for r in rejects:
        assert r["provenance"]["file"] == str(src) and r["origin"] == r["provenance"]
        assert "conversations" in r["record"]  # the native record
