"""A synthetic task as an environment: the model acts, the domain executes, the task scores.

:class:`ToolEnv` runs one task (a trajectory from :func:`xlam.synth.generate.generate`, its
``metadata.synth`` the ground truth) at a time::

    env = ToolEnv()
    text = env.reset(task)                 # the first user message
    obs = env.step([{"name": ..., "arguments": {...}}])   # one observation per call
    nxt = env.reply("How much?")           # a text turn: the next user message, or None
    env.score()                            # {"success": ..., "partial": ...}

The state starts as the task's ``initial_state`` and the model's calls change it. The user
turns are the task's user messages, in order: the first comes from :meth:`~ToolEnv.reset`,
each next one after an assistant text turn (:meth:`~ToolEnv.reply`); an ``ask_missing``
task's answer comes after the assistant's question, whatever it asked. The episode is done
when the assistant answers in text with no user turn left.

Scores (:meth:`ToolEnv.score`):

- ``partial``: the fraction of ground-truth calls the model made in order:
  :func:`matched_in_order` of the model's calls and the gold calls (two calls match when
  :func:`xlam.eval.scoring.compare_calls` says so: names equal, arguments equal by the
  tool's schema, defaults filled in; the calls of one turn may be taken in any order,
  turns may not), divided by the number of gold calls. A task without gold calls
  (``refuse``) scores 1 when the model made no call, else 0.
- ``success``: all of: the final state equals the state the ground-truth calls leave
  (``state_ok``); the last assistant text contains every answer value (``answer_ok``;
  vacuous for a task without values); and ``calls_ok``: for a task without gold calls, no
  call was made; for a task whose outcome neither the state nor the answer shows (the gold
  calls leave the state unchanged and there is no answer value), every gold call was
  matched (``partial == 1``); else always.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import math
from typing import Any

from xlam.data.schema import ArgumentsError, parse_arguments
from xlam.eval.scoring import compare_calls, tool_parameters
from xlam.synth.core import DOMAINS, Domain, NotFound

log = logging.getLogger(__name__)


def _canon(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


# Gold orderings tried by ``matched_in_order`` at most (the product of the factorials of
# the gold turns' sizes; beyond it, only the gold order itself).
_MAX_ORDERINGS = 5040


def _lcs(pred: list[int], gold: list[int], match: list[list[bool]]) -> int:
    """Longest common subsequence of index sequences, ``match[p][g]`` saying which pair."""
    prev = [0] * (len(gold) + 1)
    for p in pred:
        row = [0] * (len(gold) + 1)
        for j, g in enumerate(gold):
            row[j + 1] = prev[j] + 1 if match[p][g] else max(prev[j + 1], row[j])
        prev = row
    return prev[-1]


def matched_in_order(
    made: list[list[dict[str, Any]]], gold: list[list[dict[str, Any]]], params: dict[str, Any]
) -> int:
    """How many gold calls the model matched in order (the ``partial`` numerator).

    ``made`` and ``gold`` are calls per turn. The calls of one turn have no order of their
    own, so: for every ordering of the gold calls that keeps the turns in order (calls
    within a gold turn permuted), the model's calls of each turn are put in the order of
    the first gold call each matches (unmatched last), both sides are flattened, and the
    longest common subsequence counts the pairs that match
    (:func:`xlam.eval.scoring.compare_calls`). The result is the largest count.
    """
    flat_made = [c for turn in made for c in turn]
    flat_gold = [c for turn in gold for c in turn]
    if not flat_made or not flat_gold:
        return 0
    match = [[compare_calls([p], [g], params).valid for g in flat_gold] for p in flat_made]
    made_turns, gold_turns, k = [], [], 0
    for turn in made:
        made_turns.append(list(range(k, k + len(turn))))
        k += len(turn)
    k = 0
    for turn in gold:
        gold_turns.append(list(range(k, k + len(turn))))
        k += len(turn)
    orderings = math.prod(math.factorial(len(t)) for t in gold_turns)
    choices = (
        itertools.product(*(itertools.permutations(t) for t in gold_turns))
        if orderings <= _MAX_ORDERINGS
        else [gold_turns]
    )
    best = 0
    for choice in choices:
        order = [g for turn in choice for g in turn]
        pos = {g: i for i, g in enumerate(order)}
        seq = []
        for turn in made_turns:
            first = {
                p: min((pos[g] for g in order if match[p][g]), default=len(order)) for p in turn
            }
            seq.extend(sorted(turn, key=lambda p: first[p]))
        best = max(best, _lcs(seq, order, match))
        if best == len(flat_gold):
            break
    return best


class ToolEnv:
    """One synthetic task at a time, executed against its domain (module docstring).

    Args:
        domain: Restrict to one domain (a name or a :class:`Domain`): :meth:`reset` refuses
            a task of another; ``None``: the domain the task names.
    """

    def __init__(self, domain: str | Domain | None = None) -> None:
        if isinstance(domain, str):
            if domain not in DOMAINS:
                raise KeyError(f"no domain {domain!r} (registered: {sorted(DOMAINS)})")
            domain = DOMAINS[domain]
        self.fixed_domain = domain
        self.domain: Domain | None = domain
        self.task: dict[str, Any] = {}
        self.state: dict[str, Any] = {}
        self.tools: list[dict[str, Any]] = []
        self.user_turns: list[str] = []
        self.calls: list[list[dict[str, Any]]] = []  # per step, the calls made
        self.texts: list[str] = []  # the assistant's text turns
        self.done = True
        self._next_user = 0
        self._gold: list[list[dict[str, Any]]] = []
        self._gold_state: dict[str, Any] = {}
        self._answer_values: list[str] = []
        self._params: dict[str, Any] = {}
        self._initial: dict[str, Any] = {}

    # -- episode -----------------------------------------------------------------------------
    def reset(self, task: dict[str, Any]) -> str:
        """Start ``task``; returns its first user message.

        Raises:
            ValueError: The task has no ``metadata.synth``, no user message, or belongs to
                another domain than this environment's.
        """
        meta = (task.get("metadata") or {}).get("synth")
        tid = task.get("unique_trajectory_id")
        if not isinstance(meta, dict):
            raise ValueError(f"task {tid!r}: no metadata.synth (not a synthetic task)")
        name = meta.get("domain")
        if self.fixed_domain is not None and name != self.fixed_domain.name:
            raise ValueError(
                f"task {tid!r} is of domain {name!r}; this environment runs "
                f"{self.fixed_domain.name!r}"
            )
        if name not in DOMAINS:
            raise ValueError(f"task {tid!r}: domain {name!r} is not registered")
        self.domain = DOMAINS[name]
        self.task = task
        self.tools = task.get("tools") or []
        self._params = tool_parameters(self.tools)
        self.user_turns = [m["content"] for m in task["conversation"] if m["role"] == "user"]
        if not self.user_turns:
            raise ValueError(f"task {tid!r}: no user message")
        self._initial = copy.deepcopy(meta["initial_state"])
        self.state = copy.deepcopy(meta["initial_state"])
        self._gold = meta["calls"]
        self._answer_values = list(meta.get("answer_values") or [])
        gold_state = copy.deepcopy(meta["initial_state"])
        for turn in self._gold:
            for c in turn:
                self.domain.execute(gold_state, c["name"], copy.deepcopy(c["arguments"]))
        self._gold_state = gold_state
        self.calls, self.texts = [], []
        self._next_user = 1
        self.done = False
        return self.user_turns[0]

    def step(self, tool_calls: list[dict[str, Any]]) -> list[str]:
        """Execute one assistant turn's calls in order; one observation (JSON text) each.

        A call to a tool the task does not offer, or with arguments that are not a JSON
        object, is not executed; its observation is the error.
        """
        if self.done:
            raise RuntimeError("the episode is over: reset() first")
        assert self.domain is not None
        offered = set(self._params)
        made, out = [], []
        for c in tool_calls:
            name = c.get("name")
            try:
                args = parse_arguments(c.get("arguments"), str(name))
            except ArgumentsError as e:
                made.append({"name": name, "arguments": c.get("arguments")})
                out.append(json.dumps({"error": f"InvalidArgument: {e}"}, ensure_ascii=False))
                continue
            made.append({"name": name, "arguments": copy.deepcopy(args)})
            if name not in offered:
                err = NotFound(f"no tool named {name!r} is offered")
                out.append(err.observation())
                continue
            try:
                out.append(self.domain.execute(self.state, str(name), args))
            except Exception as e:  # a tool bug a model's input found: the episode goes on
                log.warning("%s crashed on %s: %s: %s", name, _canon(args), type(e).__name__, e)
                out.append(json.dumps({"error": f"InternalError: {e}"}, ensure_ascii=False))
        self.calls.append(made)
        return out

    def reply(self, text: str) -> str | None:
        """An assistant text turn: the next user message, or ``None`` (the episode is done)."""
        if self.done:
            raise RuntimeError("the episode is over: reset() first")
        self.texts.append(text)
        if self._next_user < len(self.user_turns):
            self._next_user += 1
            return self.user_turns[self._next_user - 1]
        self.done = True
        return None

    # -- scoring -----------------------------------------------------------------------------
    @property
    def gold_calls(self) -> list[dict[str, Any]]:
        """The ground-truth calls, flattened."""
        return [c for turn in self._gold for c in turn]

    @property
    def made_calls(self) -> list[dict[str, Any]]:
        """The model's calls so far, flattened."""
        return [c for turn in self.calls for c in turn]

    def score(self) -> dict[str, Any]:
        """``success`` and ``partial`` (defined in the module docstring), and their parts:
        ``state_ok``, ``answer_ok``, ``calls_ok``, ``matched``, ``gold_calls``,
        ``made_calls``, ``finished`` (the episode reached its end)."""
        gold, made = self.gold_calls, self.made_calls
        if gold:
            matched = matched_in_order(self.calls, self._gold, self._params)
            partial = matched / len(gold)
        else:
            matched = 0
            partial = 0.0 if made else 1.0
        state_ok = _canon(self.state) == _canon(self._gold_state)
        final = self.texts[-1] if self.texts else ""
        answer_ok = all(v in final for v in self._answer_values)
        if not gold:
            calls_ok = not made
        elif not self._answer_values and _canon(self._gold_state) == _canon(self._initial):
            calls_ok = partial == 1.0
        else:
            calls_ok = True
        return {
            "success": bool(state_ok and answer_ok and calls_ok),
            "partial": partial,
            "state_ok": state_ok,
            "answer_ok": answer_ok,
            "calls_ok": calls_ok,
            "matched": matched,
            "gold_calls": len(gold),
            "made_calls": len(made),
            "finished": self.done,
        }


__all__ = ["ToolEnv", "matched_in_order"]
