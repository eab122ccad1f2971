"""The ``trajectories`` suite: every assistant turn of a held-out set, given the gold history.

Each assistant turn of each trajectory becomes one item ``<trajectory id>#<k>`` (``k`` counts
assistant turns from 0): the request holds every message before it (the system prompt is the
trajectory's ``task_instruction``; earlier calls and tool results are the gold ones), so a
mistake in one turn never changes the next turn's prompt. The requests of one trajectory
share its message dicts (no copy per turn): backends must not modify ``Request.messages``.

Scoring of a turn:

- **Calls expected**: the output's calls go through :func:`xlam.eval.scoring.compare_calls`
  (typed by the tools' schemas, order-insensitive); an unparseable call is ``parse_error``,
  no call ``missed_call``.
- **No call expected**: valid when the output has no call (``hallucinated_call``
  otherwise; an unparseable call attempt is ``parse_error``). For a **final** turn (the
  trajectory's last assistant turn) the output must also have text (``no_answer``).

Trajectory kinds (from the gold turns): ``chat`` (no tools offered, no calls), ``no_call``
(tools offered, never called), ``single_call`` (one assistant turn with calls, one call),
``parallel`` (one assistant turn with calls, several calls), ``multi_step`` (several
assistant turns with calls).

Metrics (:meth:`TrajectorySuite.summarize`), each a fraction of turns:

- ``call_accuracy``: turns that expect calls and get them all right / turns that expect calls;
- ``tool_name_accuracy``: turns that expect calls whose called names equal the gold's as a
  multiset / turns that expect calls;
- ``argument_accuracy``: of the turns whose names are right, those whose arguments are all
  right too (so ``call_accuracy = tool_name_accuracy * argument_accuracy``);
- ``relevance_accuracy``: turns where the output calls (or tries to) exactly when a call is
  expected / all turns;
- ``answer_rate``: final turns without expected calls that get non-empty text / such turns;
- ``turn_accuracy``: valid turns / all turns.

A metric no turn qualifies for (``call_accuracy`` on a chat-only set) is left out rather
than reported as 0, so every value in ``metrics`` is a float that can be logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xlam.data.schema import SchemaError, Trajectory, read_trajectories
from xlam.eval.core import Backend, Completion, Emit, Request, Suite, Verdict, category_table
from xlam.eval.scoring import score_turn, tool_parameters

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("chat", "no_call", "single_call", "parallel", "multi_step")
METRICS: tuple[str, ...] = (
    "call_accuracy",
    "tool_name_accuracy",
    "argument_accuracy",
    "relevance_accuracy",
    "answer_rate",
    "turn_accuracy",
)


def trajectory_kind(t: Trajectory) -> str:
    """The kind of a trajectory (see the module docstring)."""
    call_turns = [m for m in t.conversation if m.role == "assistant" and m.tool_calls]
    if not call_turns:
        return "no_call" if t.tools else "chat"
    if len(call_turns) > 1:
        return "multi_step"
    return "parallel" if len(call_turns[0].tool_calls) > 1 else "single_call"


@dataclass
class _Item:
    """One assistant turn to score."""

    request: Request
    traj: Trajectory
    kind: str
    turn: int
    final: bool


def _items(t: Trajectory) -> Iterator[_Item]:
    messages, tools = t.to_chat()
    offset = len(messages) - len(t.conversation)  # the system message, when there is one
    kind = trajectory_kind(t)
    turns = [i for i, m in enumerate(t.conversation) if m.role == "assistant"]
    for k, i in enumerate(turns):
        m = t.conversation[i]
        calls = [{"name": c.name, "arguments": c.arguments} for c in m.tool_calls]
        req = Request(
            id=f"{t.id}#{k}",
            messages=messages[: offset + i],
            tools=tools,
            gold=calls or None,
            gold_text=None if calls else m.content,
        )
        yield _Item(req, t, kind, k, final=k == len(turns) - 1)


class TrajectorySuite(Suite):
    """Every assistant turn of unified trajectories, scored against the gold turn.

    Args:
        path: Unified JSONL file(s) to read.
        trajectories: Trajectories given directly (a mixture's validation split); used
            together with ``path`` when both are given.
        limit: Keep the first ``limit`` trajectories (all their turns).
        batch_size: Requests per backend call; default the backend's ``batch_size``.

    Raises:
        SchemaError: A bad line (naming the file, line and rule), two trajectories with
            the same id, or no trajectory at all.
    """

    name = "trajectories"
    version = "trajectories-1"

    def __init__(
        self,
        path: str | Path | list[str | Path] | None = None,
        trajectories: list[Trajectory] | None = None,
        limit: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        paths = [] if path is None else [path] if isinstance(path, str | Path) else list(path)
        trajs: list[Trajectory] = []
        origin: dict[str, str] = {}
        for p in paths:
            for t in read_trajectories(p):
                self._check_unique(t, f"{p}", origin)
                trajs.append(t)
        for t in trajectories or []:
            self._check_unique(t, "the given trajectories", origin)
            trajs.append(t)
        if not trajs:
            where = ", ".join(str(p) for p in paths) or "no path and no trajectories given"
            raise SchemaError(f"trajectories suite: no trajectory to evaluate ({where})")
        if limit is not None:
            trajs = trajs[:limit]
        self.trajectories = trajs
        self.batch_size = batch_size
        self._items = [it for t in trajs for it in _items(t)]
        self._params = {t.id: tool_parameters(t.tools) for t in trajs}
        silent = [t.id for t in trajs if not any(m.role == "assistant" for m in t.conversation)]
        if silent:
            # Nothing to score in them; said out loud so that a count that looks short is
            # explained.
            log.warning(
                "%d trajectories have no assistant turn and give no item: %s",
                len(silent),
                ", ".join(silent[:5]) + (" ..." if len(silent) > 5 else ""),
            )
        self.without_turns = silent

    @staticmethod
    def _check_unique(t: Trajectory, where: str, origin: dict[str, str]) -> None:
        if t.id in origin:
            raise SchemaError(
                f"{where}: duplicate unique_trajectory_id {t.id!r} (first seen in "
                f"{origin[t.id]}); item ids would collide"
            )
        origin[t.id] = where

    def ids(self) -> list[str]:
        return [it.request.id for it in self._items]

    def requests(self) -> list[Request]:
        """Every request, in order (for backends that prefetch or tests)."""
        return [it.request for it in self._items]

    def run(self, backend: Backend, skip: set[str], emit: Emit) -> None:
        todo = [it for it in self._items if it.request.id not in skip]
        size = self.batch_size or backend.batch_size or 1
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            outs = backend.generate([it.request for it in batch])
            if len(outs) != len(batch):
                raise RuntimeError(
                    f"backend {backend.name!r} returned {len(outs)} completions for "
                    f"{len(batch)} requests"
                )
            for it, out in zip(batch, outs, strict=True):
                emit(self.score(it, out))

    def score(self, item: _Item, out: Completion) -> Verdict:
        """The verdict of one turn's completion."""
        extra: dict[str, Any] = {"kind": item.kind, "source": item.traj.source}
        verdict, text = score_turn(
            item.request,
            out,
            self._params[item.traj.id],
            category=item.traj.source,
            turn=item.turn,
            final=item.final,
            extra=extra,
        )
        if text is None:
            return verdict
        if item.final and not text:
            verdict.error_type = "no_answer"
            verdict.detail = f"final turn {item.turn}: no text answer"
            return verdict
        verdict.valid = True
        return verdict

    def summarize(self, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
        """:func:`category_table` (by source) plus ``metrics``, ``counts``, ``by_kind`` and
        ``by_source`` (each ``{metric: value, "n": turns}``)."""
        out = category_table(verdicts)
        out["metrics"], out["counts"] = turn_metrics(verdicts)
        for key, field_ in (("by_kind", "kind"), ("by_source", "source")):
            groups: dict[str, list[dict[str, Any]]] = {}
            for v in verdicts:
                groups.setdefault(str(v["extra"][field_]), []).append(v)
            table = {}
            for g, vs in sorted(groups.items()):
                metrics, counts = turn_metrics(vs)
                table[g] = {**metrics, "n": counts["turns"]}
            out[key] = table
        return out


def turn_metrics(verdicts: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, int]]:
    """``(metrics, counts)`` of turn verdict dicts (definitions in the module docstring).

    A metric whose denominator is 0 is left out of ``metrics``.
    """
    n = len(verdicts)
    call = [v for v in verdicts if v["extra"]["expects_call"]]
    named = [v for v in call if v["extra"]["name_match"]]
    final_text = [v for v in verdicts if v["extra"]["final"] and not v["extra"]["expects_call"]]
    counts = {
        "turns": n,
        "call_turns": len(call),
        "name_matched_turns": len(named),
        "final_text_turns": len(final_text),
    }
    parts = {
        "call_accuracy": (sum(bool(v["valid"]) for v in call), len(call)),
        "tool_name_accuracy": (len(named), len(call)),
        "argument_accuracy": (sum(bool(v["extra"]["args_match"]) for v in named), len(named)),
        "relevance_accuracy": (sum(bool(v["extra"]["relevance_ok"]) for v in verdicts), n),
        "answer_rate": (sum(bool(v["extra"]["answered"]) for v in final_text), len(final_text)),
        "turn_accuracy": (sum(bool(v["valid"]) for v in verdicts), n),
    }
    metrics = {k: num / den for k, (num, den) in parts.items() if den}
    return metrics, counts


__all__ = ["KINDS", "METRICS", "TrajectorySuite", "trajectory_kind", "turn_metrics"]
