"""Turn-level preference pairs: the format, the conversational importer, the generators from
synthetic data (every rejected call proven wrong) and from eval results, and the CLI."""

from __future__ import annotations

import copy
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_schema import _message, _text, _tool

from xlam.data.cli import main as xlam_data
from xlam.data.formats import convert_file, fastjson
from xlam.data.formats.pairs import PAIR_FORMATS
from xlam.data.preference import PreferencePair, read_pairs, write_pairs
from xlam.data.schema import Message, SchemaError, Trajectory
from xlam.eval.backends.oracle import OracleBackend
from xlam.eval.core import Completion, Request, Verdict
from xlam.eval.pairs import EvalPairReport, eval_pairs
from xlam.eval.results import ResultStore
from xlam.eval.scoring import compare_calls
from xlam.eval.suites.synth import SynthSuite
from xlam.eval.suites.trajectories import TrajectorySuite
from xlam.synth.core import DOMAINS, EpisodeBuilder
from xlam.synth.env import ToolEnv
from xlam.synth.generate import generate, load_domains, turn_calls
from xlam.synth.pairs import PERTURBATIONS, SynthPairReport, prove_wrong, synth_pairs

# --------------------------------------------------------------------------------------
# The format: lossless round trip, and every rule of from_dict named with its line.

# Any message as an assistant one (every field is kept whatever the role), and as the
# history's last message (a user or tool turn, without calls).
_assistant = _message.map(lambda m: replace(m, role="assistant"))
_last = _message.map(
    lambda m: replace(m, role=m.role if m.role == "tool" else "user", tool_calls=[])
)
_pair = st.builds(
    lambda hist, last, chosen, rejected, **kw: PreferencePair(
        conversation=[*hist, last], chosen=chosen, rejected=rejected, **kw
    ),
    st.lists(_message, max_size=4),
    _last,
    _assistant,
    _assistant,
    unique_trajectory_id=st.text(min_size=1, max_size=20),
    source=_text,
    task_instruction=_text,
    tools=st.lists(_tool, max_size=2),
    metadata=st.dictionaries(_text, _text, max_size=3),
).filter(lambda p: p.chosen != p.rejected)


@settings(max_examples=100, deadline=None)
@given(_pair)
def test_any_pair_round_trips(pair: PreferencePair) -> None:
    assert PreferencePair.from_json(pair.to_json()) == pair
    again = PreferencePair.from_dict(fastjson.loads(fastjson.dumps(pair.to_dict())))
    assert again == pair and again.to_dict() == pair.to_dict()
    for side in ("chosen", "rejected"):
        done = pair.completed(side)
        assert done.conversation == [*pair.conversation, getattr(pair, side)]
        assert Trajectory.from_json(done.to_json()) == done


def test_pairs_file_round_trips(tmp_path: Path) -> None:
    pair = PreferencePair.from_dict(GOOD)
    assert write_pairs([pair, pair], tmp_path / "p.jsonl") == 2
    assert list(read_pairs(tmp_path / "p.jsonl")) == [pair, pair]


def test_the_documented_example_is_a_valid_pair() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "trajectory_format.md").read_text()
    section = docs[docs.index("## Preference pairs") :]
    block = section[
        section.index("```json\n") + 8 : section.index("```", section.index("```json") + 7)
    ]
    pair = PreferencePair.from_dict(json.loads(block))
    assert pair.rejected.tool_calls[0].arguments == {"text": "ox and"}


