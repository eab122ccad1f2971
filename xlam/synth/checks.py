"""APIGen's three checks on a synthetic trajectory: format, execution, semantic.

Each check returns its problems as :class:`~xlam.data.verify.Violation` (a rule name and a
message); :func:`check_all` runs them in order and stops at the first stage with a problem
(a later stage cannot trust what an earlier one rejected). :class:`CheckReport` counts the
outcomes per stage and rule.

**Format** (:func:`check_format`): the record is a unified trajectory
(:meth:`Trajectory.from_dict <xlam.data.schema.Trajectory.from_dict>`; rule ``schema``),
it breaks none of the rules of ``xlam-data verify`` (:class:`xlam.data.verify.Verifier`:
``role_order``, ``orphan_tool_result``, ``unknown_tool``, ``arguments_invalid``,
``call_id``...), and its ground truth is readable (``synth_metadata``: ``metadata.synth``
holds a known kind, a registered domain, an object ``initial_state``, string
``answer_values`` and per-turn ``calls``). A call to a tool the trajectory does not offer
fails here (``unknown_tool``): it is a structural fault that needs no execution, and
``xlam-data verify`` rejects it too.

**Execution** (:func:`check_execution`): every call, replayed in order from
``initial_state`` against the domain's implementation
(:meth:`Domain.execute <xlam.synth.core.Domain.execute>`), must give exactly the text of
the tool message that answers it (``observation_mismatch``); a call nobody answers is
``unanswered_call``; an implementation that crashes (anything but a
:class:`~xlam.synth.core.ToolError`) is ``tool_crash``.

**Semantic** (:func:`check_semantic`, rule-based):

- ``calls_mismatch``: the calls of each assistant turn equal ``metadata.synth.calls``
  (names and arguments, exactly; JSON equality, so ``1 != 1.0 != true``);
- ``unoffered_tool``: every called tool is offered (a backstop: format already rejects it);
- ``no_final_answer``: the last message is an assistant text turn;
- ``answer_missing``: the final assistant text contains every ``answer_values`` item;
- ``answer_ungrounded``: every answer value comes from an observation: it equals a value
  of one (a JSON leaf, dict keys included, written by :func:`~xlam.synth.core.format_value`)
  or is a word of a string leaf ("a word": a match not touching a letter, digit or ``.``,
  so ``5`` is not found in ``15`` nor in ``5.2``). The user's text does not count: an
  answer value is what the tools produced (:meth:`EpisodeBuilder.say
  <xlam.synth.core.EpisodeBuilder.say>`), and a value the user gave that a tool echoes is
  in its observation anyway;
- ``kind_shape``: the calls have the shape the task kind needs: ``single`` one call;
  ``parallel`` a turn with two calls or more; ``similar_choice`` a call and two offered
  tools or more; ``multi_step`` two call turns or more; ``error_retry`` an error
  observation, then a call that succeeds; ``ask_missing`` an assistant text turn and a user
  turn before the first call; ``refuse`` no call; ``answer_from_obs`` a call and an answer
  value.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from xlam.data.schema import SchemaError, Trajectory, parse_arguments
from xlam.data.verify import Verifier, Violation
from xlam.synth.core import DOMAINS, KINDS, format_value

STAGES: tuple[str, ...] = ("format", "execution", "semantic")

# A problem is a verify Violation: the same (rule, message) pair ``xlam-data verify`` writes.
Problem = Violation

_MAX_SHOWN = 120


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _canon(v: Any) -> str:
    """JSON text that tells ``1``, ``1.0`` and ``true`` apart and ignores key order."""
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


def synth_meta(traj: dict[str, Any]) -> dict[str, Any]:
    """``traj["metadata"]["synth"]`` (``{}`` when absent)."""
    meta = traj.get("metadata") if isinstance(traj, dict) else None
    synth = meta.get("synth") if isinstance(meta, dict) else None
    return synth if isinstance(synth, dict) else {}


# -- format ---------------------------------------------------------------------------------
_DEFAULT_VERIFIER: Verifier | None = None


def _verifier() -> Verifier:
    global _DEFAULT_VERIFIER
    if _DEFAULT_VERIFIER is None:
        # One trajectory at a time: ids are checked across a file by the caller's verifier.
        _DEFAULT_VERIFIER = Verifier(check_ids=False)
    return _DEFAULT_VERIFIER


def _check_meta(traj: dict[str, Any]) -> list[Problem]:
    meta = traj.get("metadata") or {}
    meta = meta.get("synth") if isinstance(meta, dict) else None
    if not isinstance(meta, dict):
        return [Problem("synth_metadata", "metadata.synth is missing or not an object")]
    out = []
    bad = out.append
    if meta.get("kind") not in KINDS:
        bad(Problem("synth_metadata", f"kind {meta.get('kind')!r} is not one of {KINDS}"))
    if meta.get("domain") not in DOMAINS:
        bad(Problem("synth_metadata", f"domain {meta.get('domain')!r} is not registered"))
    if not isinstance(meta.get("initial_state"), dict):
        bad(Problem("synth_metadata", "initial_state must be an object"))
    values = meta.get("answer_values")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        bad(Problem("synth_metadata", "answer_values must be a list of strings"))
    calls = meta.get("calls")
    ok = isinstance(calls, list) and all(
        isinstance(turn, list)
        and all(
            isinstance(c, dict)
            and isinstance(c.get("name"), str)
            and isinstance(c.get("arguments"), dict)
            for c in turn
        )
        for turn in calls
    )
    if not ok:
        bad(Problem("synth_metadata", 'calls must be a list (per turn) of [{"name", "arguments"}]'))
    return out


def check_format(traj: dict[str, Any], verifier: Verifier | None = None) -> list[Problem]:
    """The format check (rules in the module docstring).

    Args:
        traj: A unified trajectory dict.
        verifier: The rules' settings and seen ids (pass one per file to also reject
            repeated ids, ``duplicate_id``); default: no length limit changes, no id check.
    """
    try:
        t = Trajectory.from_dict(traj)
    except SchemaError as e:
        return [Problem("schema", str(e))]
    except RecursionError:
        return [Problem("too_deep", "the record is nested too deeply")]
    problems = list((verifier or _verifier()).check(t))
    return problems + _check_meta(traj)


# -- execution ------------------------------------------------------------------------------
def check_execution(traj: dict[str, Any]) -> list[Problem]:
    """The execution check: replay every call from the initial state (module docstring).

    Expects a trajectory that passed :func:`check_format`.
    """
    meta = synth_meta(traj)
    domain = DOMAINS[meta["domain"]]
    state = copy.deepcopy(meta["initial_state"])
    conv = traj["conversation"]
    results = {m.get("tool_call_id"): (i, m) for i, m in enumerate(conv) if m["role"] == "tool"}
    out = []
    for i, m in enumerate(conv):
        if m["role"] != "assistant":
            continue
        for c in m.get("tool_calls") or []:
            fn = c.get("function", c)
            name, args = fn["name"], parse_arguments(fn.get("arguments"), fn["name"])
            try:
                obs = domain.execute(state, name, copy.deepcopy(args))
            except Exception as e:  # a bug in the tool, not a ToolError
                out.append(Problem("tool_crash", f"message {i}: {name}: {type(e).__name__}: {e}"))
                return out  # the state is now unknown: later results cannot be judged
            found = results.get(c.get("id"))
            if found is None:
                out.append(
                    Problem("unanswered_call", f"message {i}: call {c.get('id')!r} ({name})")
                )
                continue
            j, tool_msg = found
            if tool_msg.get("content") != obs:
                out.append(
                    Problem(
                        "observation_mismatch",
                        f"message {j} ({name}): recorded {_short(tool_msg.get('content'))}, "
                        f"replay gives {_short(obs)}",
                    )
                )
    return out


# -- semantic -------------------------------------------------------------------------------
def conversation_calls(conversation: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Per assistant turn, its calls as ``[{"name", "arguments"}]`` (arguments decoded)."""
    out = []
    for m in conversation:
        if m.get("role") != "assistant":
            continue
        turn = []
        for c in m.get("tool_calls") or []:
            fn = c.get("function", c)
            turn.append(
                {"name": fn["name"], "arguments": parse_arguments(fn.get("arguments"), fn["name"])}
            )
        out.append(turn)
    return out


