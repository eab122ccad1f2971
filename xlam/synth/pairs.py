"""Preference pairs from verified synthetic trajectories: the gold call turn against a
perturbed one that replay proves wrong.

For each assistant turn with calls of a trajectory that passes the three checks
(:func:`xlam.synth.checks.check_all`), the chosen message is the gold turn and the rejected
one is the same turn with one call perturbed (:data:`PERTURBATIONS`):

- ``wrong_tool``: another tool, the most similar first: one the episode offers (the
  templates offer similar distractors), else one of the same domain; ranked by the overlap
  of argument names. Arguments the other tool accepts are kept; its missing required ones
  take a gold value of the same JSON type, else a type-valid placeholder.
- ``wrong_value``: one argument gets another value of the same type: another ``enum``
  member, the other boolean, a number moved within its bounds, a string with one digit
  changed (or, without digits, one character dropped or added), an array without its last
  element.
- ``missing_argument``: one required argument the call gives is dropped.

**The proof** (:func:`prove_wrong`): the state before the turn is rebuilt by replaying every
earlier call from ``metadata.synth.initial_state``; the gold turn and the perturbed turn
are each executed from that state, as :class:`xlam.synth.env.ToolEnv` executes them (a tool
the episode does not offer answers ``NotFound``). A perturbation is kept only when
:func:`xlam.eval.scoring.compare_calls` tells it from the gold calls **and** its effect
differs: an observation differs from the gold's at the same position (an error included)
or the state after the turn differs. Anything else (a changed value that happens to give
the same result) is discarded and counted as ``unproven``.

Deterministic: turn ``k`` of trajectory ``t`` draws from ``Random(f"{seed}:{t}:{k}")``.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

from xlam.data.preference import PreferencePair, pair_at
from xlam.data.schema import Message, ToolCall, Trajectory
from xlam.eval.scoring import compare_calls
from xlam.synth.checks import check_all, conversation_calls, synth_meta
from xlam.synth.core import DOMAINS, Domain, NotFound

PERTURBATIONS: tuple[str, ...] = ("wrong_tool", "wrong_value", "missing_argument")
GENERATOR = "synth"

Call = dict[str, Any]


def _canon(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


# -- execution ------------------------------------------------------------------------------
def run_calls(
    domain: Domain, state: dict[str, Any], calls: list[Call], offered: set[str]
) -> list[str]:
    """Execute ``calls`` in order on ``state`` (changed in place); one observation each.

    A tool the episode does not offer is not executed: its observation is ``NotFound``, as
    in :meth:`xlam.synth.env.ToolEnv.step`.
    """
    out = []
    for c in calls:
        if c["name"] not in offered:
            out.append(NotFound(f"no tool named {c['name']!r} is offered").observation())
        else:
            out.append(domain.execute(state, c["name"], copy.deepcopy(c["arguments"])))
    return out


def state_before(traj: dict[str, Any], turn: int) -> dict[str, Any]:
    """The state before assistant turn ``turn``: every earlier call replayed from the
    initial state."""
    meta = synth_meta(traj)
    state = copy.deepcopy(meta["initial_state"])
    offered = {t["function"]["name"] for t in traj["tools"]}
    for calls in conversation_calls(traj["conversation"])[:turn]:
        run_calls(DOMAINS[meta["domain"]], state, calls, offered)
    return state


def prove_wrong(traj: dict[str, Any], turn: int, calls: list[Call]) -> str | None:
    """Why ``calls`` in place of the gold calls of assistant turn ``turn`` is wrong, or
    ``None`` when the checker cannot prove it (rules in the module docstring).

    Args:
        traj: A synthetic trajectory that passed the three checks.
        turn: Index of an assistant turn (counting assistant messages from 0).
        calls: The replacement calls, ``[{"name", "arguments"}]``.
    """
    gold = conversation_calls(traj["conversation"])[turn]
    if compare_calls(calls, gold, traj["tools"]).valid:
        return None
    domain = DOMAINS[synth_meta(traj)["domain"]]
    offered = {t["function"]["name"] for t in traj["tools"]}
    before = state_before(traj, turn)
    gold_state, state = copy.deepcopy(before), copy.deepcopy(before)
    gold_obs = run_calls(domain, gold_state, gold, offered)
    obs = run_calls(domain, state, calls, offered)
    for j, (got, want) in enumerate(zip_longest(obs, gold_obs)):
        if got != want:
            return f"call {j}: observation {got} != gold {want}"
    if _canon(state) != _canon(gold_state):
        return "the state after the turn differs from the gold's"
    return None


# -- perturbations --------------------------------------------------------------------------
def _props(domain: Domain, name: str) -> dict[str, Any]:
    return domain.tools[name].parameters.get("properties", {})


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(v), "null")


def _placeholder(spec: dict[str, Any]) -> Any:
    """A value valid for ``spec``'s type (its default, first enum member or a plain one)."""
    if "default" in spec:
        return copy.deepcopy(spec["default"])
    if spec.get("enum"):
        return spec["enum"][0]
    t = spec.get("type", "string")
    if t in ("integer", "number"):
        low = spec.get("minimum", 1)
        return int(low) if t == "integer" else float(low)
    return {"boolean": True, "array": [], "object": {}}.get(t, "x")


