"""The ``trajectories`` suite on real data: the oracle scores 100%, a backend that never calls
scores 0 where calls are expected, failures are counted, runs resume, bad input is named."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_formats import FIXTURES

from xlam import SAMPLE_DATA_DIR
from xlam.data.formats import Reject, import_records
from xlam.data.schema import SchemaError, Trajectory
from xlam.eval.backends.oracle import ConstantBackend, OracleBackend
from xlam.eval.core import Backend, Completion, Request
from xlam.eval.suites.trajectories import METRICS, TrajectorySuite, trajectory_kind
from xlam.serving.parser import parse_tool_calls

SAMPLES = [SAMPLE_DATA_DIR / f"{n}.jsonl" for n in ("fc_single", "multi_turn", "chat")]


class ScriptBackend(Backend):
    """Answers with ``answer(request)``; counts its batches."""

    name = "script"

    def __init__(self, answer: Callable[[Request], Completion], batch_size: int = 8) -> None:
        self.answer = answer
        self.batch_size = batch_size
        self.batches: list[int] = []

    def generate(self, requests: list[Request]) -> list[Completion]:
        self.batches.append(len(requests))
        return [self.answer(r) for r in requests]


def run(suite: TrajectorySuite, backend: Backend, skip: set[str] | None = None) -> list[dict]:
    """Verdicts as ``items.jsonl`` holds them (through JSON)."""
    out: list[dict] = []
    suite.run(backend, skip or set(), lambda v: out.append(json.loads(json.dumps(v.to_dict()))))
    return out


def raw_turns(paths: list[Path]) -> list[tuple[str, bool]]:
    """``(source, has calls)`` of every assistant turn, read from the JSON directly."""
    turns = []
    for p in paths:
        for line in p.read_text().splitlines():
            rec = json.loads(line)
            for m in rec["conversation"]:
                if m["role"] == "assistant":
                    turns.append((rec["source"], bool(m.get("tool_calls"))))
    return turns


def traj(tid: str, conversation: list[dict], tools: list[dict] | None = None, **kw) -> Trajectory:
    return Trajectory.from_dict(
        {
            "unique_trajectory_id": tid,
            "source": kw.pop("source", "hand"),
            "tools": tools or [],
            "conversation": conversation,
            **kw,
        }
    )


def fn_call(name: str, cid: str = "", **args: Any) -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
AGENT = traj(
    "agent",
    [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "tool_calls": [fn_call("get_weather", "a", city="Paris")]},
        {"role": "tool", "tool_call_id": "a", "name": "get_weather", "content": "sun"},
        {
            "role": "assistant",
            "content": "Now Rome, for two days.",
            "tool_calls": [
                fn_call("get_weather", "b", city="Rome", days=1),
                fn_call("get_weather", "c", city="Rome", days=2),
            ],
        },
        {"role": "tool", "tool_call_id": "b", "name": "get_weather", "content": "rain"},
        {"role": "tool", "tool_call_id": "c", "name": "get_weather", "content": "snow"},
        {"role": "assistant", "content": "Paris: sun. Rome: rain, then snow."},
    ],
    [WEATHER],
    task_instruction="You are a weather bot.",
    source="handmade",
)


# ---------------------------------------------------------------------------------------


def test_requests_hold_the_gold_history_of_every_assistant_turn() -> None:
    suite = TrajectorySuite(trajectories=[AGENT])
    reqs = suite.requests()
    assert [r.id for r in reqs] == suite.ids() == ["agent#0", "agent#1", "agent#2"]
    assert [m["role"] for m in reqs[0].messages] == ["system", "user"]
    assert reqs[0].messages[0]["content"] == "You are a weather bot."
    assert [m["role"] for m in reqs[2].messages] == [
        "system", "user", "assistant", "tool", "assistant", "tool", "tool"
    ]  # fmt: skip
    assert reqs[2].messages[-1]["content"] == "snow"
    assert reqs[1].gold == [
        {"name": "get_weather", "arguments": {"city": "Rome", "days": 1}},
        {"name": "get_weather", "arguments": {"city": "Rome", "days": 2}},
    ]
    assert (reqs[2].gold, reqs[2].gold_text) == (None, "Paris: sun. Rome: rain, then snow.")
    assert all(r.tools == AGENT.tools for r in reqs) and AGENT.tool_names() == ["get_weather"]
    verdicts = run(suite, OracleBackend())
    assert [v["extra"]["final"] for v in verdicts] == [False, False, True]
    assert [v["extra"]["expects_call"] for v in verdicts] == [True, True, False]
    assert {v["extra"]["kind"] for v in verdicts} == {"multi_step"}
    assert (
        {v["category"] for v in verdicts}
        == {v["extra"]["source"] for v in verdicts}
        == {"handmade"}
    )


def test_trajectory_kinds() -> None:
    user = {"role": "user", "content": "hi"}
    text = {"role": "assistant", "content": "hello"}
    tool_msg = {"role": "tool", "tool_call_id": "x", "name": "get_weather", "content": "ok"}
    one = {"role": "assistant", "tool_calls": [fn_call("get_weather", city="A")]}
    two = {"role": "assistant", "tool_calls": [fn_call("get_weather", city="A")] * 2}
    assert trajectory_kind(traj("k", [user, text])) == "chat"
    assert trajectory_kind(traj("k", [user, text], [WEATHER])) == "no_call"
    assert trajectory_kind(traj("k", [user, one, tool_msg, text], [WEATHER])) == "single_call"
    assert trajectory_kind(traj("k", [user, two], [WEATHER])) == "parallel"
    assert trajectory_kind(traj("k", [user, one, tool_msg, one], [WEATHER])) == "multi_step"
    assert trajectory_kind(AGENT) == "multi_step"


class ApiOracle(Backend):
    """The oracle's gold as structured calls, the way a chat API returns them."""

    name = "api_oracle"

    def generate(self, requests: list[Request]) -> list[Completion]:
        return [
            Completion(calls=r.gold) if r.gold else Completion(r.gold_text or "ok")
            for r in requests
        ]


