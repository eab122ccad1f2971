"""Two values in a one-call sentence: a ``single`` episode turned into a two-call one.

A tiny model reads how many calls to make from a request's frame ("What is the balance of
account …?" one, "What are the balances of accounts … and …?" two) rather than from how
many values it names, and a held-out two-call sentence in a one-call frame then gets one
call (docs/synthetic_data.md, "Where the targets stand"). :func:`conjoin` makes the count
independent of the frame for every ``single`` template, with no per-template code: it
takes a built episode (user, one call, its result, an answer), draws a second value for
one of the call's arguments from a second build of the same template on the same initial
state, and writes the episode with both:

- the request names both values where it named one (``… account AC-1 and AC-2?``; a quoted
  value as ``'a' and 'b'``);
- one assistant turn makes both calls (the second the first with that argument changed),
  executed in order against the domain;
- the answer is the first episode's, then the same sentence for the second call (the
  argument's value and every result value it quoted replaced by the second call's).

An episode it cannot conjoin cleanly (another shape, no argument written once in the
request, an enum argument, a result of another shape or an error, a value the answer
quotes twice with two meanings) gives ``None``: the caller keeps the one-call episode.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable
from typing import Any

from xlam.synth.core import EpisodeBuilder, State, format_value

# How many second builds to try for a value unlike the first before giving up.
_TRIES = 5


def _word(value: str) -> str:
    """A regex for ``value`` not touching a letter, digit or ``.`` (the checks' word rule)."""
    return r"(?<![\w.])" + re.escape(value) + r"(?!\w|\.\d)"


def _flat(v: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    """A result's leaves by path (dict keys and list positions)."""
    if isinstance(v, dict):
        return {p: x for k, val in v.items() for p, x in _flat(val, (*path, k)).items()}
    if isinstance(v, list):
        return {p: x for i, val in enumerate(v) for p, x in _flat(val, (*path, i)).items()}
    return {path: v}


def _one_call_episode(b: EpisodeBuilder) -> tuple[str, dict[str, Any], str] | None:
    """``(request, call, answer)`` of a user / one call / result / answer episode."""
    conv = b.conversation
    if [m["role"] for m in conv] != ["user", "assistant", "tool", "assistant"]:
        return None
    calls = conv[1].get("tool_calls") or []
    if len(calls) != 1 or conv[3].get("tool_calls"):
        return None
    return conv[0]["content"], calls[0]["function"], conv[3]["content"]


def _replace_all(text: str, mapping: dict[str, str]) -> str:
    """``text`` with every word-match of a key replaced by its value, all in one pass."""
    pattern = "|".join(_word(k) for k in sorted(mapping, key=len, reverse=True))
    return re.sub(pattern, lambda m: mapping[m.group(0)], text)


def conjoin(
    first: EpisodeBuilder,
    rebuild: Callable[[random.Random], EpisodeBuilder],
    state: State,
    rng: random.Random,
) -> EpisodeBuilder | None:
    """The episode of ``first`` with a second value for one argument (module docstring).

    Args:
        first: A built one-call episode.
        rebuild: Builds the same template and phrasing again on ``state`` with another
            generator (where the second value comes from).
        state: The episode's initial state.
        rng: Draws the argument and the second build.

    Returns:
        A new builder holding the two-call episode, or ``None`` when it cannot be made.
    """
    shape = _one_call_episode(first)
    if shape is None:
        return None
    request, call, answer = shape
    tool = first.domain.tools[call["name"]]
    props = tool.parameters.get("properties", {})
    names = [
        k
        for k, v in call["arguments"].items()
        if "enum" not in props.get(k, {})
        and len(re.findall(_word(format_value(v)), request)) == 1
        and len(re.findall(_word(format_value(v)), answer)) <= 1
    ]
    if not names:
        return None
    name = rng.choice(sorted(names))
    value = call["arguments"][name]
    for _ in range(_TRIES):
        other = _one_call_episode(rebuild(random.Random(rng.random())))
        if other and other[1]["name"] == call["name"] and name in other[1]["arguments"]:
            second_value = other[1]["arguments"][name]
            if type(second_value) is type(value) and format_value(second_value) != format_value(
                value
            ):
                break
    else:
        return None
    v1, v2 = format_value(value), format_value(second_value)
    quoted = re.search(r"(['\"])" + re.escape(v1) + r"\1", request)
    if quoted:
        q = quoted.group(1)
        both = request.replace(f"{q}{v1}{q}", f"{q}{v1}{q} and {q}{v2}{q}", 1)
    else:
        both = re.sub(_word(v1), lambda _: f"{v1} and {v2}", request, count=1)

    b = EpisodeBuilder(first.domain, state)
    b.system = first.system
    b.offer(*first.tools)
    b.user(both)
    args2 = {**copy.deepcopy(call["arguments"]), name: second_value}
    r1, r2 = b.calls([(call["name"], copy.deepcopy(call["arguments"])), (call["name"], args2)])
    first_result = json.loads(first.conversation[2]["content"])
    if r1 != first_result or "error" in r1 or "error" in r2:
        return None
    leaves1, leaves2 = _flat(r1), _flat(r2)
    if leaves1.keys() != leaves2.keys():
        return None
    mapping = {v1: v2}
    for path, x in leaves1.items():
        a, c = format_value(x), format_value(leaves2[path])
        if a != c and re.search(_word(a), answer):
            if mapping.get(a, c) != c:
                return None  # one value in the answer, two meanings in the results
            mapping[a] = c
    second_answer = _replace_all(answer, mapping)
    values = [*first.answer_values, *(mapping.get(v, v) for v in first.answer_values)]
    b.say(f"{answer} {second_answer}", values)
    return b


__all__ = ["conjoin"]
