"""APIGen's three checks: every generated trajectory passes them, and each kind of
corruption fails at the stage that owns it.

Stage owners: a broken record or a call to a tool the trajectory does not offer is a
**format** fault (no execution needed; ``xlam-data verify`` rejects both too); a recorded
observation that the implementation does not reproduce is an **execution** fault; calls
that differ from the ground truth (even when re-executed consistently) and answers that
lack or invent values are **semantic** faults.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import synth_testdom

from xlam.data.verify import Verifier
from xlam.synth.checks import (
    STAGES,
    CheckReport,
    check_all,
    check_execution,
    check_format,
    check_semantic,
    contains_word,
)
from xlam.synth.core import DOMAINS
from xlam.synth.generate import default_templates, generate


@pytest.fixture(scope="module")
def trajs() -> list[dict[str, Any]]:
    default_templates()  # loads the domains
    return generate(200, 21, "train") + generate(200, 21, "test")


def _rules(problems: list) -> set[str]:
    return {p.rule for p in problems}


def _first(trajs: list[dict[str, Any]], pred: Any) -> dict[str, Any]:
    return copy.deepcopy(next(t for t in trajs if pred(t)))


def _kind(kind: str) -> Any:
    return lambda t: t["metadata"]["synth"]["kind"] == kind


def _has_calls(t: dict[str, Any]) -> bool:
    return any(m.get("tool_calls") for m in t["conversation"])


def test_every_generated_trajectory_passes_all_three(trajs: list[dict[str, Any]]) -> None:
    report = CheckReport()
    verifier = Verifier()  # ids checked across the set too
    failures = []
    for t in trajs:
        stage, problems = report.check(t, verifier)
        if stage is not None:
            failures.append((t["metadata"]["synth"]["template"], stage, problems[:2]))
    assert not failures, failures[:10]
    assert report.to_dict()["passed"] == len(trajs) == report.checked
    kinds = {t["metadata"]["synth"]["kind"] for t in trajs}
    domains = {t["metadata"]["synth"]["domain"] for t in trajs}
    assert len(kinds) == 8 and domains == set(DOMAINS) - {synth_testdom.NAME}


def test_the_test_domain_passes_all_three() -> None:
    with synth_testdom.registered() as ts:
        for t in generate(40, 2, "train", ts) + generate(40, 2, "test", ts):
            assert check_all(t) == (None, [])


# -- format ---------------------------------------------------------------------------------
def test_a_tool_message_without_its_call_id_fails_format(trajs: list[dict[str, Any]]) -> None:
    t = _first(trajs, _has_calls)
    tool = next(m for m in t["conversation"] if m["role"] == "tool")
    del tool["tool_call_id"]
    stage, problems = check_all(t)
    assert stage == "format" and "orphan_tool_result" in _rules(problems)


def test_a_call_to_a_tool_not_offered_fails_format(trajs: list[dict[str, Any]]) -> None:
    # Structural: the call names no declared tool, nothing needs executing to see it. The
    # name chosen is a real tool of the domain, so execution alone would accept it.
    t = _first(
        trajs,
        lambda t: (
            _has_calls(t) and len(DOMAINS[t["metadata"]["synth"]["domain"]].tools) > len(t["tools"])
        ),
    )
    offered = {x["function"]["name"] for x in t["tools"]}
    other = next(n for n in DOMAINS[t["metadata"]["synth"]["domain"]].tools if n not in offered)
    call = next(m for m in t["conversation"] if m.get("tool_calls"))["tool_calls"][0]
    call["function"]["name"] = other
    stage, problems = check_all(t)
    assert stage == "format" and "unknown_tool" in _rules(problems)
    assert "unoffered_tool" in _rules(check_semantic(t))  # the backstop sees it too


@pytest.mark.parametrize(
    ("corrupt", "rule"),
    [
        (lambda t: t.pop("conversation"), "schema"),
        (lambda t: t["conversation"][0].update(role="robot"), "schema"),
        (lambda t: t["conversation"].append({"role": "user", "content": "and?"}), "role_order"),
        (lambda t: t["metadata"].pop("synth"), "synth_metadata"),
        (lambda t: t["metadata"]["synth"].update(kind="juggling"), "synth_metadata"),
        (lambda t: t["metadata"]["synth"].update(domain="nowhere"), "synth_metadata"),
        (lambda t: t["metadata"]["synth"].update(calls=[["x"]]), "synth_metadata"),
    ],
)
def test_broken_records_fail_format(trajs: list[dict[str, Any]], corrupt: Any, rule: str) -> None:
    t = _first(trajs, _has_calls)
    corrupt(t)
    stage, problems = check_all(t)
    assert stage == "format" and rule in _rules(problems), problems


def test_arguments_against_the_schema_fail_format(trajs: list[dict[str, Any]]) -> None:
    t = _first(trajs, _has_calls)
    args = next(m for m in t["conversation"] if m.get("tool_calls"))["tool_calls"][0]["function"]
    key = next(iter(args["arguments"]))
    args["arguments"][key] = {"not": "this type"}
    stage, problems = check_all(t)
    assert stage == "format" and "arguments_invalid" in _rules(problems)


def test_repeated_ids_fail_format_with_a_shared_verifier(trajs: list[dict[str, Any]]) -> None:
    verifier = Verifier()
    assert check_format(trajs[0], verifier) == []
    assert _rules(check_format(copy.deepcopy(trajs[0]), verifier)) == {"duplicate_id"}


# -- execution ------------------------------------------------------------------------------
def test_a_changed_observation_fails_execution(trajs: list[dict[str, Any]]) -> None:
    t = _first(trajs, _has_calls)
    tool = [m for m in t["conversation"] if m["role"] == "tool"][-1]
    tool["content"] = tool["content"].replace("}", ', "extra": 1}', 1)
    stage, problems = check_all(t)
    assert stage == "execution" and _rules(problems) == {"observation_mismatch"}


def test_a_changed_initial_state_fails_execution(trajs: list[dict[str, Any]]) -> None:
    # The bank's balances: the same calls from another state give other observations.
    t = _first(trajs, lambda t: t["metadata"]["synth"]["domain"] == "bank" and _has_calls(t))
    state = t["metadata"]["synth"]["initial_state"]
    before = json.dumps(state)
    _bump_numbers(state)
    assert json.dumps(state) != before
    stage, problems = check_all(t)
    assert stage == "execution" and "observation_mismatch" in _rules(problems)


def _bump_numbers(obj: Any) -> None:
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in list(items):
        if isinstance(v, int | float) and not isinstance(v, bool):
            obj[k] = v + 7
        elif isinstance(v, dict | list):
            _bump_numbers(v)


def test_a_missing_observation_fails_execution(trajs: list[dict[str, Any]]) -> None:
    t = _first(trajs, _kind("parallel"))
    conv = t["conversation"]
    i = next(i for i, m in enumerate(conv) if m["role"] == "tool")
    del conv[i]  # the other results of the turn still follow the call: format holds
    stage, problems = check_all(t)
    assert stage == "execution" and _rules(problems) == {"unanswered_call"}


# -- semantic -------------------------------------------------------------------------------
def _other_value(v: str) -> str:
    """A value of the same shape that does not contain ``v`` (each digit moved by one)."""
    out = "".join(str((int(c) + 1) % 10) if c.isdigit() else c for c in v)
    return out if out != v else v + "zz"


def test_a_changed_final_answer_value_fails_semantic(trajs: list[dict[str, Any]]) -> None:
    t = _first(trajs, lambda t: t["metadata"]["synth"]["answer_values"])
    final = t["conversation"][-1]
    v = t["metadata"]["synth"]["answer_values"][0]
    final["content"] = final["content"].replace(v, _other_value(v))
    assert v not in final["content"]
    stage, problems = check_all(t)
    assert stage == "semantic" and "answer_missing" in _rules(problems)


def test_an_invented_answer_value_fails_semantic(trajs: list[dict[str, Any]]) -> None:
    t = _first(trajs, lambda t: t["metadata"]["synth"]["answer_values"])
    t["metadata"]["synth"]["answer_values"].append("98765.43")
    t["conversation"][-1]["content"] += " Also 98765.43."
    stage, problems = check_all(t)
    assert stage == "semantic" and _rules(problems) == {"answer_ungrounded"}


def _replay(t: dict[str, Any]) -> None:
    """Re-execute every call from the initial state and rewrite the observations."""
    meta = t["metadata"]["synth"]
    domain, state = DOMAINS[meta["domain"]], copy.deepcopy(meta["initial_state"])
    results = {m["tool_call_id"]: m for m in t["conversation"] if m["role"] == "tool"}
    for m in t["conversation"]:
        for c in m.get("tool_calls") or []:
            fn = c["function"]
            results[c["id"]]["content"] = domain.execute(state, fn["name"], fn["arguments"])


def _numeric_argument(t: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """A call and one of its number arguments whose schema has no enum and no maximum."""
    params = {x["function"]["name"]: x["function"]["parameters"] for x in t["tools"]}
    for m in t["conversation"]:
        for c in m.get("tool_calls") or []:
            for k, v in c["function"]["arguments"].items():
                spec = params[c["function"]["name"]]["properties"][k]
                if (
                    isinstance(v, int | float)
                    and not isinstance(v, bool)
                    and "enum" not in spec
                    and "maximum" not in spec
                ):
                    return c, k
    return None


def test_a_changed_argument_consistently_re_executed_fails_semantic(
    trajs: list[dict[str, Any]],
) -> None:
    t = _first(trajs, lambda t: t["metadata"]["synth"]["kind"] == "single" and _numeric_argument(t))
    call, key = _numeric_argument(t)  # type: ignore[misc]
    call["function"]["arguments"][key] += 1
    _replay(t)
    assert check_format(t) == [] and check_execution(t) == []
    stage, problems = check_all(t)
    assert stage == "semantic" and "calls_mismatch" in _rules(problems)


def test_a_call_too_many_fails_semantic(trajs: list[dict[str, Any]]) -> None:
    # The same call made twice (new id, its own result): well-formed and executable, but
    # not the calls the task needs.
    t = _first(trajs, _kind("single"))
    conv = t["conversation"]
    i = next(i for i, m in enumerate(conv) if m.get("tool_calls"))
    call, result = copy.deepcopy(conv[i]), copy.deepcopy(conv[i + 1])
    call["tool_calls"][0]["id"] = result["tool_call_id"] = "call_again"
    conv[i + 2 : i + 2] = [call, result]
    _replay(t)
    stage, problems = check_all(t)
    assert stage == "semantic" and {"calls_mismatch", "kind_shape"} <= _rules(problems)


def test_a_kind_the_calls_do_not_fit_fails_semantic(trajs: list[dict[str, Any]]) -> None:
    for kind, other in (
        ("single", "parallel"),
        ("refuse", "single"),
        ("single", "multi_step"),
        ("single", "error_retry"),
        ("single", "ask_missing"),
    ):
        t = _first(trajs, _kind(kind))
        t["metadata"]["synth"]["kind"] = other
        stage, problems = check_all(t)
        assert stage == "semantic" and _rules(problems) == {"kind_shape"}, (kind, other, problems)


def test_a_final_turn_without_text_fails_format_and_the_semantic_backstop(
    trajs: list[dict[str, Any]],
) -> None:
    t = _first(trajs, _kind("refuse"))
    t["conversation"][-1]["content"] = ""
    t["conversation"][-1]["tool_calls"] = []
    stage, problems = check_all(t)
    assert stage == "format" and "empty_assistant" in _rules(problems)
    assert "no_final_answer" in _rules(check_semantic(t))


def test_words_do_not_match_inside_numbers() -> None:
    assert contains_word("balance 15.5 EUR", "15.5")
    assert not contains_word("balance 15.5 EUR", "15")
    assert not contains_word("balance 115 EUR", "15")
    assert contains_word("(Oslo).", "Oslo")


def test_the_report_counts_every_stage() -> None:
    with synth_testdom.registered() as ts:
        good = generate(6, 0, "train", ts)
        bad_format = copy.deepcopy(good[0])
        bad_format["metadata"]["synth"]["kind"] = "nope"
        bad_exec = copy.deepcopy(next(t for t in good if _has_calls(t)))
        next(m for m in bad_exec["conversation"] if m["role"] == "tool")["content"] = "{}"
        report = CheckReport(max_examples=1)
        for t in [*good, bad_format, bad_exec, copy.deepcopy(bad_exec)]:
            report.check(t)
    d = report.to_dict()
    assert (d["checked"], d["passed"], d["rejected"]) == (9, 6, 3)
    assert d["failed"] == {"format": 1, "execution": 2, "semantic": 0}
    assert d["rules"]["execution"] == {"observation_mismatch": 2}
    assert len(d["examples"]["execution"]) == 1 and set(d["failed"]) == set(STAGES)