@pytest.mark.parametrize("backend", [OracleBackend(), ApiOracle()], ids=["text", "api"])
def test_oracle_scores_100_percent_on_the_embedded_samples(backend: Backend) -> None:
    suite = TrajectorySuite(SAMPLES)
    verdicts = run(suite, backend)
    assert [v["id"] for v in verdicts] == suite.ids()
    assert len(verdicts) == len(raw_turns(SAMPLES))  # one item per assistant turn
    bad = [(v["id"], v["error_type"], v["detail"]) for v in verdicts if not v["valid"]]
    assert not bad
    summary = suite.summarize(verdicts)
    assert summary["metrics"] == dict.fromkeys(METRICS, 1.0)
    assert summary["accuracy"] == 1.0
    assert set(summary["by_kind"]) == {"chat", "no_call", "single_call", "parallel", "multi_step"}
    assert (
        set(summary["by_source"])
        == set(summary["categories"])
        == {
            "fc_single",
            "multi_turn",
            "chat",
        }
    )
    for table in (*summary["by_kind"].values(), *summary["by_source"].values()):
        assert all(table[k] == 1.0 for k in METRICS if k in table)
    assert sum(t["n"] for t in summary["by_kind"].values()) == len(verdicts)
    assert summary["counts"]["call_turns"] == sum(c for _, c in raw_turns(SAMPLES))


def test_a_backend_that_never_calls_scores_zero_where_calls_are_expected() -> None:
    suite = TrajectorySuite(SAMPLES)
    verdicts = run(suite, ConstantBackend())
    turns = raw_turns(SAMPLES)
    for v in verdicts:
        assert v["extra"]["relevance_ok"] == (not v["extra"]["expects_call"])
        assert v["valid"] == (not v["extra"]["expects_call"])
        assert v["error_type"] == ("missed_call" if v["extra"]["expects_call"] else None)
    m = suite.summarize(verdicts)["metrics"]
    no_call_share = sum(not c for _, c in turns) / len(turns)
    assert m["call_accuracy"] == m["tool_name_accuracy"] == 0.0
    assert "argument_accuracy" not in m  # no turn got the names right: nothing to measure
    assert m["relevance_accuracy"] == pytest.approx(no_call_share)
    assert m["turn_accuracy"] == pytest.approx(no_call_share)
    assert m["answer_rate"] == 1.0
    # An empty answer is not an answer.
    silent = suite.summarize(run(suite, ConstantBackend(text="")))
    assert silent["metrics"]["answer_rate"] == 0.0
    assert silent["errors"]["no_answer"] == silent["counts"]["final_text_turns"] > 0