def _leaves(v: Any) -> list[Any]:
    if isinstance(v, dict):
        return [x for k, val in v.items() for x in (k, *_leaves(val))]
    if isinstance(v, list):
        return [x for val in v for x in _leaves(val)]
    return [v]


def contains_word(text: str, value: str) -> bool:
    """Whether ``value`` occurs in ``text`` not touching a letter, digit or ``.``."""
    if not value:
        return False
    pattern = r"(?<![\w.])" + re.escape(value) + r"(?!\w|\.\d)"
    return re.search(pattern, text) is not None


def grounded(value: str, observations: list[str]) -> bool:
    """Whether an answer value comes from an observation (module rules)."""
    for obs in observations:
        try:
            leaves = _leaves(json.loads(obs))
        except ValueError:
            leaves = [obs]
        for leaf in leaves:
            if format_value(leaf) == value or (
                isinstance(leaf, str) and contains_word(leaf, value)
            ):
                return True
    return False


def _kind_shape(kind: str, traj: dict[str, Any], calls: list[list[dict[str, Any]]]) -> str | None:
    """Why the calls do not fit ``kind`` (``None`` when they do)."""
    conv = traj["conversation"]
    n_calls = sum(len(t) for t in calls)
    call_turns = [t for t in calls if t]
    if kind == "single" and n_calls != 1:
        return f"a single task makes exactly one call, not {n_calls}"
    if kind == "parallel" and not any(len(t) >= 2 for t in calls):
        return "a parallel task needs a turn with two calls or more"
    if kind == "similar_choice" and (not n_calls or len(traj["tools"]) < 2):
        return "a similar_choice task needs a call among two offered tools or more"
    if kind == "multi_step" and len(call_turns) < 2:
        return f"a multi_step task needs two call turns or more, not {len(call_turns)}"
    if kind == "refuse" and n_calls:
        return f"a refuse task makes no call, not {n_calls}"
    if kind == "answer_from_obs" and (not n_calls or not synth_meta(traj)["answer_values"]):
        return "an answer_from_obs task needs a call and an answer value"
    if kind == "error_retry":
        errors = [i for i, m in enumerate(conv) if m["role"] == "tool" and _is_error(m["content"])]
        ok_after = errors and any(
            m["role"] == "tool" and not _is_error(m["content"]) for m in conv[errors[0] + 1 :]
        )
        if not ok_after:
            return "an error_retry task needs an error observation, then a call that succeeds"
    if kind == "ask_missing":
        first = next(
            (i for i, m in enumerate(conv) if m["role"] == "assistant" and m.get("tool_calls")),
            None,
        )
        before = conv[:first]
        asked = any(
            m["role"] == "assistant" and conv[k + 1]["role"] == "user"
            for k, m in enumerate(before[:-1])
        )
        if first is None or not asked:
            return "an ask_missing task needs a question and the user's reply before the call"
    return None


