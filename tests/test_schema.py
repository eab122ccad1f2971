"""The unified trajectory: lossless JSON round trips (examples and hypothesis)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlam import SAMPLE_DATA_DIR
from xlam.data.formats import fastjson
from xlam.data.schema import (
    Message,
    SchemaError,
    ToolCall,
    Trajectory,
    normalize_tool,
    read_trajectories,
    write_trajectories,
)

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def example() -> Trajectory:
    return Trajectory(
        unique_trajectory_id="ex-1",
        source="examples",
        task_instruction="Be brief.",
        tools=[TOOL],
        conversation=[
            Message(role="user", content="Weather in Paris?"),
            Message(
                role="assistant",
                content="",
                reasoning="I should call the tool.",
                tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris"}, id="c1")],
            ),
            Message(role="tool", content='{"temp": 14}', tool_call_id="c1", name="get_weather"),
            Message(role="assistant", content="14°C in Paris."),
        ],
        metadata={"origin": {"file": "x.jsonl", "line": 3, "index": 2}, "score": 0.5},
    )


def test_round_trip_every_role() -> None:
    t = example()
    assert Trajectory.from_json(t.to_json()) == t
    assert Trajectory.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    d = t.to_dict()
    assert d["conversation"][1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert d["conversation"][2] == {
        "role": "tool",
        "content": '{"temp": 14}',
        "tool_call_id": "c1",
        "name": "get_weather",
    }


def test_fields_set_on_any_role_survive() -> None:
    # A name on a user turn (multi-user chats) must not vanish on the way through JSON.
    m = Message(role="user", content="hi", name="alice", reasoning="")
    assert Message.from_dict(m.to_dict()) == m
    assert Message.from_dict(Message(role="assistant").to_dict()) == Message(role="assistant")


def test_normalize_tool_keeps_extra_keys_and_is_idempotent() -> None:
    bare = {"name": "f", "description": None, "parameters": None, "strict": True}
    once = normalize_tool(bare)
    assert once == {
        "type": "function",
        "function": {
            "name": "f",
            "description": "",
            "parameters": {"type": "object", "properties": {}},
            "strict": True,
        },
    }
    assert normalize_tool(once) == once


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"source": "s", "conversation": [{"role": "user"}]}, "unique_trajectory_id"),
        ({"unique_trajectory_id": "a", "conversation": []}, "non-empty"),
        ({"unique_trajectory_id": "a", "conversation": [{"role": "bot"}]}, "unknown role"),
        (
            {
                "unique_trajectory_id": "a",
                "conversation": [{"role": "user", "tool_calls": [{"name": "f"}]}],
            },
            "only assistant",
        ),
        (
            {
                "unique_trajectory_id": "a",
                "conversation": [
                    {"role": "assistant", "tool_calls": [{"name": "f", "arguments": "{x"}]}
                ],
            },
            "not valid JSON",
        ),
    ],
)
def test_schema_errors_name_the_problem(bad: dict, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        Trajectory.from_dict(bad)


def test_bundled_sample_data_round_trips_line_by_line(tmp_path) -> None:
    for path in sorted(SAMPLE_DATA_DIR.glob("*.jsonl")):
        originals = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        trajs = list(read_trajectories(path))
        assert [t.to_dict() for t in trajs] == originals
        out = tmp_path / path.name
        assert write_trajectories(trajs, out) == len(trajs)
        assert list(read_trajectories(out)) == trajs


# --------------------------------------------------------------------------------------
# Property: any trajectory survives JSON, through the stdlib and through the fast path.

_text = st.text(max_size=40)
_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_json = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)
_args = st.dictionaries(_text, _json, max_size=4)
_call = st.builds(ToolCall, name=st.text(min_size=1, max_size=20), arguments=_args, id=_text)
_message = st.one_of(
    st.builds(Message, role=st.just("user"), content=_text, name=st.none() | _text),
    st.builds(
        Message,
        role=st.just("assistant"),
        content=_text,
        reasoning=st.none() | _text,
        tool_calls=st.lists(_call, max_size=3),
    ),
    st.builds(
        Message,
        role=st.just("tool"),
        content=_text,
        tool_call_id=st.none() | _text,
        name=st.none() | _text,
    ),
)
_tool = st.builds(
    lambda name, desc, params, extra: normalize_tool(
        {"name": name, "description": desc, "parameters": params, **extra}
    ),
    st.text(min_size=1, max_size=20),
    _text,
    st.dictionaries(_text, _json, min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(["strict", "returns"]), _json, max_size=2),
)
_trajectory = st.builds(
    Trajectory,
    unique_trajectory_id=st.text(min_size=1, max_size=20),
    source=_text,
    conversation=st.lists(_message, min_size=1, max_size=5),
    task_instruction=_text,
    tools=st.lists(_tool, max_size=3),
    metadata=st.dictionaries(_text, _json, max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(_trajectory)
def test_any_trajectory_round_trips(t: Trajectory) -> None:
    assert Trajectory.from_json(t.to_json()) == t
    # The writers use the fast path (orjson with stdlib fallbacks): same value back.
    again = Trajectory.from_dict(fastjson.loads(fastjson.dumps(t.to_dict())))
    assert again == t
    assert again.to_dict() == t.to_dict()