def _gold_text_misread(req: Request) -> bool:
    """The parser does not read this gold text answer back as the same plain text."""
    p = parse_tool_calls(req.gold_text or "I cannot help with that.")
    return bool(p.error or p.calls or not (p.content or "").strip())


@pytest.mark.parametrize("rel", sorted(FIXTURES))
def test_oracle_on_real_datasets(shared_fixtures: Path, rel: str) -> None:
    results = [r for r, _, _ in import_records(shared_fixtures / "datasets" / rel, FIXTURES[rel])]
    assert not [r for r in results if isinstance(r, Reject)]
    suite = TrajectorySuite(trajectories=results)
    verdicts = run(suite, OracleBackend())
    summary = suite.summarize(verdicts)
    m = summary["metrics"]
    if summary["counts"]["call_turns"]:
        assert m["call_accuracy"] == m["tool_name_accuracy"] == m["argument_accuracy"] == 1.0
    # Every miss is a gold text our parser reads otherwise (a JSON answer with a "name" key,
    # a stray "</think>"): the data, not the scoring.
    misread = {r.id for r in suite.requests() if r.gold is None and _gold_text_misread(r)}
    assert {v["id"] for v in verdicts if not v["valid"]} == misread
    assert len(misread) <= 1


def test_failures_are_counted_with_their_error_type() -> None:
    answers = {
        "agent#0": Completion(text='[{"name": "get_weather", "arguments": {"city": '),
        "agent#1": Completion(
            text='[{"name": "get_weather", "arguments": {"city": "Rome", "days": 1}}, '
            '{"name": "get_forecast", "arguments": {"city": "Rome"}}]'
        ),
        "agent#2": Completion(text=""),
        "agent2#0": Completion(error="HTTP 500 after 3 tries"),
        "agent2#1": Completion(text='[{"name": "get_weather", "arguments": {"city": "Rome"}}]'),
        "agent2#2": Completion(
            text='<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>'
        ),
    }
    agent2 = Trajectory.from_dict({**AGENT.to_dict(), "unique_trajectory_id": "agent2"})
    suite = TrajectorySuite(trajectories=[AGENT, agent2])
    verdicts = {v["id"]: v for v in run(suite, ScriptBackend(lambda r: answers[r.id]))}
    got = {
        k: (v["valid"], v["error_type"], v["extra"]["relevance_ok"]) for k, v in verdicts.items()
    }
    assert got == {
        "agent#0": (False, "parse_error", True),  # truncated call: attempted, unparseable
        "agent#1": (False, "wrong_function", True),
        "agent#2": (False, "no_answer", True),
        "agent2#0": (False, "backend_error", False),
        "agent2#1": (False, "wrong_count", True),
        "agent2#2": (False, "hallucinated_call", False),
    }
    assert verdicts["agent#2"]["extra"]["answered"] is False
    assert verdicts["agent2#0"]["detail"] == "HTTP 500 after 3 tries"
    assert verdicts["agent2#2"]["calls"] == [{"name": "get_weather", "arguments": {}}]
    m = suite.summarize(list(verdicts.values()))
    assert m["errors"] == {
        "parse_error": 1,
        "wrong_function": 1,
        "no_answer": 1,
        "backend_error": 1,
        "wrong_count": 1,
        "hallucinated_call": 1,
    }
    assert m["metrics"]["relevance_accuracy"] == 4 / 6