GOOD: dict[str, Any] = {
    "unique_trajectory_id": "p-1",
    "source": "t",
    "conversation": [{"role": "user", "content": "2+2?"}],
    "chosen": {"role": "assistant", "content": "4"},
    "rejected": {"role": "assistant", "content": "5"},
}


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([], "preference pair must be a JSON object, got list"),
        (_without("chosen"), "missing 'chosen' (an assistant message)"),
        (_without("rejected"), "missing 'rejected' (an assistant message)"),
        ({**GOOD, "chosen": "4"}, "'chosen': message must be an object, got str"),
        (
            {**GOOD, "rejected": {"role": "robot"}},
            "'rejected': unknown role 'robot' (expected one of user, assistant, tool)",
        ),
        (
            {**GOOD, "chosen": {"role": "user", "content": "4"}},
            "'chosen' must be an assistant message, not user",
        ),
        (
            {**GOOD, "rejected": {"role": "tool", "content": "5"}},
            "'rejected' must be an assistant message, not tool",
        ),
        (
            {**GOOD, "conversation": [*GOOD["conversation"], {"role": "assistant"}]},
            "the history must end with a user or tool message",
        ),
        ({**GOOD, "rejected": GOOD["chosen"]}, "'chosen' and 'rejected' are the same message"),
        (_without("conversation"), "'conversation' must be a non-empty list of messages"),
        (_without("unique_trajectory_id"), "missing or empty 'unique_trajectory_id'"),
        (
            {
                **GOOD,
                "chosen": {"role": "assistant", "tool_calls": [{"name": "f", "arguments": 1}]},
            },
            "'chosen': arguments of call 'f' must be a JSON object, got int",
        ),
    ],
)
def test_every_rule_is_named_with_its_line(tmp_path: Path, bad: Any, message: str) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(SchemaError) as e:
        list(read_pairs(path))
    assert str(e.value) == f"{path}:3: {message}"


# --------------------------------------------------------------------------------------
# The conversational importer (TRL / HF preference datasets).

_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def _call(args: Any, call_id: str | None = None) -> dict[str, Any]:
    call = {"type": "function", "function": {"name": "get_weather", "arguments": args}}
    return {**call, "id": call_id} if call_id else call


_SAMPLE: list[Any] = [
    {  # system -> task_instruction, earlier call and result, JSON-string tools and arguments
        "id": "a",
        "prompt": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris, then Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [_call('{"city": "Paris"}')]},
            {"role": "tool", "content": '{"temp": 14}'},
        ],
        "chosen": [{"role": "assistant", "content": "", "tool_calls": [_call({"city": "Rome"})]}],
        "rejected": [{"role": "assistant", "tool_calls": [_call('{"city": "Paris"}', "x")]}],
        "tools": json.dumps(_TOOLS),
        "score": 0.5,
    },
    {"prompt": "hi", "chosen": "Hello!", "rejected": {"role": "assistant", "content": "Bye."}},
    {  # TRL's implicit prompt: the shared leading messages
        "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}],
        "tools": _TOOLS,
    },
    {"prompt": "x", "chosen": [], "rejected": "b"},
    {"prompt": "x", "chosen": "a", "rejected": "a"},
    {
        "prompt": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
        "chosen": "a",
        "rejected": "b",
    },
    {
        "prompt": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}],
        "chosen": "a",
        "rejected": "b",
    },
    {
        "prompt": "x",
        "chosen": {"role": "assistant", "tool_calls": [_call("{bad")]},
        "rejected": "b",
    },
    {"prompt": "x", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
    {"prompt": "x", "rejected": "b"},
    {"prompt": 3, "chosen": "a", "rejected": "b"},
    {"prompt": "x", "chosen": "a", "rejected": "b", "tools": "[{"},
    {"prompt": [{"role": "system", "content": "s"}], "chosen": "a", "rejected": "b"},
]
_EXPECTED_REJECTS = [
    (4, "pair_side", "'chosen' must hold one assistant message, got 0 messages"),
    (5, "pair_same", "'chosen' and 'rejected' are the same message"),
    (6, "pair_history", "the history must end with a user or tool message"),
    (7, "unknown_role", "prompt message 1 has unknown role 'robot'"),
    (
        8,
        "arguments_json",
        "'chosen': arguments of call 'get_weather' are not valid JSON: Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1)",
    ),
    (9, "pair_side", "'chosen' must be an assistant message, got 'user'"),
    (10, "missing_field", "no 'chosen' field"),
    (11, "field_type", "'prompt' must be a list of messages, a message or a string, got int"),
    (
        12,
        "tools_json",
        "'tools' is a string but not valid JSON: Expecting property name enclosed in double "
        "quotes: line 1 column 3 (char 2)",
    ),
    (13, "empty", "prompt: the record has no user, assistant or tool turn"),
    (14, "invalid_json", "not valid JSON: Expecting value at column 1"),
]