def _is_error(content: str) -> bool:
    try:
        obj = json.loads(content)
    except ValueError:
        return False
    return isinstance(obj, dict) and set(obj) == {"error"}


def check_semantic(traj: dict[str, Any]) -> list[Problem]:
    """The semantic check (rules in the module docstring).

    Expects a trajectory that passed :func:`check_format`.
    """
    meta = synth_meta(traj)
    conv = traj["conversation"]
    out = []
    bad = out.append
    got = conversation_calls(conv)
    gold = meta["calls"]
    if len(got) != len(gold):
        bad(
            Problem(
                "calls_mismatch", f"{len(got)} assistant turns; the ground truth has {len(gold)}"
            )
        )
    for k, (g, want) in enumerate(zip(got, gold)):
        if _canon(g) != _canon(want):
            bad(Problem("calls_mismatch", f"assistant turn {k}: {_short(g)} != {_short(want)}"))
    offered = {t["function"]["name"] for t in traj["tools"]}
    for c in (c for turn in got for c in turn):
        if c["name"] not in offered:
            bad(Problem("unoffered_tool", f"{c['name']!r} is called but not offered"))
    last = conv[-1]
    if last["role"] != "assistant" or last.get("tool_calls") or not last["content"].strip():
        bad(Problem("no_final_answer", "the episode does not end with an assistant text turn"))
    final = (last.get("content") or "") if last["role"] == "assistant" else ""
    observations = [m["content"] for m in conv if m["role"] == "tool"]
    for v in meta["answer_values"]:
        if v not in final:
            bad(Problem("answer_missing", f"the final answer does not contain {v!r}"))
        if not grounded(v, observations):
            bad(Problem("answer_ungrounded", f"{v!r} is in no observation"))
    why = _kind_shape(meta["kind"], traj, got)
    if why:
        bad(Problem("kind_shape", why))
    return out