def test_metrics_separate_names_from_arguments() -> None:
    """Every third call turn renames a function, every third adds an argument."""
    suite = TrajectorySuite(SAMPLES)
    call_ids = [r.id for r in suite.requests() if r.gold]
    which = {rid: i % 3 for i, rid in enumerate(call_ids)}

    def answer(r: Request) -> Completion:
        if not r.gold:
            return Completion(text=r.gold_text or "ok")
        calls = [dict(c) for c in r.gold]
        if which[r.id] == 0:
            calls[0]["name"] += "_v2"
        elif which[r.id] == 1:
            calls[0]["arguments"] = {**calls[0]["arguments"], "zz_extra": 1}
        return Completion(calls=calls)

    summary = suite.summarize(run(suite, ScriptBackend(answer)))
    n = len(call_ids)
    named = sum(k != 0 for k in which.values())
    right = sum(k == 2 for k in which.values())
    m = summary["metrics"]
    assert m["tool_name_accuracy"] == pytest.approx(named / n)
    assert m["argument_accuracy"] == pytest.approx(right / named)
    assert m["call_accuracy"] == pytest.approx(right / n)
    assert m["relevance_accuracy"] == m["answer_rate"] == 1.0
    assert summary["errors"] == {"wrong_function": n - named, "extra_argument": named - right}


def test_a_killed_run_resumes_by_skipping_emitted_ids() -> None:
    suite = TrajectorySuite(SAMPLES, batch_size=7)
    oracle = OracleBackend(batch_size=100)

    class Dies(ScriptBackend):
        def generate(self, requests: list[Request]) -> list[Completion]:
            if len(self.batches) == 2:
                raise KeyboardInterrupt
            return super().generate(requests)

    first: list[dict] = []
    dying = Dies(lambda r: oracle.generate([r])[0])
    with pytest.raises(KeyboardInterrupt):
        suite.run(dying, set(), lambda v: first.append(v.to_dict()))
    assert dying.batches == [7, 7] and len(first) == 14  # all scored batches were emitted
    rest = run(suite, ScriptBackend(lambda r: oracle.generate([r])[0]), {v["id"] for v in first})
    assert [v["id"] for v in first + rest] == suite.ids()
    assert suite.summarize(first + rest) == suite.summarize(run(suite, oracle))


def test_limit_and_batch_size() -> None:
    suite = TrajectorySuite(SAMPLES[:1], limit=3)
    assert {i.split("#")[0] for i in suite.ids()} == {f"fc_single-000{k}" for k in range(3)}
    backend = ScriptBackend(lambda r: Completion(text="x"), batch_size=2)
    run(TrajectorySuite(SAMPLES[1:2]), backend)
    assert set(backend.batches[:-1]) == {2}  # the backend's batch size by default
    backend.batches.clear()
    run(TrajectorySuite(SAMPLES[1:2], batch_size=5), backend)
    assert set(backend.batches[:-1]) == {5}


def test_bad_lines_name_file_line_and_rule(tmp_path: Path) -> None:
    good = SAMPLES[0].read_text().splitlines()[0]
    path = tmp_path / "held_out.jsonl"
    for bad, rule in [
        ('{"unique_trajectory_id": "x", "conversation": []}', "'conversation' must be a non-empty"),
        ('{"unique_trajectory_id": "x", "conversation": [', "invalid JSON"),
        (
            '{"unique_trajectory_id": "x", "conversation": [{"role": "robot"}]}',
            "unknown role 'robot'",
        ),
    ]:
        path.write_text(f"{good}\n\n{bad}\n{good}\n")
        with pytest.raises(SchemaError, match=rf"held_out\.jsonl:3: .*{rule}"):
            TrajectorySuite(path)
    path.write_text(f"{good}\n")
    same = Trajectory.from_json(good)
    with pytest.raises(SchemaError, match=rf"duplicate unique_trajectory_id '{same.id}'"):
        TrajectorySuite(path, trajectories=[same])
    path.write_text("\n")
    with pytest.raises(SchemaError, match="no trajectory"):
        TrajectorySuite(path)