def wrong_tool(call: Call, traj: dict[str, Any], rng: random.Random) -> Call | None:
    """The call made to the most similar other tool (module docstring)."""
    domain = DOMAINS[synth_meta(traj)["domain"]]
    offered = [t["function"]["name"] for t in traj["tools"]]
    mine = set(_props(domain, call["name"]))

    def key(name: str) -> tuple[int, float]:
        theirs = set(_props(domain, name))
        overlap = len(mine & theirs) / max(1, len(mine | theirs))
        return (0 if name in offered else 1, -overlap)

    names = sorted(n for n in {*offered, *domain.tools} if n != call["name"] and n in domain.tools)
    if not names:
        return None
    best = min(map(key, names))
    name = rng.choice([n for n in names if key(n) == best])
    tool = domain.tools[name]
    props = _props(domain, name)
    args = {k: copy.deepcopy(v) for k, v in call["arguments"].items() if k in props}
    spare = [v for k, v in call["arguments"].items() if k not in props]
    for r in tool.parameters.get("required", []):
        if r in args:
            continue
        same = [v for v in spare if _json_type(v) == props[r].get("type")]
        args[r] = copy.deepcopy(same[0]) if same else _placeholder(props[r])
        if same:
            spare.remove(same[0])
    return {"name": name, "arguments": args}


def _other_string(v: str, rng: random.Random) -> str:
    digits = [i for i, ch in enumerate(v) if ch.isdigit()]
    if digits:
        i = rng.choice(digits)
        new = rng.choice([d for d in "0123456789" if d != v[i]])
        return v[:i] + new + v[i + 1 :]
    if len(v) > 1 and rng.random() < 0.5:
        i = rng.randrange(len(v))
        return v[:i] + v[i + 1 :]
    return v + rng.choice("aeiorst")


def _other_number(v: float, spec: dict[str, Any], rng: random.Random, integer: bool) -> Any:
    lo, hi = spec.get("minimum", float("-inf")), spec.get("maximum", float("inf"))
    steps = [1, 2, 3, 5, 10, 100] if integer else [0.5, 1.0, 2.5, 10.0, 100.0]
    moves = [v + s * sign for s in steps for sign in (1, -1)]
    options = [m for m in moves if lo <= m <= hi and m != v]
    if not options:
        return None
    out = rng.choice(options)
    return int(out) if integer else float(out)


def other_value(v: Any, spec: dict[str, Any], rng: random.Random) -> Any:
    """A value of ``v``'s type, valid for ``spec`` and different from ``v``; ``None`` when
    there is none."""
    if spec.get("enum"):
        options = [x for x in spec["enum"] if x != v]
        return rng.choice(options) if options else None
    if isinstance(v, bool):
        return not v
    if isinstance(v, int | float):
        integer = isinstance(v, int) or spec.get("type") == "integer"
        return _other_number(v, spec, rng, integer)
    if isinstance(v, str):
        return _other_string(v, rng)
    if isinstance(v, list) and v:
        return copy.deepcopy(v[:-1])
    return None


def wrong_value(call: Call, traj: dict[str, Any], rng: random.Random) -> Call | None:
    """The call with one argument given another value of its type (module docstring)."""
    props = _props(DOMAINS[synth_meta(traj)["domain"]], call["name"])
    keys = sorted(call["arguments"])
    rng.shuffle(keys)
    for k in keys:
        new = other_value(call["arguments"][k], props.get(k, {}), rng)
        if new is not None:
            return {"name": call["name"], "arguments": {**call["arguments"], k: new}}
    return None


def missing_argument(call: Call, traj: dict[str, Any], rng: random.Random) -> Call | None:
    """The call without one of the required arguments it gives."""
    tool = DOMAINS[synth_meta(traj)["domain"]].tools[call["name"]]
    present = [r for r in tool.parameters.get("required", []) if r in call["arguments"]]
    if not present:
        return None
    drop = rng.choice(present)
    return {
        "name": call["name"],
        "arguments": {k: v for k, v in call["arguments"].items() if k != drop},
    }


_PERTURB = {
    "wrong_tool": wrong_tool,
    "wrong_value": wrong_value,
    "missing_argument": missing_argument,
}