def _sample_file(tmp_path: Path) -> Path:
    path = tmp_path / "prefs.jsonl"
    lines = [json.dumps(r) for r in _SAMPLE] + ["not json"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_conversational_importer_maps_and_rejects(tmp_path: Path) -> None:
    src = _sample_file(tmp_path)
    out, rejects = tmp_path / "out.jsonl", tmp_path / "rej.jsonl"
    report = convert_file(src, PAIR_FORMATS["conversational"].convert, out, rejects, "prefs")
    assert (report.read, report.converted, report.rejected) == (14, 3, 11)
    assert report.read == report.converted + report.rejected
    got = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert [(r["origin"]["line"], r["rule"], r["message"]) for r in got] == _EXPECTED_REJECTS
    assert all(r["origin"]["file"] == str(src) for r in got)
    a, b, c = read_pairs(out)
    assert a.id == "prefs-a" and a.task_instruction == "Be brief."
    assert a.tools[0]["function"]["name"] == "get_weather"
    assert [m.role for m in a.conversation] == ["user", "assistant", "tool"]
    assert a.conversation[2].tool_call_id == a.conversation[1].tool_calls[0].id  # paired
    assert a.chosen.tool_calls[0].arguments == {"city": "Rome"}
    assert a.rejected.tool_calls[0].arguments == {"city": "Paris"}
    assert a.rejected.tool_calls[0].id == "x"
    assert a.chosen.tool_calls[0].id == a.rejected.tool_calls[0].id.replace("x", "call_3_0")
    assert a.metadata["native"] == {"score": 0.5}
    assert a.metadata["origin"] == {"file": str(src), "line": 1, "index": 0}
    assert (b.id, b.conversation, b.chosen.content, b.rejected.content) == (
        "prefs-prefs-1",
        [Message(role="user", content="hi")],
        "Hello!",
        "Bye.",
    )
    assert [m.content for m in c.conversation] == ["q"] and c.rejected.content == "b"


def test_parquet_pairs_are_read_like_jsonl(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "prompt": [{"role": "user", "content": f"q{i}"}],
            "chosen": [{"role": "assistant", "content": f"good {i}"}],
            "rejected": [{"role": "assistant", "content": f"bad {i}"}],
            "tools": json.dumps(_TOOLS),
        }
        for i in range(3)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    report = convert_file(
        tmp_path / "p.parquet",
        PAIR_FORMATS["conversational"].convert,
        tmp_path / "o.jsonl",
        tmp_path / "r.jsonl",
        "pq",
    )
    assert (report.read, report.converted) == (3, 3)
    pairs = list(read_pairs(tmp_path / "o.jsonl"))
    assert [p.rejected.content for p in pairs] == ["bad 0", "bad 1", "bad 2"]


def test_cli_convert_prints_counts_and_located_rejects(tmp_path: Path, capsys) -> None:
    src = _sample_file(tmp_path)
    out = tmp_path / "out.jsonl"
    assert xlam_data(["pairs", "convert", "--format", "conversational", str(src), str(out)]) == 0
    text = capsys.readouterr().out
    assert f"read 14  converted 3  rejected 11  -> {out}" in text
    assert f"{src}:4: pair_side: 'chosen' must hold one assistant message, got 0 messages" in text
    assert (tmp_path / "out.rejects.jsonl").exists()
    assert xlam_data(["pairs", "verify", str(out), "--out", str(tmp_path / "good.jsonl")]) == 0
    assert "read 3  good 3" in capsys.readouterr().out


def test_cli_verify_checks_the_chosen_side_fully_and_the_rejected_structurally(
    tmp_path: Path, capsys
) -> None:
    tools = {"tools": _TOOLS, "conversation": [{"role": "user", "content": "Paris?"}]}
    unknown = {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "nope"}}]}
    lines = [
        {**GOOD, **tools, "rejected": unknown},  # a wrong call is what a rejected side is
        {**GOOD, **tools, "rejected": unknown},  # the same id again
        {**GOOD, **tools, "unique_trajectory_id": "p-2", "chosen": unknown},
        {**GOOD, "unique_trajectory_id": "p-3", "rejected": {"role": "assistant"}},
        {**GOOD, "unique_trajectory_id": "p-4", "chosen": {"role": "user"}},
    ]
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert xlam_data(["pairs", "verify", str(src), "--out", str(tmp_path / "good.jsonl")]) == 0
    text = capsys.readouterr().out
    assert "read 5  good 1" in text and "rejected 4" in text
    assert f"{src}:2: duplicate_id: id 'p-1' seen before" in text
    assert f"{src}:3: unknown_tool: " in text
    assert f"{src}:4: empty_assistant: " in text
    assert f"{src}:5: schema: 'chosen' must be an assistant message, not user" in text