# -- all three ------------------------------------------------------------------------------
def check_all(
    traj: dict[str, Any], verifier: Verifier | None = None
) -> tuple[str | None, list[Problem]]:
    """Format, then execution, then semantic; stop at the first stage with a problem.

    Args:
        traj: A unified trajectory dict with ``metadata.synth``.
        verifier: For the format check (see :func:`check_format`).

    Returns:
        ``(stage, problems)``: the failed stage (one of :data:`STAGES`) and its problems,
        or ``(None, [])`` when all three pass.
    """
    problems = check_format(traj, verifier)
    if problems:
        return "format", problems
    problems = check_execution(traj)
    if problems:
        return "execution", problems
    problems = check_semantic(traj)
    if problems:
        return "semantic", problems
    return None, []


@dataclass
class CheckReport:
    """Outcomes of :func:`check_all` over many trajectories.

    Attributes:
        checked: Trajectories checked.
        passed: Those that passed all three stages.
        failed: Rejects per stage (every stage present, 0 included).
        rules: Per stage, rejects per rule (a trajectory counts once per distinct rule).
        examples: Per stage, the first ``max_examples`` rejects (id and problems).
        max_examples: How many examples to keep per stage.
    """

    checked: int = 0
    passed: int = 0
    failed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    rules: dict[str, Counter[str]] = field(default_factory=lambda: {s: Counter() for s in STAGES})
    examples: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {s: [] for s in STAGES}
    )
    max_examples: int = 3

    @property
    def rejected(self) -> int:
        return sum(self.failed.values())

    def add(self, traj_id: str, stage: str | None, problems: list[Problem]) -> None:
        """Count one outcome of :func:`check_all`."""
        self.checked += 1
        if stage is None:
            self.passed += 1
            return
        self.failed[stage] += 1
        self.rules[stage].update({p.rule for p in problems})
        if len(self.examples[stage]) < self.max_examples:
            self.examples[stage].append(
                {"id": traj_id, "problems": [p.to_dict() for p in problems[:5]]}
            )

    def check(
        self, traj: dict[str, Any], verifier: Verifier | None = None
    ) -> tuple[str | None, list[Problem]]:
        """:func:`check_all` and :meth:`add` in one call."""
        stage, problems = check_all(traj, verifier)
        self.add(str(traj.get("unique_trajectory_id")), stage, problems)
        return stage, problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "passed": self.passed,
            "rejected": self.rejected,
            "failed": dict(self.failed),
            "rules": {s: dict(sorted(c.items())) for s, c in self.rules.items()},
            "examples": self.examples,
        }


__all__ = [
    "STAGES",
    "CheckReport",
    "Problem",
    "check_all",
    "check_execution",
    "check_format",
    "check_semantic",
    "contains_word",
    "conversation_calls",
    "grounded",
    "synth_meta",
]
