"""Bad input, tried for real: hypothesis feeds good and adversarial records to every importer
and the verifier. Nothing crashes, every bad record is reported with a reason, every good one
is kept, and read == good + rejected.

Records are rendered from one random "episode" (tools, a user turn, calls, results, a final
answer) into each native format, so the same content is checked through every importer.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlam.data.formats import FORMATS, IMPORT_RULES, Context, RecordError, convert_file
from xlam.data.verify import RULES, verify_file

ALL_RULES = set(IMPORT_RULES) | set(RULES)
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text that no format gives a meaning to (no brackets, quotes, tags or backslashes), from
# several scripts; adversarial text is the job of the mutations and the raw fuzz below.
_SAFE = st.characters(
    whitelist_categories=("Lu", "Ll", "Lo", "Nd"), max_codepoint=0x9FFF
) | st.sampled_from(list(" .,?!-:;"))
TEXT = st.text(alphabet=_SAFE, min_size=1, max_size=24).filter(lambda s: s.strip())
NAME = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
PY_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
VALUES = {
    "string": TEXT,
    "integer": st.integers(-(10**6), 10**6),
    "number": st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-100, 100),
    "boolean": st.booleans(),
}


@dataclass(frozen=True)
class Episode:
    tools: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    user: str
    calls: tuple[tuple[str, dict[str, Any]], ...]
    results: tuple[str, ...]
    final: str


@st.composite
def episodes(draw: Any, min_calls: int = 0) -> Episode:
    names = draw(st.lists(NAME, min_size=1, max_size=3, unique=True))
    tools = []
    for name in names:
        pnames = draw(st.lists(NAME, max_size=3, unique=True))
        tools.append((name, tuple((p, draw(st.sampled_from(sorted(PY_TYPES)))) for p in pnames)))
    calls = []
    for _ in range(draw(st.integers(min_calls, 3))):
        name, params = draw(st.sampled_from(tools))
        calls.append((name, {p: draw(VALUES[t]) for p, t in params}))
    results = tuple(draw(TEXT) for _ in calls)
    return Episode(tuple(tools), draw(TEXT), tuple(calls), results, draw(TEXT))


def json_schema_tools(ep: Episode, object_type: str = "object") -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "description": f"The {name} tool.",
            "parameters": {
                "type": object_type,
                "properties": {p: {"type": t, "description": p} for p, t in params},
                "required": [p for p, _ in params],
            },
        }
        for name, params in ep.tools
    ]


def render(fmt: str, ep: Episode, rid: int, bad_args: bool = False, orphan: bool = False) -> Any:
    """``ep`` as a native record; ``bad_args``/``orphan`` plant those two faults."""
    if fmt == "xlam_fc_60k":
        tools = [
            {
                "name": n,
                "description": "d",
                "parameters": {p: {"description": p, "type": PY_TYPES[t]} for p, t in params},
            }
            for n, params in ep.tools
        ]
        answers = json.dumps([{"name": n, "arguments": a} for n, a in ep.calls])
        if bad_args:
            answers = answers[:-3]
        return {"id": rid, "query": ep.user, "answers": answers, "tools": json.dumps(tools)}
    if fmt == "sharegpt":
        turns = [{"from": "human", "value": ep.user}]
        if orphan:
            turns.append({"from": "observation", "value": "an answer to nothing"})
        for n, a in ep.calls:
            value = json.dumps({"name": n, "arguments": a})
            turns.append({"from": "function_call", "value": value[:-5] if bad_args else value})
        turns += [{"from": "observation", "value": r} for r in ep.results]
        turns.append({"from": "gpt", "value": ep.final})
        return {
            "id": rid,
            "conversations": turns,
            "tools": json.dumps(json_schema_tools(ep)),
            "system": "Policy.",
        }
    if fmt == "openai":
        msgs: list[dict[str, Any]] = [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": ep.user},
        ]
        if ep.calls:
            calls = [
                {
                    "id": f"c{k}",
                    "type": "function",
                    "function": {"name": n, "arguments": json.dumps(a)},
                }
                for k, (n, a) in enumerate(ep.calls)
            ]
            if bad_args:
                calls[0]["function"]["arguments"] = "{not json"
            msgs.append({"role": "assistant", "content": None, "tool_calls": calls})
            msgs += [
                {"role": "tool", "tool_call_id": f"c{k}", "content": r}
                for k, r in enumerate(ep.results)
            ]
        if orphan:
            msgs.append({"role": "tool", "tool_call_id": "nobody", "content": "?"})
        msgs.append({"role": "assistant", "content": ep.final})
        tools = [{"type": "function", "function": t} for t in json_schema_tools(ep)]
        return {"id": rid, "messages": msgs, "tools": tools}
    if fmt == "hermes":
        system = (
            "You are a function calling AI model.\n<tools>\n"
            f"{[{'type': 'function', 'function': t} for t in json_schema_tools(ep)]!r}"
            "\n</tools>"
        )
        turns = [{"from": "system", "value": system}, {"from": "human", "value": ep.user}]
        if orphan:
            turns.append({"from": "tool", "value": "<tool_response>\n{}\n</tool_response>"})
        if ep.calls:
            blocks = [
                f"<tool_call>\n{ {'arguments': a, 'name': n}!r}\n</tool_call>" for n, a in ep.calls
            ]
            if bad_args:
                blocks[0] = "<tool_call>\n{'arguments': {'a': \n</tool_call>"
            turns.append({"from": "gpt", "value": "\n".join(blocks)})
            responses = [
                f"<tool_response>\n{json.dumps({'name': n, 'content': r})}\n</tool_response>"
                for (n, _), r in zip(ep.calls, ep.results)
            ]
            turns.append({"from": "tool", "value": "\n".join(responses)})
        turns.append({"from": "gpt", "value": ep.final})
        return {"id": rid, "conversations": turns}
    if fmt == "toolace":
        system = (
            "You are an expert in composing functions.\nHere is a list of functions in "
            f"JSON format that you can invoke:\n{json.dumps(json_schema_tools(ep, 'dict'))}"
            "\nShould you decide to return the function call(s), put it in the format of "
            "[func1(params_name=params_value, params_name2=params_value2...), func2(params)]"
        )
        turns = [{"from": "user", "value": ep.user}]
        if orphan:
            turns.append({"from": "tool", "value": '[{"name": "x", "results": {}}]'})
        if ep.calls:
            calls = ", ".join(
                f"{n}({', '.join(f'{k}={v!r}' for k, v in a.items())})" for n, a in ep.calls
            )
            turns.append({"from": "assistant", "value": "[f(1, 2)]" if bad_args else f"[{calls}]"})
            turns.append(
                {
                    "from": "tool",
                    "value": json.dumps(
                        [
                            {"name": n, "results": {"text": r}}
                            for (n, _), r in zip(ep.calls, ep.results)
                        ]
                    ),
                }
            )
        turns.append({"from": "assistant", "value": ep.final})
        return {"id": rid, "system": system, "conversations": turns}
    assert fmt == "unified"
    conv: list[dict[str, Any]] = [{"role": "user", "content": ep.user}]
    if orphan:
        conv.append({"role": "assistant", "content": "wait"})
        conv.append({"role": "tool", "tool_call_id": "nobody", "name": "x", "content": "?"})
    if ep.calls:
        calls = [
            {"id": f"c{k}", "type": "function", "function": {"name": n, "arguments": a}}
            for k, (n, a) in enumerate(ep.calls)
        ]
        if bad_args:
            calls[0]["function"]["arguments"] = "{oops"
        conv.append({"role": "assistant", "content": "", "tool_calls": calls})
        conv += [
            {"role": "tool", "tool_call_id": f"c{k}", "name": n, "content": r}
            for k, ((n, _), r) in enumerate(zip(ep.calls, ep.results))
        ]
    conv.append({"role": "assistant", "content": ep.final})
    return {
        "unique_trajectory_id": f"u{rid}",
        "source": "fuzz",
        "conversation": conv,
        "tools": [{"type": "function", "function": t} for t in json_schema_tools(ep)],
    }


def wrong_call(ep: Episode) -> Episode:
    """Break the first call: a list where a scalar is declared, or an undeclared tool."""
    name, args = ep.calls[0]
    if args:
        first = next(iter(args))
        broken = (name, {**args, first: [1, {"x": 2}]})
    else:
        broken = ("zz_undeclared", args)
    return replace(ep, calls=(broken, *ep.calls[1:]))


CONVERSATION_KEY = {
    "xlam_fc_60k": "query",
    "sharegpt": "conversations",
    "openai": "messages",
    "hermes": "conversations",
    "toolace": "conversations",
    "unified": "conversation",
}
BAD_KINDS = [
    "truncated",
    "bad_utf8",
    "not_object",
    "deep",
    "huge",
    "missing_conversation",
    "unknown_role",
    "bad_args",
    "orphan",
    "wrong_call",
    "wrong_type",
]


@st.composite
def line_for(draw: Any, fmt: str, rid: int) -> tuple[bytes, bool]:
    """One JSONL line and whether it must be kept."""
    kind = draw(st.sampled_from(["good", "good", "good", *BAD_KINDS]))
    needs_call = fmt == "xlam_fc_60k" or kind in ("bad_args", "wrong_call")
    ep = draw(episodes(min_calls=1 if needs_call else 0))
    if kind == "huge":  # beyond the default 200,000-character limit
        ep = replace(ep, user="x" * 210_000)
    if kind == "wrong_call":
        ep = wrong_call(ep)
    record = render(
        fmt, ep, rid, bad_args=kind == "bad_args", orphan=kind == "orphan" and fmt != "xlam_fc_60k"
    )
    if kind == "orphan" and fmt == "xlam_fc_60k":  # nothing to orphan: break a call instead
        record = render(fmt, wrong_call(ep), rid)
    if kind == "missing_conversation":
        del record[CONVERSATION_KEY[fmt]]
    elif kind == "unknown_role":
        if fmt == "xlam_fc_60k":
            record["answers"] = 5
        else:
            turns = record[CONVERSATION_KEY[fmt]]
            key = "from" if "from" in turns[0] else "role"
            turns.insert(1, {key: "wizard", ("value" if key == "from" else "content"): "boo"})
    elif kind == "wrong_type":
        record[CONVERSATION_KEY[fmt]] = draw(st.integers() | st.booleans())
    line = json.dumps(record, ensure_ascii=False).encode()
    if kind == "truncated":
        line = line[: draw(st.integers(1, len(line) - 1))]
    elif kind == "bad_utf8":
        line = line.replace(b'"', b'"\xff\xfe', 1)
    elif kind == "not_object":
        line = json.dumps(
            draw(st.lists(st.integers(), max_size=3) | st.text(max_size=5) | st.integers())
        ).encode()
    elif kind == "deep":
        line = b"[" * 5000 + line + b"]" * 5000
    return line, kind == "good"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@SETTINGS
@given(data=st.data())
def test_every_record_is_kept_or_rejected_with_a_reason(fmt: str, data: Any) -> None:
    n = data.draw(st.integers(1, 6))
    lines = [data.draw(line_for(fmt, i)) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        body = b""
        expected_good, expected_bad = set(), set()
        lineno = 0
        for line, keep in lines:
            if data.draw(st.booleans()):
                body += b"\n"  # blank lines are not records
                lineno += 1
            body += line + b"\n"
            lineno += 1
            (expected_good if keep else expected_bad).add(lineno)
        src.write_bytes(body)
        report = verify_file(
            src, Path(tmp) / "good.jsonl", Path(tmp) / "bad.jsonl", fmt=fmt, source="fuzz"
        )
        good = [json.loads(x) for x in (Path(tmp) / "good.jsonl").read_bytes().splitlines()]
        bad = [json.loads(x) for x in (Path(tmp) / "bad.jsonl").read_bytes().splitlines()]
    assert report.read == n == report.good + report.rejected
    assert {g["metadata"]["origin"]["line"] for g in good} == expected_good
    assert {b["origin"]["line"] for b in bad} == expected_bad
    for b in bad:
        assert b["rule"] in ALL_RULES and b["rule"] != "internal_error", b["message"]
        assert b["message"]


# --------------------------------------------------------------------------------------
# Raw fuzz: arbitrary JSON shaped with the formats' own keys, and arbitrary bytes.

VOCAB = [
    "id",
    "query",
    "answers",
    "tools",
    "conversations",
    "conversation",
    "messages",
    "from",
    "role",
    "value",
    "content",
    "system",
    "chat",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "parameters",
    "type",
    "properties",
    "required",
    "tool_call_id",
    "unique_trajectory_id",
    "source",
    "metadata",
    "human",
    "gpt",
    "user",
    "assistant",
    "tool",
    "observation",
    "function_call",
    "text",
    "reasoning",
    "description",
]
_weird_text = (
    st.sampled_from(
        [
            "",
            " ",
            "[f(a=1)]",
            "[Name X(a=[1, {'b': (2,)}])]",
            "<tool_call>\n{'name': 'f'}\n</tool_call>",
            "<tool_call>{",
            "<tools>[{'name': 'f'}]</tools>",
            '{"name": "f"}',
            '[{"name": "f", "arguments": "{x"}]',
            "\ud800",
            'USER: hi\nASSISTANT: <functioncall> {"name": "f", "arguments": \'{"a": 1}\'}',
            "nan",
            "1e999",
            "[" * 300,
        ]
    )
    | st.text(max_size=12)
    | st.sampled_from(VOCAB)
)
_scalars = st.none() | st.booleans() | st.integers() | st.floats() | _weird_text
RAW = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(VOCAB) | st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RAW)
def test_importers_raise_only_record_errors(record: Any) -> None:
    for name, fmt in FORMATS.items():
        try:
            t = fmt.convert(record, Context(source="fuzz"))
        except RecordError as e:
            assert e.rule in IMPORT_RULES and e.message, (name, e)
        else:
            assert t.conversation, name


@SETTINGS
@given(
    st.lists(
        st.binary(max_size=40) | RAW.map(lambda v: json.dumps(v).encode()), min_size=1, max_size=8
    )
)
def test_arbitrary_lines_through_every_importer(raw_lines: list[bytes]) -> None:
    body = b"\n".join(line.replace(b"\n", b" ") for line in raw_lines) + b"\n"
    # a leading UTF-8 BOM marks the encoding (readers drop it), it is not a record
    records = sum(1 for line in body.removeprefix(b"\xef\xbb\xbf").split(b"\n") if line.strip())
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        src.write_bytes(body)
        for fmt in FORMATS:
            report = convert_file(src, fmt, Path(tmp) / "o.jsonl", Path(tmp) / "r.jsonl")
            assert report.read == records == report.converted + report.rejected
            assert "internal_error" not in report.rules
            checked = verify_file(src, Path(tmp) / "g.jsonl", Path(tmp) / "b.jsonl", fmt=fmt)
            assert checked.read == records == checked.good + checked.rejected