# --------------------------------------------------------------------------------------
# Pairs from synthetic data: every rejected call is proven wrong by executing it.


@pytest.fixture(scope="module")
def synth_trajs() -> list[dict[str, Any]]:
    return generate(64, 5, "train")


def _recheck(pair: PreferencePair) -> dict[str, list[str]]:
    """Independently of the generator: replay the history in a ToolEnv, run both sides
    from the same state, and require another observation or state for the rejected.

    Returns:
        Each side's observations.
    """
    meta = pair.metadata["synth"]
    env = ToolEnv()
    env.reset({**pair.history().to_dict(), "metadata": {"synth": meta}})
    for m in pair.conversation:
        if m.role == "assistant" and m.tool_calls:
            env.step([{"name": c.name, "arguments": c.arguments} for c in m.tool_calls])
    before = copy.deepcopy(env.state)
    obs = {}
    states = {}
    for side in ("chosen", "rejected"):
        env.state = copy.deepcopy(before)
        calls = [{"name": c.name, "arguments": c.arguments} for c in getattr(pair, side).tool_calls]
        obs[side] = env.step(calls)
        states[side] = json.dumps(env.state, sort_keys=True)
    assert obs["chosen"] != obs["rejected"] or states["chosen"] != states["rejected"], pair.id
    gold = [{"name": c.name, "arguments": c.arguments} for c in pair.chosen.tool_calls]
    bad = [{"name": c.name, "arguments": c.arguments} for c in pair.rejected.tool_calls]
    assert not compare_calls(bad, gold, pair.tools).valid, pair.id
    return obs


def _deposit_then_balance() -> dict[str, Any]:
    """A call turn whose result depends on an earlier one (no template has one yet): the
    proof must replay the history to get the gold observation."""
    load_domains()
    b = EpisodeBuilder(DOMAINS["bank"], DOMAINS["bank"].initial_state(random.Random(0)))
    b.offer("deposit", "get_balance", "withdraw")
    b.user("Deposit 100 into AC-72468, then tell me its balance.")
    b.call("deposit", {"account_id": "AC-72468", "amount": 100})
    out = b.call("get_balance", {"account_id": "AC-72468"})
    b.say(f"The balance is {out['balance']}.", values=[out["balance"]])
    meta = {"kind": "multi_step", "template": "test", "calls": turn_calls(b.conversation)}
    return b.trajectory("deposit-balance", "synth", meta)


