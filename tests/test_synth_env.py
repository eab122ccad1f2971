"""The tool environments: reset/step/reply over the task's state, and the scores.

Expected values come from the test domain's rules (a deposit adds the amount; ``partial``
counts gold calls matched in order), computed here from the task's initial state.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import synth_testdom

from xlam.synth.env import ToolEnv
from xlam.synth.generate import default_templates, generate


@pytest.fixture(scope="module")
def tasks() -> Iterator[dict[str, dict[str, Any]]]:
    """One test-domain task per template, by template name."""
    with synth_testdom.registered() as ts:
        out = {}
        for t in generate(60, 9, "train", ts) + generate(30, 9, "test", ts):
            out.setdefault(t["metadata"]["synth"]["template"], t)
        assert len(out) == len(ts)
        yield out


def _gold(task: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return copy.deepcopy(task["metadata"]["synth"]["calls"])


def _final(task: dict[str, Any]) -> str:
    return task["conversation"][-1]["content"]


def _play_gold(env: ToolEnv, task: dict[str, Any]) -> None:
    """The gold episode: each assistant turn's calls, or its text."""
    turns = [m for m in task["conversation"] if m["role"] == "assistant"]
    for m, calls in zip(turns, _gold(task), strict=True):
        if calls:
            env.step(calls)
        else:
            env.reply(m["content"])


def test_reset_gives_the_first_user_message_and_a_fresh_state(tasks: dict) -> None:
    task = tasks["testdom.obs"]
    env = ToolEnv("testdom")
    first = env.reset(task)
    assert first == task["conversation"][0]["content"]
    assert env.state == task["metadata"]["synth"]["initial_state"]
    assert env.state is not task["metadata"]["synth"]["initial_state"]


def test_step_changes_the_state_by_the_domains_rules(tasks: dict) -> None:
    task = tasks["testdom.obs"]
    init = task["metadata"]["synth"]["initial_state"]["accounts"]
    acc = sorted(init)[0]
    env = ToolEnv()
    env.reset(task)
    (obs,) = env.step([{"name": "td_deposit", "arguments": {"account": acc, "amount": 25}}])
    assert env.state["accounts"][acc]["balance"] == init[acc]["balance"] + 25
    assert f'"balance": {init[acc]["balance"] + 25}' in obs
    # arguments as JSON text (a model's wire form) work the same way
    env.step([{"name": "td_deposit", "arguments": f'{{"account": "{acc}", "amount": 5}}'}])
    assert env.state["accounts"][acc]["balance"] == init[acc]["balance"] + 30
    assert task["metadata"]["synth"]["initial_state"]["accounts"][acc] == init[acc]  # untouched


def test_bad_calls_come_back_as_errors_and_change_nothing(tasks: dict) -> None:
    task = tasks["testdom.obs"]
    env = ToolEnv()
    env.reset(task)
    before = copy.deepcopy(env.state)
    out = env.step(
        [
            {"name": "td_add", "arguments": {"a": 1, "b": 2}},  # a real tool, not offered
            {"name": "td_deposit", "arguments": "{not json"},
            {"name": "td_deposit", "arguments": {"account": "nope", "amount": 3}},
            {"name": "td_deposit", "arguments": {"account": "nope"}},
        ]
    )
    assert out[0].startswith('{"error": "NotFound') and "offered" in out[0]
    assert out[1].startswith('{"error": "InvalidArgument')
    assert out[2].startswith('{"error": "NotFound')
    assert out[3].startswith('{"error": "InvalidArgument') and "amount" in out[3]
    assert env.state == before


@pytest.mark.parametrize("name", [t.name for t in synth_testdom.TEMPLATES_])
def test_the_gold_episode_succeeds(tasks: dict, name: str) -> None:
    task = tasks[name]
    env = ToolEnv()
    env.reset(task)
    _play_gold(env, task)
    s = env.score()
    assert env.done and s["success"] and s["partial"] == 1.0, s


@pytest.mark.parametrize("name", [t.name for t in synth_testdom.TEMPLATES_])
def test_doing_nothing_fails_unless_the_task_is_a_refusal(tasks: dict, name: str) -> None:
    task = tasks[name]
    env = ToolEnv()
    env.reset(task)
    while env.reply("I cannot help with that.") is not None:
        pass
    s = env.score()
    refuse = task["metadata"]["synth"]["kind"] == "refuse"
    assert s["success"] is refuse and s["partial"] == (1.0 if refuse else 0.0)


def test_a_refusal_that_calls_fails(tasks: dict) -> None:
    env = ToolEnv()
    env.reset(tasks["testdom.refuse"])
    env.step([{"name": "td_add", "arguments": {"a": 1, "b": 1}}])
    env.reply("Sorry.")
    assert env.score()["success"] is False and env.score()["partial"] == 0.0