# -- pairs ----------------------------------------------------------------------------------
@dataclass
class SynthPairReport:
    """Counts of one :func:`synth_pairs` run.

    Attributes:
        trajectories: Trajectories read.
        failed_checks: Those that failed a check (no pair made from them).
        call_turns: Assistant turns with calls in the others.
        pairs: Pairs made.
        turns_without_pair: Call turns for which no perturbation was proven wrong.
        by_kind: Per perturbation: ``made``, ``unproven`` (discarded: the checker could not
            prove it wrong) and ``no_candidate`` (the call offers nothing to perturb).
        failed_ids: The first ids that failed a check, with the stage and rule.
    """

    trajectories: int = 0
    failed_checks: int = 0
    call_turns: int = 0
    pairs: int = 0
    turns_without_pair: int = 0
    by_kind: dict[str, dict[str, int]] = field(
        default_factory=lambda: {
            k: {"made": 0, "unproven": 0, "no_candidate": 0} for k in PERTURBATIONS
        }
    )
    failed_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trajectories": self.trajectories,
            "failed_checks": self.failed_checks,
            "call_turns": self.call_turns,
            "pairs": self.pairs,
            "turns_without_pair": self.turns_without_pair,
            "by_kind": self.by_kind,
            "failed_ids": self.failed_ids,
        }


def _turn_pairs(
    traj: dict[str, Any],
    t: Trajectory,
    turn: int,
    index: int,
    seed: int,
    kinds: tuple[str, ...],
    per_turn: int,
    report: SynthPairReport,
) -> Iterator[PreferencePair]:
    rng = random.Random(f"{seed}:{t.id}:{turn}")
    gold_msg = t.conversation[index]
    gold = conversation_calls(traj["conversation"])[turn]
    made = 0
    for kind in rng.sample(kinds, len(kinds)):
        if made >= per_turn:
            break
        j = rng.randrange(len(gold))
        new = _PERTURB[kind](gold[j], traj, rng)
        counts = report.by_kind[kind]
        if new is None:
            counts["no_candidate"] += 1
            continue
        calls = [*gold[:j], new, *gold[j + 1 :]]
        proof = prove_wrong(traj, turn, calls)
        if proof is None:
            counts["unproven"] += 1
            continue
        counts["made"] += 1
        report.pairs += 1
        made += 1
        rejected = Message(
            role="assistant",
            content=gold_msg.content,
            reasoning=gold_msg.reasoning,
            tool_calls=[
                ToolCall(name=c["name"], arguments=c["arguments"], id=g.id)
                for c, g in zip(calls, gold_msg.tool_calls, strict=True)
            ],
        )
        meta = {
            "synth": synth_meta(traj),
            "pair": {
                "generator": GENERATOR,
                "from": t.id,
                "turn": turn,
                "perturbation": kind,
                "call": j,
                "proof": proof,
                "seed": seed,
            },
        }
        yield pair_at(t, index, rejected, f"{t.id}#{turn}.{kind}", meta)
    if not made:
        report.turns_without_pair += 1


def synth_pairs(
    trajectories: Iterable[dict[str, Any]],
    seed: int,
    kinds: tuple[str, ...] = PERTURBATIONS,
    per_turn: int = 1,
    report: SynthPairReport | None = None,
) -> Iterator[PreferencePair]:
    """Pairs from synthetic trajectories (module docstring), in input order.

    Args:
        trajectories: Unified trajectory dicts with ``metadata.synth`` (``xlam-data synth``
            output); those that fail a check are counted and skipped.
        seed: The seed (same input and seed, same pairs).
        kinds: The perturbations to try, a subset of :data:`PERTURBATIONS`.
        per_turn: At most this many pairs per call turn (each of another kind).
        report: Filled with the counts as pairs are made.

    Raises:
        ValueError: An unknown perturbation or ``per_turn < 1``.
    """
    unknown = sorted(set(kinds) - set(PERTURBATIONS))
    if unknown or not kinds:
        raise ValueError(f"perturbations must be among {PERTURBATIONS}, got {list(kinds)}")
    if per_turn < 1:
        raise ValueError(f"per_turn must be >= 1, got {per_turn}")
    report = report if report is not None else SynthPairReport()
    for traj in trajectories:
        report.trajectories += 1
        stage, problems = check_all(traj)
        if stage is not None:
            report.failed_checks += 1
            if len(report.failed_ids) < 20:
                rule = problems[0].rule
                report.failed_ids.append(f"{traj.get('unique_trajectory_id')}: {stage}: {rule}")
            continue
        t = Trajectory.from_dict(traj)
        turns = [i for i, m in enumerate(t.conversation) if m.role == "assistant"]
        for turn, index in enumerate(turns):
            if not t.conversation[index].tool_calls:
                continue
            report.call_turns += 1
            yield from _turn_pairs(traj, t, turn, index, seed, kinds, per_turn, report)


__all__ = [
    "GENERATOR",
    "PERTURBATIONS",
    "SynthPairReport",
    "missing_argument",
    "other_value",
    "prove_wrong",
    "run_calls",
    "state_before",
    "synth_pairs",
    "wrong_tool",
    "wrong_value",
]