def test_every_synth_rejected_is_proven_wrong(synth_trajs: list[dict[str, Any]]) -> None:
    trajs = [*synth_trajs, _deposit_then_balance()]
    report = SynthPairReport()
    pairs = list(synth_pairs(trajs, seed=0, per_turn=3, report=report))
    assert report.failed_checks == 0
    assert any(p.metadata["pair"]["from"] == "deposit-balance" for p in pairs)
    by_id = {t["unique_trajectory_id"]: t for t in trajs}
    kinds = {k: 0 for k in PERTURBATIONS}
    for p in pairs:
        info = p.metadata["pair"]
        kinds[info["perturbation"]] += 1
        src = Trajectory.from_dict(by_id[info["from"]])
        index = [i for i, m in enumerate(src.conversation) if m.role == "assistant"][info["turn"]]
        assert p.chosen == src.conversation[index] and p.conversation == src.conversation[:index]
        assert p.tools == src.tools and p.task_instruction == src.task_instruction
        obs = _recheck(p)
        # the replay from the rebuilt state gives the recorded observations, and the proof
        # names the first observation that differs
        n = len(p.chosen.tool_calls)
        assert obs["chosen"] == [m.content for m in src.conversation[index + 1 : index + 1 + n]]
        j = next((j for j, (a, b) in enumerate(zip(*obs.values())) if a != b), None)
        want = "the state after the turn differs from the gold's"
        if j is not None:
            want = f"call {j}: observation {obs['rejected'][j]} != gold {obs['chosen'][j]}"
        assert info["proof"] == want, p.id
    assert report.pairs == len(pairs) and all(kinds.values())
    assert kinds == {k: row["made"] for k, row in report.by_kind.items()}
    assert report.call_turns == sum(
        1 for t in trajs for turn in t["metadata"]["synth"]["calls"] if turn
    )
    # every kind tried on every call turn: made + unproven + no_candidate == call turns
    for row in report.by_kind.values():
        assert sum(row.values()) == report.call_turns
    assert sum(row["unproven"] for row in report.by_kind.values()) > 0


def _upper_episode(text: str) -> dict[str, Any]:
    load_domains()
    b = EpisodeBuilder(DOMAINS["text"], {})
    b.offer("to_upper", "to_lower")
    b.user(f"Upper-case {text!r}.")
    out = b.call("to_upper", {"text": text})
    b.say(f"It is {out['text']}.", values=[out["text"]])
    return b.trajectory("t-1", "synth", {"kind": "single", "calls": turn_calls(b.conversation)})


def test_a_perturbation_with_the_same_effect_is_not_proven() -> None:
    traj = _upper_episode("abc")
    # another value, same observation: the checker cannot prove it wrong
    assert prove_wrong(traj, 0, [{"name": "to_upper", "arguments": {"text": "ABC"}}]) is None
    assert prove_wrong(traj, 0, [{"name": "to_upper", "arguments": {"text": "abd"}}]) == (
        'call 0: observation {"text": "ABD"} != gold {"text": "ABC"}'
    )
    assert "InvalidArgument" in prove_wrong(traj, 0, [{"name": "to_upper", "arguments": {}}])
    assert prove_wrong(traj, 0, [{"name": "to_upper", "arguments": {"text": "abc"}}]) is None


def test_synth_pairs_cli_is_deterministic(tmp_path: Path, synth_trajs, capsys) -> None:
    src = tmp_path / "train.jsonl"
    broken = copy.deepcopy(synth_trajs[30])
    broken["metadata"]["synth"]["initial_state"] = {"changed": True}
    src.write_text("".join(json.dumps(t) + "\n" for t in [*synth_trajs[:30], broken]))
    outs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"{name}.jsonl"
        args = ["pairs", "from-synth", str(src), "--out", str(out), "--seed", str(seed)]
        assert xlam_data([*args, "--report", str(tmp_path / f"{name}.json")]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]
    assert "wrong_tool" in capsys.readouterr().out
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["pairs"] == len(outs[0].splitlines()) > 0
    assert report["seed"] == 1 and report["trajectories"] == 31
    assert report["failed_checks"] == 1 and report["failed_ids"][0].startswith(
        f"{broken['unique_trajectory_id']}: "
    )


# --------------------------------------------------------------------------------------
# Pairs from an eval run's items.jsonl, written by the real suite and result store.


