"""The shortcut of ``convert`` and ``convert --verify`` (xlam_fc_60k) changes nothing: every
output file and every count is byte for byte what the general path gives, for plain records
(which take the shortcut) and for every odd or broken one (which must not)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlam.data.formats import convert_file, fastpath, get_importer, import_records
from xlam.data.formats.base import Context
from xlam.data.formats.fastpath import ToolTable
from xlam.data.formats.xlam_fc_60k import fast_convert
from xlam.data.verify import Verifier, verify_file

pytestmark = pytest.mark.skipif(not fastpath.AVAILABLE, reason="needs orjson.Fragment")


@contextmanager
def shortcut(enabled: bool) -> Iterator[None]:
    saved = fastpath.AVAILABLE
    fastpath.AVAILABLE = enabled
    fastpath.TOOLS.clear()
    try:
        yield
    finally:
        fastpath.AVAILABLE = saved
        fastpath.TOOLS.clear()


def outputs(src: Path, work: Path, fast: bool, **verifier: Any) -> dict[str, Any]:
    """Every file and report of convert, convert --verify, and verify of the converted file."""
    work.mkdir(parents=True, exist_ok=True)
    with shortcut(fast):
        conv = convert_file(src, "xlam_fc_60k", work / "conv.jsonl", work / "conv.rej.jsonl")
        fused = verify_file(
            src, work / "good.jsonl", work / "bad.jsonl", Verifier(**verifier), fmt="xlam_fc_60k"
        )
        # Twice through one verifier: the second pass sees every id again.
        again = Verifier(**verifier)
        verify_file(src, work / "g1.jsonl", work / "b1.jsonl", again, fmt="xlam_fc_60k")
        twice = verify_file(src, work / "g2.jsonl", work / "b2.jsonl", again, fmt="xlam_fc_60k")
    files = {p.name: p.read_bytes() for p in sorted(work.iterdir())}
    return {"conv": conv.to_dict(), "fused": fused.to_dict(), "twice": twice.to_dict(), **files}


def assert_same(lines: list[bytes], **verifier: Any) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp())
    try:
        src = tmp / "in.jsonl"
        src.write_bytes(b"\n".join(lines) + b"\n")
        general = outputs(src, tmp / "general", False, **verifier)
        fast = outputs(src, tmp / "fast", True, **verifier)
    finally:
        shutil.rmtree(tmp)
    assert general.keys() == fast.keys()
    for key in general:
        assert fast[key] == general[key], key
    return fast


def tool(name: str, params: dict[str, Any], description: str = "Does things.") -> dict[str, Any]:
    return {"name": name, "description": description, "parameters": params}


WEATHER = tool(
    "get_weather",
    {
        "city": {"description": "The city.", "type": "str", "default": "Paris"},
        "days": {"description": "How many days.", "type": "int, optional"},
        "units": {"description": "Units.", "type": "List[str]"},
    },
)
SEARCH = tool("search", {"query": {"description": "What.", "type": "str"}})
NASTY = tool(  # a description holding the separator the shortcut splits on, and quotes
    "nasty",
    {"x": {"description": 'a "}, {" b', "type": "float"}},
    description='x"}, {"name": "search", "description": "Does things.", "parameters": {',
)


def record(rid: Any, calls: list[Any], tools: list[Any], **extra: Any) -> dict[str, Any]:
    out = {"id": rid, "query": "What is the weather?", "answers": json.dumps(calls)}
    out["tools"] = json.dumps(tools)
    out.update(extra)
    return out


def line(value: Any, **kw: Any) -> bytes:
    return json.dumps(value, **kw).encode("utf-8", "surrogatepass")


GOOD_CALL = {"name": "get_weather", "arguments": {"city": "Rome", "units": ["c"]}}


def test_plain_records_take_the_shortcut_and_match_the_importer() -> None:
    rec = record(7, [GOOD_CALL, {"name": "search", "arguments": {"query": "q"}}], [WEATHER, SEARCH])
    origin = {"file": "f", "line": 1, "index": 0}
    table = ToolTable()
    for _ in range(2):  # the first time parses the tools, the second finds them by text
        fast = fast_convert(rec, origin, "xlam_fc_60k", table)
        assert fast is not None
        traj = get_importer("xlam_fc_60k")(rec, Context("xlam_fc_60k", "0", origin))
        assert (
            fastpath.encode(fast.out)
            == json.dumps(traj.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
        )
        assert fast.tid == traj.unique_trajectory_id
    assert Verifier().check_fast(fast) == fastpath.encode(fast.out)


def test_split_inside_a_string_is_never_taken_for_tools() -> None:
    table = ToolTable()
    for tools in ([NASTY], [NASTY, SEARCH], [SEARCH, NASTY, WEATHER], [SEARCH], [WEATHER]):
        text = json.dumps(tools)
        for _ in range(2):
            got = table.from_text(text)
            assert got is not None
            assert [t.name for t in got] == [t["name"] for t in tools]


def test_one_pass_counts_and_files_match_the_general_path() -> None:
    plain = [line(record(i, [GOOD_CALL], [WEATHER, SEARCH])) for i in range(5)]
    odd = [
        line(record(10, [GOOD_CALL], [NASTY, WEATHER, SEARCH])),
        line(record(11, [GOOD_CALL], [SEARCH, NASTY, WEATHER], split="train", n=3)),
        line(record(1, [GOOD_CALL], [WEATHER])),  # repeated id
        line(record(None, [GOOD_CALL], [WEATHER])),  # no id: one from the origin
        line({k: v for k, v in record(0, [GOOD_CALL], [WEATHER]).items() if k != "id"}),
        line(record("", [GOOD_CALL], [WEATHER])),
        line(record(True, [GOOD_CALL], [WEATHER])),
        line(record(1.5, [GOOD_CALL], [WEATHER])),
        line(record("abc", [GOOD_CALL], [WEATHER])),
        line(record("abc", [GOOD_CALL], [WEATHER])),
        line(record(12, [{**GOOD_CALL, "id": "c1"}, {**GOOD_CALL, "id": "c1"}], [WEATHER])),
        line(record(13, [{"function": GOOD_CALL}], [WEATHER])),
        line(
            record(
                14, [{"name": "get_weather", "arguments": '{"city": "x", "units": []}'}], [WEATHER]
            )
        ),
        line(
            record(
                15, [{"name": "get_weather", "parameters": {"city": "x", "units": []}}], [WEATHER]
            )
        ),
        line(record(16, [{"name": "search", "arguments": None}], [SEARCH])),
        line(record(17, [{"name": "nope", "arguments": {}}], [WEATHER])),
        line(record(18, [{"name": "get_weather", "arguments": {"city": 3}}], [WEATHER])),
        line(record(19, [GOOD_CALL], [WEATHER, WEATHER])),
        line(record(20, [], [WEATHER])),
        line(record(21, [GOOD_CALL], [])),
        line(record(22, [GOOD_CALL] * 70, [WEATHER])),
        line(record(23, [{"name": " ", "arguments": {}}], [WEATHER])),
        line(record(24, [GOOD_CALL], [tool("bad", {"type": "array"})])),
        line(record(25, [GOOD_CALL], [{"description": "no name"}])),
        line(record(26, [GOOD_CALL], [WEATHER, 3])),
        line(
            record(
                27,
                [{"name": "get_weather", "arguments": {"city": "x", "units": [2**70]}}],
                [WEATHER],
            )
        ),
        line(
            record(
                28, [GOOD_CALL], [WEATHER, tool("big", {"a": {"type": "int", "default": 2**70}})]
            )
        ),
        line(record(29, [GOOD_CALL], [WEATHER], note=2**70)),
        line(record(30, [GOOD_CALL], [WEATHER], note="\ud800")),
        line({**record(31, [GOOD_CALL], [WEATHER]), "query": "lone \ud800 surrogate"}),
        line({**record(32, [GOOD_CALL], [WEATHER]), "query": ["not text"]}),
        line({**record(33, [GOOD_CALL], [WEATHER]), "tools": [WEATHER]}),
        line({**record(34, [GOOD_CALL], [WEATHER]), "tools": json.dumps(WEATHER)}),
        line({**record(35, [GOOD_CALL], [WEATHER]), "tools": " " + json.dumps([WEATHER])}),
        line(
            {
                **record(36, [GOOD_CALL], [WEATHER]),
                "tools": json.dumps([WEATHER], separators=(",", ":")),
            }
        ),
        line({**record(37, [GOOD_CALL], [WEATHER]), "answers": [GOOD_CALL]}),
        line({**record(38, [GOOD_CALL], [WEATHER]), "answers": json.dumps(GOOD_CALL)}),
        line({**record(39, [GOOD_CALL], [WEATHER]), "answers": "[{"}),
        line({**record(40, [GOOD_CALL], [WEATHER]), "answers": "[NaN]"}),
        line({**record(41, [GOOD_CALL], [WEATHER]), "answers": " "}),
        line({**record(42, [GOOD_CALL], [WEATHER]), "tools": "[{"}),
        line({**record(43, [GOOD_CALL], [WEATHER]), "query": "Ünïcødé ✓ " * 50}),
        line(record(44, [GOOD_CALL], [tool("get_weather", {"x": {"type": "str", "default": 1}})])),
        line(
            record(45, [GOOD_CALL], [tool("get_weather", {"x": {"type": "str", "default": True}})])
        ),
        line(
            record(46, [GOOD_CALL], [tool("get_weather", {"x": {"type": "str", "default": 1.0}})])
        ),
        line(record(48, [GOOD_CALL], [WEATHER, tool("huge", {}, "x" * 70_000)])),
        line(record(49, [GOOD_CALL], [tool("huge", {}, "x" * 70_000), WEATHER])),
        line([1, 2]),
        b'{"id": 47, "query": "truncated',
        b"",
        b"\xff\xfe not utf-8",
    ]
    fast = assert_same(plain + odd + plain)
    assert fast["fused"]["good"] >= 10
    assert_same(plain + odd, max_chars=1200)
    assert_same(plain + odd, check_ids=False)
    assert_same(plain + odd, max_chars=None)


# --------------------------------------------------------------------------------------
# Hypothesis: random xlam-60k-like records from a small tool pool, with random faults.

_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFF)
    | st.sampled_from('"{}[],: \\'),
    max_size=12,
)
_VALUE = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(-1e6, 1e6) | _TEXT
_TYPE = st.sampled_from(
    ["str", "int", "float", "bool", "str, optional", "List[int]", "Dict[str, Any]", "Any", ""]
)


@st.composite
def _tool(draw: Any) -> dict[str, Any]:
    params = {}
    for pname in draw(
        st.lists(st.sampled_from(["a", "b", "c", "type", "properties"]), max_size=3, unique=True)
    ):
        spec: dict[str, Any] = {"description": draw(_TEXT), "type": draw(_TYPE)}
        if draw(st.booleans()):
            spec["default"] = draw(_VALUE)
        params[pname] = spec
    return tool(draw(st.sampled_from(["f", "g", "h", ""])), params, draw(_TEXT))


@st.composite
def _lines(draw: Any) -> list[bytes]:
    pool = draw(st.lists(_tool(), min_size=1, max_size=4))
    lines = []
    for i in range(draw(st.integers(1, 8))):
        tools = draw(st.lists(st.sampled_from(pool), max_size=3))
        calls = [
            {
                "name": draw(st.sampled_from(["f", "g", "h", "x"])),
                "arguments": draw(
                    st.dictionaries(st.sampled_from(["a", "b", "c"]), _VALUE, max_size=3)
                ),
            }
            for _ in range(draw(st.integers(0, 3)))
        ]
        rid = draw(st.sampled_from([i, i % 3, str(i), None, ""]))
        rec = record(rid, calls, tools)
        if draw(st.booleans()):
            rec["tools"] = json.dumps(
                tools, separators=draw(st.sampled_from([(", ", ": "), (",", ":")]))
            )
        lines.append(line(rec, ensure_ascii=draw(st.booleans())))
    return lines


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_lines(), st.sampled_from([None, 400, 200_000]))
def test_random_records_match_the_general_path(lines: list[bytes], max_chars: int | None) -> None:
    assert_same(lines, max_chars=max_chars)


def test_import_records_shortcut_errors_take_the_general_path(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(line(record(1, [GOOD_CALL], [WEATHER])) + b"\n")

    def boom(record: Any, origin: dict[str, Any]) -> Any:
        raise RuntimeError("shortcut bug")

    results = list(import_records(src, "xlam_fc_60k", fast=boom))
    assert len(results) == 1 and results[0][0].unique_trajectory_id == "xlam_fc_60k-1"


def test_shortcut_is_taken_for_plain_records(tmp_path: Path) -> None:
    class Counting(Verifier):
        checked = 0

        def check(self, traj: Any, encoded: Any = None) -> Any:
            self.checked += 1
            return super().check(traj, encoded)

    src = tmp_path / "in.jsonl"
    plain = [line(record(i, [GOOD_CALL], [WEATHER, SEARCH])) for i in range(6)]
    odd = line(record(9, [{"name": "nope", "arguments": {}}], [WEATHER]))
    src.write_bytes(b"\n".join([*plain, odd]) + b"\n")
    verifier = Counting()
    report = verify_file(
        src, tmp_path / "g.jsonl", tmp_path / "b.jsonl", verifier, fmt="xlam_fc_60k"
    )
    assert (report.good, report.rejected) == (6, 1)
    assert verifier.checked == (1 if fastpath.AVAILABLE else 7)
