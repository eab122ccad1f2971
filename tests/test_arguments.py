"""One argument parser: ``schema.parse_arguments`` and the serving parser's copy agree.

The serving parser keeps a standard-library copy of the argument decoding; importers use
``schema.parse_arguments`` with the fast decoder. All three must turn the same argument
value (object or JSON text) into the same object, or all refuse it, on the arguments of
the shared parser vectors and on the edge cases around them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from xlam.data.formats.base import RecordError
from xlam.data.formats.base import parse_arguments as import_arguments
from xlam.data.schema import ArgumentsError, parse_arguments
from xlam.serving.parser import ToolCallParseError
from xlam.serving.parser import _arguments as serving_arguments

EDGE_CASES: list[Any] = [None, "", "   \n", "{}", "{", "[1]", "1", "null", '"s"', [], 3, "{} x"]


def _argument_values(obj: Any) -> list[Any]:
    """Values under ``arguments``/``parameters`` anywhere in a decoded JSON value."""
    out = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("arguments", "parameters"):
                out.append(value)
            out.extend(_argument_values(value))
    elif isinstance(obj, list):
        for value in obj:
            out.extend(_argument_values(value))
    return out


def argument_inputs(vectors: list[dict]) -> list[Any]:
    """Argument values as the vectors hold them, as JSON text, and edge cases."""
    inputs: list[Any] = list(EDGE_CASES)
    decoder = json.JSONDecoder()
    for v in vectors:
        for call in v["calls"]:
            args = call["arguments"]
            text = json.dumps(args)
            inputs += [args, text, json.dumps(args, ensure_ascii=False), f" {text}\n"]
        # The raw values in the text itself (a string in `arguments_as_string`).
        text = v["text"]
        for at in (i for i, c in enumerate(text) if c in "[{"):
            try:
                obj, _ = decoder.raw_decode(text, at)
            except ValueError:
                continue
            inputs += _argument_values(obj)
    return inputs


def outcome(parse: Any, errors: type[Exception], args: Any) -> tuple[str, Any]:
    try:
        return "ok", parse("f", args)
    except errors:
        return "refused", None


@pytest.fixture(scope="module")
def vectors(shared_fixtures: Path) -> list[dict]:
    return json.loads((shared_fixtures / "parsers" / "tool_call_vectors.json").read_text())


def test_the_parsers_agree_on_the_shared_vectors(vectors: list[dict]) -> None:
    inputs = argument_inputs(vectors)
    assert any(isinstance(x, str) and x.startswith("{") for x in inputs[len(EDGE_CASES) :])
    for args in inputs:
        shared = outcome(lambda n, a: parse_arguments(a, n), ArgumentsError, args)
        assert outcome(serving_arguments, ToolCallParseError, args) == shared, args
        assert outcome(lambda n, a: import_arguments(a, n), RecordError, args) == shared, args
    # Not vacuous: both verdicts occur.
    verdicts = {outcome(lambda n, a: parse_arguments(a, n), ArgumentsError, x)[0] for x in inputs}
    assert verdicts == {"ok", "refused"}


def test_vector_arguments_parse_to_the_vector_calls(vectors: list[dict]) -> None:
    for v in vectors:
        for call in v["calls"]:
            args = call["arguments"]
            assert parse_arguments(json.dumps(args), call["name"]) == args, v["name"]
            assert parse_arguments(args, call["name"]) == args, v["name"]


@pytest.mark.parametrize(
    ("args", "rule"),
    [("{", "arguments_json"), ("[" * 100_000, "arguments_json"), ("[1]", "arguments_type")],
)
def test_refusals_name_the_rule_and_the_call(args: str, rule: str) -> None:
    with pytest.raises(ArgumentsError) as e:
        parse_arguments(args, "get_weather")
    assert e.value.rule == rule
    assert "'get_weather'" in str(e.value)
    with pytest.raises(RecordError) as r:
        import_arguments(args, "get_weather")
    assert r.value.rule == rule
    assert "'get_weather'" in r.value.message