class WrongOracle(OracleBackend):
    """The gold, except: every second call turn gets a changed argument, every third an
    unparseable call, and text turns answer with a call."""

    def generate(self, requests: list[Request]) -> list[Completion]:
        out = super().generate(requests)
        for k, (r, c) in enumerate(zip(requests, out, strict=True)):
            if r.gold and k % 3 == 0:
                c.text = "<tool_call>{oops"
            elif r.gold and k % 2 == 0:
                gold = copy.deepcopy(r.gold)
                key = sorted(gold[0]["arguments"])[0] if gold[0]["arguments"] else "x"
                gold[0]["arguments"][key] = "changed"
                c.text = json.dumps(gold)
            elif not r.gold and k % 2:
                c.text = json.dumps([{"name": "nothing", "arguments": {}}])
        return out


def _eval_run(run: Path, suite: Any, identity: dict[str, Any]) -> list[dict[str, Any]]:
    store = ResultStore(run, identity)
    suite.run(WrongOracle(batch_size=4), set(), store.write)
    store.write(Verdict(id="nope#0", category="x", valid=False, raw="?"))
    store.write(Verdict(id=suite.ids()[0], category="x", valid=False, error_type="backend_error"))
    store.close()
    return store.verdicts()


def test_eval_pairs_rebuild_the_request_history(tmp_path: Path, synth_trajs) -> None:
    data = tmp_path / "heldout.jsonl"
    data.write_text("".join(json.dumps(t) + "\n" for t in synth_trajs[:12]))
    suite = TrajectorySuite(path=data)
    items = _eval_run(
        tmp_path / "run",
        suite,
        {"suite": "trajectories", "suite_config": {"path": str(data)}},
    )
    report = EvalPairReport()
    pairs = list(eval_pairs(tmp_path / "run", report=report))
    unmapped = sum(report.unmapped.values())
    assert report.items == len(items) == report.valid + report.pairs + unmapped
    assert report.unmapped == {"unknown_trajectory": 1, "no_output": 1}
    wrong = [v for v in items if not v["valid"] and v["id"] in {r.id for r in suite.requests()}]
    assert len(pairs) == len(wrong) - 1 > 0  # the backend_error line is the one left out
    requests = {r.id: r for r in suite.requests()}
    verdicts = {v["id"]: v for v in items}
    for p in pairs:
        item_id = p.metadata["pair"]["item"]
        req, v = requests[item_id], verdicts[item_id]
        messages, tools = p.history().to_chat()
        assert messages == req.messages and tools == req.tools
        gold = [{"name": c.name, "arguments": c.arguments} for c in p.chosen.tool_calls]
        assert gold == (req.gold or []) and p.chosen.content == (req.gold_text or p.chosen.content)
        made = [{"name": c.name, "arguments": c.arguments} for c in p.rejected.tool_calls]
        assert made == (v["calls"] or [])
        if v["error_type"] == "parse_error":
            assert p.rejected.content == "<tool_call>{oops" and not made
        if made:  # the output was only the call list: no text around it
            assert p.rejected.content == "" and v["raw"].startswith("[{")
    kinds = {p.metadata["pair"]["error_type"] for p in pairs}
    assert {"parse_error", "wrong_value", "hallucinated_call"} <= kinds


def test_eval_pairs_of_a_generated_synth_run_via_the_cli(tmp_path: Path, capsys) -> None:
    suite = SynthSuite(n=8, seed=1, split="test")
    cfg = {"path": None, "n": 8, "seed": 1, "split": "test", "limit": None}
    items = _eval_run(tmp_path / "run", suite, {"suite": "synth", "suite_config": cfg})
    out = tmp_path / "pairs.jsonl"
    assert xlam_data(["pairs", "from-eval", str(tmp_path / "run"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    episodes_wrong = sum(1 for v in items if v["id"].endswith("#episode") and not v["valid"])
    valid = sum(1 for v in items if v["valid"])
    n = len(out.read_text().splitlines())
    assert f"items {len(items)}: valid {valid}, pairs {n}, unmapped {episodes_wrong + 2}" in text
    assert f"not_a_turn: {episodes_wrong}" in text and "unknown_trajectory: 1" in text
    assert all(p.metadata["synth"]["domain"] for p in read_pairs(out))
