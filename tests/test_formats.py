"""Importers on the real dataset samples in shared/fixtures/datasets, and the readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from xlam.data.formats import (
    FORMATS,
    Context,
    InputError,
    RecordError,
    Reject,
    convert_file,
    get_importer,
    import_records,
    iter_records,
)
from xlam.data.formats import io as fio
from xlam.data.formats.pyliteral import LiteralError, parse_literal, parse_python_calls
from xlam.data.formats.tool_schema import convert_tool, python_type_to_schema
from xlam.data.schema import Trajectory
from xlam.data.verify import Verifier

# Every fixture file with the importer that reads it.
FIXTURES = {
    "xlam_fc_60k/sample.json": "xlam_fc_60k",
    "apigen_mt/sample.json": "sharegpt",
    "sharegpt_glaive/glaive_toolcall_en_demo.json": "sharegpt",
    "sharegpt_glaive/glaive_toolcall_zh_demo.json": "sharegpt",
    "openai_messages/sample.jsonl": "openai",
    "reasoning_tool_use/reason_tool_use_demo_50.jsonl": "openai",
    "hermes/sample.json": "hermes",
    "toolace/sample.json": "toolace",
}


def load(shared_fixtures: Path, rel: str, fmt: str | None = None) -> list[Trajectory]:
    results = list(import_records(shared_fixtures / "datasets" / rel, fmt or FIXTURES[rel]))
    rejects = [r for r, _, _ in results if isinstance(r, Reject)]
    assert not rejects, [(r.rule, r.message) for r in rejects]
    return [r for r, _, _ in results]


def params(t: Trajectory, tool: str) -> dict[str, Any]:
    return next(x["function"]["parameters"] for x in t.tools if x["function"]["name"] == tool)


def walk(value: Any):
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


def test_every_fixture_file_has_an_importer(shared_fixtures: Path) -> None:
    files = {
        str(p.relative_to(shared_fixtures / "datasets"))
        for p in (shared_fixtures / "datasets").rglob("*")
        if p.is_file() and p.suffix in (".json", ".jsonl", ".parquet")
    }
    assert files == set(FIXTURES)


@pytest.mark.parametrize("rel", sorted(FIXTURES))
def test_fixture_imports_cleanly_and_keeps_provenance(shared_fixtures: Path, rel: str) -> None:
    trajs = load(shared_fixtures, rel)
    assert trajs
    ids = [t.unique_trajectory_id for t in trajs]
    assert len(set(ids)) == len(ids)
    for i, t in enumerate(trajs):
        origin = t.metadata["origin"]
        assert origin["file"].endswith(rel) and origin["index"] == i and origin["line"] >= 1
        assert Trajectory.from_json(t.to_json()) == t  # what importers make is valid unified
        for tool in t.tools:
            p = tool["function"]["parameters"]
            assert p["type"] == "object"
            # No Python-ish or "dict" type survives anywhere in a schema.
            for node in walk(p):
                if isinstance(node, dict) and isinstance(node.get("type"), str):
                    assert node["type"] in {
                        "string",
                        "integer",
                        "number",
                        "boolean",
                        "array",
                        "object",
                        "null",
                    }, node


def test_xlam_fc_60k_types_become_json_schema(shared_fixtures: Path) -> None:
    trajs = load(shared_fixtures, "xlam_fc_60k/sample.json")
    assert [t.unique_trajectory_id for t in trajs] == [f"xlam_fc_60k-{i}" for i in range(5)]
    forecast = params(trajs[2], "forecast")
    assert forecast["properties"]["lat"]["type"] == "number"  # float
    assert forecast["properties"]["days"] == {
        "type": "integer",  # "int, optional"
        "description": "Number of days, default 3.",
        "default": 3,
    }
    assert forecast["properties"]["units"]["type"] == "string"  # "str, optional"
    assert forecast["required"] == ["lat", "lon"]  # no default and not optional
    search = params(trajs[1], "binary_search")
    assert search["properties"]["arr"]["type"] == "array"
    assert search["properties"]["arr"]["items"] == {"type": "integer"}  # List[int]
    assert params(trajs[1], "split_list")["properties"]["lst"] == {
        "type": "array",
        "description": "The input list.",
    }
    # A parameter literally called "type" is a parameter, not a JSON Schema keyword.
    give = params(trajs[0], "live_giveaways_by_type")
    assert give["properties"]["type"]["type"] == "string" and give["required"] == []
    user, assistant = trajs[0].conversation
    assert user.content.startswith("Where can I find live giveaways")
    assert [(c.name, c.arguments) for c in assistant.tool_calls] == [
        ("live_giveaways_by_type", {"type": "beta"}),
        ("live_giveaways_by_type", {"type": "game"}),
    ]
    assert len({c.id for c in assistant.tool_calls}) == 2
    assert all(not Verifier().check(t) for t in trajs)


def test_sharegpt_ids_pair_calls_with_observations(shared_fixtures: Path) -> None:
    first, second = load(shared_fixtures, "apigen_mt/sample.json")
    assert first.task_instruction.startswith("# Retail agent policy")
    assert [t["function"]["name"] for t in first.tools] == [
        "get_order_details",
        "cancel_pending_order",
        "transfer_to_human_agents",
    ]
    roles = [m.role for m in first.conversation]
    assert roles == [
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    for i, m in enumerate(first.conversation):
        if m.role == "tool":
            (call,) = first.conversation[i - 1].tool_calls
            assert m.tool_call_id == call.id and m.name == call.name
    cancel = first.conversation[7].tool_calls[0]
    assert cancel.arguments == {"order_id": "#W2378156", "reason": "ordered by mistake"}
    assert second.conversation[2].content == "Transfer successful"
    assert not Verifier().check(first) and not Verifier().check(second)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_glaive_every_observation_pairs_or_is_an_orphan(shared_fixtures: Path, lang: str) -> None:
    trajs = load(shared_fixtures, f"sharegpt_glaive/glaive_toolcall_{lang}_demo.json")
    assert len(trajs) == 300
    orphans = []
    calls = 0
    for t in trajs:
        seen: dict[str, str] = {}
        for m in t.conversation:
            for c in m.tool_calls:
                seen[c.id] = c.name
                calls += 1
            if m.role == "tool":
                if m.tool_call_id is None:
                    orphans.append(t.unique_trajectory_id)
                else:
                    assert seen[m.tool_call_id] == m.name
    assert calls == 211 if lang == "en" else calls > 0
    # Two zh records answer a call written as plain text ("AI 计算折扣: {...}"): an
    # observation with nothing to answer. The importer keeps it; the verifier rejects it.
    expected = (
        []
        if lang == "en"
        else ["sharegpt-glaive_toolcall_zh_demo-197", "sharegpt-glaive_toolcall_zh_demo-293"]
    )
    assert orphans == expected
    v = Verifier()
    for tid in expected:
        t = next(t for t in trajs if t.unique_trajectory_id == tid)
        assert "orphan_tool_result" in {x.rule for x in v.check(t)}


def test_openai_null_content_and_string_arguments(shared_fixtures: Path) -> None:
    first, second = load(shared_fixtures, "openai_messages/sample.jsonl")
    assert first.task_instruction == "You are a travel assistant."
    call_turn = first.conversation[1]
    assert call_turn.content == ""
    assert [(c.id, c.arguments) for c in call_turn.tool_calls] == [
        ("call_1", {"location": "Paris"}),
        ("call_2", {"location": "Rome", "unit": "celsius"}),
    ]
    assert [(m.tool_call_id, m.name) for m in first.conversation[2:4]] == [
        ("call_1", "get_weather"),
        ("call_2", "get_weather"),
    ]
    assert second.tools == [] and not Verifier().check(second)


def test_openai_typed_parts_reasoning_tool_use(shared_fixtures: Path) -> None:
    trajs = load(shared_fixtures, "reasoning_tool_use/reason_tool_use_demo_50.jsonl")
    assert len(trajs) == 50
    assert trajs[0].task_instruction.startswith("You are a methodical and expert assistant.")
    assistants = [m for t in trajs for m in t.conversation if m.role == "assistant"]
    assert len(assistants) == 112 and all(m.reasoning for m in assistants)
    assert sum(len(m.tool_calls) for m in assistants) == 68
    parallel = next(
        m for m in assistants if len(m.tool_calls) == 3 and m.tool_calls[0].name == "pagesjaunes"
    )
    assert parallel.tool_calls[0].arguments == {
        "pjpage": 1,
        "pjlocation": "Lyon",
        "pjkeyword": "bakeries",
    }
    # Tool results have no ids in this data: each answers the next pending call in order.
    for t in trajs:
        for m in t.conversation:
            if m.role == "tool":
                assert m.tool_call_id and m.name
    # Tools: "type": "dict", Python types and "required" beside "parameters" all fixed.
    p = params(trajs[0], "get_device_asset_by_identifier")
    assert p == {
        "type": "object",
        "properties": {
            "identifier": {
                "description": "The unique identifier for the device asset.",
                "type": "string",
                "default": "71491234-A",
            }
        },
        "required": ["identifier"],
    }
    v = Verifier()
    assert all(not v.check(t) for t in trajs)


def test_hermes_single_quote_calls_and_several_responses(shared_fixtures: Path) -> None:
    (t,) = load(shared_fixtures, "hermes/sample.json")
    assert t.unique_trajectory_id == "hermes-h1"
    assert t.task_instruction == ""  # the stock Hermes format prompt is dropped
    assert params(t, "get_stock_price")["required"] == ["symbol"]
    calls = t.conversation[1].tool_calls
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_stock_price", {"symbol": "AAPL"}),
        ("get_stock_price", {"symbol": "MSFT"}),
    ]
    results = t.conversation[2:4]
    assert [m.tool_call_id for m in results] == [c.id for c in calls]
    assert json.loads(results[1].content) == {"symbol": "MSFT", "price": 411.2}
    assert t.metadata["native"] == {"category": "Finance"}
    assert not Verifier().check(t)


def test_toolace_python_calls_and_result_list(shared_fixtures: Path) -> None:
    (t,) = load(shared_fixtures, "toolace/sample.json")
    assert t.task_instruction == ""
    assert params(t, "Market Trends API")["type"] == "object"  # was "dict"
    calls = t.conversation[1].tool_calls
    assert [(c.name, c.arguments) for c in calls] == [
        ("Market Trends API", {"trend_type": "GAINERS", "country": "us"}),
        ("Market Trends API", {"trend_type": "GAINERS", "country": "de"}),
    ]
    tools = t.conversation[2:4]
    assert [m.tool_call_id for m in tools] == [c.id for c in calls]
    assert json.loads(tools[0].content) == {"trends": [{"name": "NVDA", "change": "+4.1%"}]}
    assert not Verifier().check(t)


def test_glaive_v2_raw_records() -> None:
    record = {
        "system": "SYSTEM: You are a helpful assistant with access to the following functions. "
        'Use them if required -\n{\n    "name": "get_news",\n    "description": "News",\n'
        '    "parameters": {"type": "object", "properties": {"country": {"type": "string"}},'
        ' "required": ["country"]}\n}\n',
        "chat": 'USER: News for the US?\n\n\nASSISTANT: <functioncall> {"name": "get_news",'
        ' "arguments": \'{"country": "US"}\'} <|endoftext|>\n\n\nFUNCTION RESPONSE: '
        '{"headlines": ["a"]}\n\n\nASSISTANT: Here you go: a. <|endoftext|>\n',
    }
    t = get_importer("hermes")(record, Context(source="glaive"))
    assert t.task_instruction == "You are a helpful assistant."
    assert [m.role for m in t.conversation] == ["user", "assistant", "tool", "assistant"]
    (call,) = t.conversation[1].tool_calls
    assert (call.name, call.arguments) == ("get_news", {"country": "US"})
    assert t.conversation[2].tool_call_id == call.id
    assert t.conversation[3].content == "Here you go: a."
    assert not Verifier().check(t)


# --------------------------------------------------------------------------------------
# Python-ish types and Python call syntax


@pytest.mark.parametrize(
    "text, schema, optional",
    [
        ("str", {"type": "string"}, False),
        ("int", {"type": "integer"}, False),
        ("float, optional", {"type": "number"}, True),
        ("bool, default=False", {"type": "boolean"}, True),
        ("List[int]", {"type": "array", "items": {"type": "integer"}}, False),
        ("List", {"type": "array"}, False),
        (
            "list[List[str]]",
            {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
            False,
        ),
        ("Dict[str, Any]", {"type": "object"}, False),
        ("Dict[str, int]", {"type": "object", "additionalProperties": {"type": "integer"}}, False),
        ("Tuple[int, int]", {"type": "array", "items": {"type": "integer"}}, False),
        ("Tuple[int, str]", {"type": "array"}, False),
        ("Union[int, float]", {"type": ["integer", "number"]}, False),
        ("int | None", {"type": ["integer", "null"]}, False),
        ("Optional[str]", {"type": ["string", "null"]}, True),
        ("Literal['a', 'b']", {"enum": ["a", "b"]}, False),
        ("Callable", {}, False),
        ("np.ndarray", {}, False),
        ("typing.Any", {}, False),
        ("List[int", {}, False),  # unbalanced: no constraint rather than a wrong one
    ],
)
def test_python_types(text: str, schema: dict, optional: bool) -> None:
    assert python_type_to_schema(text) == (schema, optional)


def test_python_type_results_are_fresh_copies() -> None:
    a, _ = python_type_to_schema("List[int]")
    a["items"]["type"] = "mutated"
    assert python_type_to_schema("List[int]")[0]["items"] == {"type": "integer"}


def test_convert_tool_variants() -> None:
    flat = convert_tool(
        {
            "name": "f",
            "parameters": {
                "q": {"type": "str", "required": False},
                "n": {"type": "int", "required": True, "default": 1},
            },
        }
    )
    assert flat["function"]["parameters"]["required"] == ["n"]
    nested = convert_tool(
        {
            "type": "function",
            "function": {
                "name": "g",
                "parameters": {
                    "type": "dict",
                    "properties": {
                        "a": {"type": "dict", "properties": {"b": {"type": "List[float]"}}},
                        "c": {"type": "str, optional"},
                    },
                    "required": ["a", "c"],
                },
            },
        }
    )
    p = nested["function"]["parameters"]
    assert p["properties"]["a"]["type"] == "object"
    assert p["properties"]["a"]["properties"]["b"] == {"type": "array", "items": {"type": "number"}}
    assert p["required"] == ["a"]  # "c" is typed optional
    with pytest.raises(RecordError, match="name") as e:
        convert_tool({"description": "no name"})
    assert e.value.rule == "tool_schema"


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[f(a=1, b="x")]', [("f", {"a": 1, "b": "x"})]),
        (
            "[Market Trends API(trend_type='GAINERS', country=\"us\")]",
            [("Market Trends API", {"trend_type": "GAINERS", "country": "us"})],
        ),
        (
            "[a.b-c/d(x=[1, 2, {'k': (3, 4)}], y={'z': None}), g()]",
            [("a.b-c/d", {"x": [1, 2, {"k": [3, 4]}], "y": {"z": None}}), ("g", {})],
        ),
        (
            '[f(s="a, b) c]", t=-2.5, u=True, v=null, w=true,)]',
            [("f", {"s": "a, b) c]", "t": -2.5, "u": True, "v": None, "w": True})],
        ),
        ("f(q='''multi\nline''')", [("f", {"q": "multi\nline"})]),
        ('[f(s="escaped \\" quote")]', [("f", {"s": 'escaped " quote'})]),
    ],
)
def test_python_calls_parse(text: str, expected: list) -> None:
    assert parse_python_calls(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "[f(1, 2)]",  # positional
        "[f(a=1, a=2)]",  # repeated keyword
        "[f(a=__import__('os').system('true'))]",  # a call is not a literal
        "[f(a=x.y)]",  # attribute access
        "[f(a=1 + 2)]",  # an expression
        "[f(a=[1, 2)]",  # unbalanced
        "[f(a='open]",  # unterminated string
        "[f(a=1e999)]",  # infinite: not JSON
        "[]",
        "[f(a=1) g(b=2)]",  # missing comma
    ],
)
def test_python_calls_refuse_anything_but_literals(text: str) -> None:
    with pytest.raises(LiteralError):
        parse_python_calls(text)


def test_parse_literal_is_literal_only() -> None:
    assert parse_literal("{'a': [1, -2.5, True, None, 'x']}") == {"a": [1, -2.5, True, None, "x"]}
    for bad in ("__import__('os')", "{1: 2}", "{**x}", "lambda: 1", "b'bytes'", "1j", "[" * 500):
        with pytest.raises(LiteralError):
            parse_literal(bad)


# --------------------------------------------------------------------------------------
# Readers


def test_json_array_reader_streams_across_tiny_chunks(
    shared_fixtures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = shared_fixtures / "datasets" / "sharegpt_glaive" / "glaive_toolcall_zh_demo.json"
    expected = json.loads(path.read_text(encoding="utf-8"))
    monkeypatch.setattr(fio, "_CHUNK", 7)  # every element spans many refills
    got = list(iter_records(path))
    assert [r for r, _ in got] == expected
    lines = path.read_text(encoding="utf-8").splitlines()
    for _, origin in got[:20]:
        assert lines[origin["line"] - 1].strip() == "{"


def test_jsonl_reader_reports_bad_lines_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"a": 1}\n\n{"a": \n{"a": "\xff"}\nNaN\n[1, 2]\n'
        b'{"a": 123456789012345678901234567890}\n'
    )
    errors: list = []
    got = list(iter_records(path, on_error=lambda e, o, raw: errors.append((e.rule, o["line"]))))
    assert [(r, o["line"], o["index"]) for r, o in got] == [
        ({"a": 1}, 1, 0),
        ([1, 2], 6, 4),
        ({"a": 123456789012345678901234567890}, 7, 5),  # exact, not a float
    ]
    assert errors == [("invalid_json", 3), ("invalid_utf8", 4), ("invalid_json", 5)]
    with pytest.raises(RecordError, match=r"x\.jsonl:3"):
        list(iter_records(path))


def test_json_array_reader_errors(tmp_path: Path) -> None:
    def run(text: bytes) -> tuple[list, list]:
        p = tmp_path / "a.json"
        p.write_bytes(text)
        errors: list = []
        got = list(iter_records(p, on_error=lambda e, o, raw: errors.append((e.rule, o))))
        return [r for r, _ in got], [(rule, o.get("index")) for rule, o in errors]

    assert run(b"[]") == ([], [])
    assert run(b' [ {"a": 1} ,\n{"b": 2} ] ') == ([{"a": 1}, {"b": 2}], [])
    assert run(b'[{"a": 1}, {"b": "\xff"}, {"c": 3}]') == (
        [{"a": 1}, {"c": 3}],
        [("invalid_utf8", 1)],
    )
    assert run(b'[{"a": 1}, {"b": NaN}, {"c": 3}]') == ([{"a": 1}, {"c": 3}], [("invalid_json", 1)])
    records, errors = run(b'[{"a": 1}, {"b": }, {"c": 3}]')
    assert records == [{"a": 1}] and errors == [("invalid_json", 1)]
    records, errors = run(b'[{"a": 1}, {"b": 2}')  # truncated file
    assert records == [{"a": 1}, {"b": 2}] and errors == [("invalid_json", 2)]


def test_single_object_file_and_bad_containers(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text('{\n  "messages": [{"role": "user", "content": "hi"}]\n}\n')
    assert [r for r, _ in iter_records(one)] == [{"messages": [{"role": "user", "content": "hi"}]}]
    # JSON lines in a .json file whose first line is broken are still read line by line.
    lines = tmp_path / "lines.json"
    lines.write_text('{"a": \n{"b": 2}\n')
    errors: list = []
    got = list(iter_records(lines, on_error=lambda e, o, raw: errors.append(o["line"])))
    assert [r for r, _ in got] == [{"b": 2}] and errors == [1]
    with pytest.raises(FileNotFoundError):
        list(iter_records(tmp_path / "missing.jsonl"))
    with pytest.raises(InputError, match="save_to_disk"):
        list(iter_records(tmp_path))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(InputError, match="Parquet"):
        list(iter_records(bad))


def test_parquet_and_datasets_folder(shared_fixtures: Path, tmp_path: Path) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = json.loads((shared_fixtures / "datasets" / "xlam_fc_60k" / "sample.json").read_text())
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "x.parquet", row_group_size=2)
    from_parquet = [r for r, _, _ in import_records(tmp_path / "x.parquet", "xlam_fc_60k")]
    from_json = load(shared_fixtures, "xlam_fc_60k/sample.json")
    assert [t.conversation for t in from_parquet] == [t.conversation for t in from_json]
    assert [t.tools for t in from_parquet] == [t.tools for t in from_json]
    assert from_parquet[3].metadata["origin"] == {"file": str(tmp_path / "x.parquet"), "index": 3}

    # Unified trajectories in a datasets folder travel with JSON-string tools/arguments.
    unified = [t.to_dict() for t in from_json]
    columnar = [
        {
            **d,
            "tools": json.dumps(d["tools"]),
            "metadata": json.dumps(d["metadata"]),
            "conversation": json.dumps(d["conversation"]),
        }
        for d in unified
    ]
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(columnar[:3]),
            "test": datasets.Dataset.from_list(columnar[3:]),
        }
    )
    dd.save_to_disk(str(tmp_path / "hf"))
    got = list(iter_records(tmp_path / "hf"))
    assert [o.get("split") for _, o in got] == ["train"] * 3 + ["test"] * 2
    assert [r["unique_trajectory_id"] for r, _ in got] == [
        d["unique_trajectory_id"] for d in unified
    ]


def test_unified_importer_decodes_columnar_fields() -> None:
    convert = get_importer("unified")
    record = {
        "unique_trajectory_id": 7,
        "conversation": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ],
        "tools": "[]",
        "metadata": '{"score": 1}',
    }
    t = convert(record, Context(source="u", origin={"file": "f", "index": 0}))
    assert t.unique_trajectory_id == "7"
    assert t.metadata == {"score": 1, "origin": {"file": "f", "index": 0}}
    with pytest.raises(RecordError) as e:
        convert({"conversation": []}, Context(source="u"))
    assert e.value.rule == "schema"


def test_convert_file_counts_and_rejects(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    good = {"id": 1, "query": "q", "answers": "[]", "tools": "[]"}
    lines = [
        json.dumps(good),
        "{broken",
        json.dumps({"id": 2, "query": 5}),
        json.dumps([1]),
        json.dumps({**good, "id": 3, "answers": '[{"name": "f", "arguments": "{x"}]'}),
    ]
    src.write_text("\n".join(lines) + "\n")
    report = convert_file(src, "xlam_fc_60k", tmp_path / "out.jsonl", tmp_path / "rej.jsonl")
    assert (report.read, report.converted, report.rejected) == (5, 1, 4)
    assert dict(report.rules) == {
        "invalid_json": 1,
        "missing_field": 1,
        "record_type": 1,
        "arguments_json": 1,
    }
    rejects = [json.loads(line) for line in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [r["origin"]["line"] for r in rejects] == [2, 3, 4, 5]
    assert all(r["message"] and "record" in r for r in rejects)
    assert rejects[0]["record"] == "{broken"  # raw text when it is not JSON
    assert rejects[1]["record"] == {"id": 2, "query": 5}
    (out,) = (tmp_path / "out.jsonl").read_text().splitlines()
    assert json.loads(out)["unique_trajectory_id"] == "xlam_fc_60k-1"


def test_registry() -> None:
    assert set(FORMATS) == {"xlam_fc_60k", "sharegpt", "openai", "hermes", "toolace", "unified"}
    with pytest.raises(KeyError, match="known: xlam_fc_60k"):
        get_importer("nope")