def test_partial_is_the_longest_in_order_match(tasks: dict) -> None:
    task = tasks["testdom.multi"]  # gold: find(owner) -> balance(account)
    find, balance = (turn[0] for turn in _gold(task) if turn)
    cases = [
        ([[find]], 0.5),
        ([[balance], [find]], 0.5),  # out of order: one of them in order
        ([[find], [{"name": "td_balance", "arguments": {"account": "x"}}], [balance]], 1.0),
        ([[find, balance]], 1.0),  # both in one turn: a turn's calls have no order
        ([[balance, find]], 1.0),
        ([[{"name": "td_find", "arguments": {"owner": "nobody"}}]], 0.0),
    ]
    for made, want in cases:
        env = ToolEnv()
        env.reset(task)
        for turn in made:
            env.step(turn)
        env.reply(_final(task))
        assert env.score()["partial"] == want, (made, want)


def test_parallel_calls_match_in_any_order_and_split_over_turns(tasks: dict) -> None:
    task = tasks["testdom.parallel"]
    (turn,) = [c for c in _gold(task) if c]
    for made in ([list(reversed(turn))], [[c] for c in turn], [[c] for c in reversed(turn)]):
        env = ToolEnv()
        env.reset(task)
        for t in made:
            env.step(t)
        env.reply(_final(task))
        s = env.score()
        assert s["partial"] == 1.0 and s["success"], made


def test_defaults_count_as_given(tasks: dict) -> None:
    # td_convert's unit defaults to km: leaving it out is the same call
    task = tasks["testdom.convert_sub"]
    (turn,) = [c for c in _gold(task) if c]
    for c in turn:
        c["arguments"].pop("unit", None)
    env = ToolEnv()
    env.reset(task)
    env.step(turn)
    env.reply(_final(task))
    assert env.score()["partial"] == 1.0 and env.score()["success"]


def test_error_retry_succeeds_without_the_error(tasks: dict) -> None:
    task = tasks["testdom.retry"]
    _, good = (turn[0] for turn in _gold(task) if turn)
    env = ToolEnv()
    env.reset(task)
    env.step([good])
    env.reply(_final(task))
    s = env.score()
    assert s["success"] and s["partial"] == 0.5 and s["matched"] == 1


def test_success_needs_the_state_and_the_answer(tasks: dict) -> None:
    task = tasks["testdom.obs"]  # gold: deposit then balance, answer the balance
    deposit, balance = (turn[0] for turn in _gold(task) if turn)
    env = ToolEnv()
    env.reset(task)
    env.step([deposit, balance])
    env.reply("Done.")  # right state, the balance not said
    s = env.score()
    assert (s["state_ok"], s["answer_ok"], s["success"]) == (True, False, False)
    env = ToolEnv()
    env.reset(task)
    twice = copy.deepcopy(deposit)
    env.step([deposit, twice, balance])  # deposited twice: the state is wrong
    env.reply(_final(task))
    s = env.score()
    assert (s["state_ok"], s["success"], s["partial"]) == (False, False, 1.0)


def test_ask_missing_delivers_the_next_user_turn_after_a_text_turn(tasks: dict) -> None:
    task = tasks["testdom.ask"]
    users = [m["content"] for m in task["conversation"] if m["role"] == "user"]
    env = ToolEnv()
    assert env.reset(task) == users[0]
    assert env.reply("How much?") == users[1]
    assert not env.done
    (calls,) = [c for c in _gold(task) if c]
    env.step(calls)
    assert env.reply(_final(task)) is None and env.done
    assert env.score()["success"]
    with pytest.raises(RuntimeError, match="over"):
        env.step(calls)


def test_reset_refuses_foreign_tasks(tasks: dict) -> None:
    task = tasks["testdom.single"]
    with pytest.raises(ValueError, match=r"metadata\.synth"):
        ToolEnv().reset({"unique_trajectory_id": "x", "conversation": []})
    default_templates()
    with pytest.raises(ValueError, match="domain 'testdom'"):
        ToolEnv("bank").reset(task)
    with pytest.raises(KeyError, match="no domain"):
        ToolEnv("nowhere")


def test_every_real_task_succeeds_with_the_gold_and_fails_doing_nothing() -> None:
    default_templates()
    for task in generate(120, 13, "train") + generate(120, 13, "test"):
        env = ToolEnv(task["metadata"]["synth"]["domain"])
        env.reset(task)
        _play_gold(env, task)
        s = env.score()
        assert s["success"] and s["partial"] == 1.0, (task["metadata"]["synth"]["template"], s)
        env.reset(task)
        while env.reply("I cannot help with that.") is not None:
            pass
        s = env.score()
        refuse = task["metadata"]["synth"]["kind"] == "refuse"
        assert s["success"] is refuse, (task["metadata"]["synth"]["template"], s)
