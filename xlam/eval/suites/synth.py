"""The ``synth`` suite: synthetic tool-use tasks, scored turn by turn and as live episodes.

The tasks are synthetic trajectories (:mod:`xlam.synth`): a file written by ``xlam-data
synth`` (its ``test.jsonl``), or generated on the fly (``n``, ``seed``, ``split``). Every
task must pass the three checks (:func:`xlam.synth.checks.check_all`), else the suite
refuses it, naming it. Two views of each task:

- **Next action** (``<id>#<k>``, ``k`` counting assistant turns from 0): the request holds
  the gold history before assistant turn ``k``. A turn with calls is scored by
  :func:`xlam.eval.scoring.compare_calls` (typed, order-insensitive); a text turn is valid
  when the output makes no call and has text (``hallucinated_call``, ``no_answer``), and,
  for the final turn, carries every answer value of the task (else ``wrong_value``).
- **Episode** (``<id>#episode``): the model runs in a :class:`xlam.synth.env.ToolEnv`: its
  calls are executed and the results fed back; when it answers in text, the next user turn
  comes (an ``ask_missing`` task's answer), or the episode ends. More than ``max_steps``
  calling steps in one user turn ends it (``force_terminated``). Scored by
  :meth:`ToolEnv.score <xlam.synth.env.ToolEnv.score>`: valid when ``success``.
  Episodes run ``batch_size`` at a time, one generation per active episode per backend
  call (lockstep, like BFCL's multi-turn category).

``Verdict.category`` is the task kind (:data:`xlam.synth.core.KINDS`), so
:func:`~xlam.eval.core.category_table`'s accuracy mixes both views: turns and episodes.

Metrics (:meth:`SynthSuite.summarize`; one left out when no item qualifies):

- ``exact_match_single``: next-action turns with calls of ``single`` tasks, all calls right;
- ``exact_match_parallel``: the same for ``parallel`` tasks;
- ``next_action_multi_turn``: valid next-action turns / all turns of multi-turn tasks: those
  with two call turns or more, or two user turns or more (``multi_step``, ``error_retry``,
  ``ask_missing``...);
- ``next_action``: valid next-action turns / all turns;
- ``episode_success``: episodes with ``success`` / episodes;
- ``episode_partial``: the mean ``partial`` of the episodes;
- ``tool_name_accuracy``: next-action turns that expect calls whose calls name the right
  tools (any arguments);
- ``relevance_accuracy``: next-action turns that call exactly when a call is expected.

``by_kind`` gives, per kind, ``next_action``, ``call_accuracy`` (turns with calls),
``episode_success``, ``episode_partial`` and the counts ``turns`` and ``episodes``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlam.data.schema import SchemaError, Trajectory
from xlam.eval.core import (
    Backend,
    Completion,
    Emit,
    Request,
    Suite,
    Verdict,
    category_table,
    prompt_hash,
)
from xlam.eval.scoring import compare_calls, score_turn, tool_parameters
from xlam.synth.env import ToolEnv

METRICS: tuple[str, ...] = (
    "exact_match_single",
    "exact_match_parallel",
    "next_action_multi_turn",
    "next_action",
    "episode_success",
    "episode_partial",
    "tool_name_accuracy",
    "relevance_accuracy",
)


def is_multi_turn(traj: dict[str, Any]) -> bool:
    """Two call turns or more, or two user turns or more."""
    conv = traj["conversation"]
    call_turns = sum(1 for m in conv if m["role"] == "assistant" and m.get("tool_calls"))
    users = sum(1 for m in conv if m["role"] == "user")
    return call_turns >= 2 or users >= 2


@dataclass
class _Task:
    """One synthetic task and what both views need of it."""

    traj: dict[str, Any]
    messages: list[dict[str, Any]]  # the whole gold conversation, chat format
    offset: int  # messages before the conversation (the system prompt)
    tools: list[dict[str, Any]]
    params: dict[str, Any]
    kind: str
    multi_turn: bool

    @property
    def id(self) -> str:
        return self.traj["unique_trajectory_id"]

    @property
    def meta(self) -> dict[str, Any]:
        return self.traj["metadata"]["synth"]

    def base_extra(self) -> dict[str, Any]:
        m = self.meta
        return {
            "kind": self.kind,
            "domain": m["domain"],
            "template": m["template"],
            "multi_turn": self.multi_turn,
        }


@dataclass
class _Turn:
    """One next-action item."""

    request: Request
    task: _Task
    turn: int
    final: bool


@dataclass
class _Episode:
    """An episode in progress."""

    task: _Task
    env: ToolEnv = field(default_factory=ToolEnv)
    messages: list[dict[str, Any]] = field(default_factory=list)
    assistant_turns: int = 0  # assistant messages so far: indexes the gold for the oracle
    generations: int = 0
    steps: int = 0  # calling steps in the current user turn
    raw: list[str] = field(default_factory=list)
    parse_errors: list[str] = field(default_factory=list)
    prompt_hash: str | None = None
    done: bool = False
    force_terminated: bool = False
    backend_error: str | None = None

    def start(self) -> None:
        first = self.env.reset(self.task.traj)
        self.messages = [*self.task.messages[: self.task.offset]]
        self.messages.append({"role": "user", "content": first})

    def request(self) -> Request:
        gold = self.task.meta["calls"]
        k = self.assistant_turns
        calls = gold[k] if k < len(gold) else None
        text = None
        if k < len(gold) and not calls:
            turns = [m for m in self.task.traj["conversation"] if m["role"] == "assistant"]
            text = turns[k]["content"]
        return Request(
            id=f"{self.task.id}#episode.{self.generations}",
            messages=[dict(m) for m in self.messages],
            tools=self.task.tools,
            gold=calls or None,
            gold_text=text,
        )


def _load(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{lineno}", json.loads(line)
            except json.JSONDecodeError as e:
                raise SchemaError(f"{path}:{lineno}: invalid JSON: {e}") from None


class SynthSuite(Suite):
    """Synthetic tool-use tasks: next action per turn and live episodes (module docstring).

    Args:
        path: A JSONL of synthetic trajectories (``xlam-data synth``'s ``test.jsonl``);
            ``None``: generate ``n`` of ``split`` with ``seed``.
        n: Tasks to generate when ``path`` is ``None``.
        seed: Their seed.
        split: Their split (``test``: held-out phrasings and tool combinations).
        limit: Keep the first ``limit`` tasks.
        batch_size: Requests per backend call (default: the backend's ``batch_size``);
            episodes run this many at a time.
        max_steps: Calling steps allowed per user turn in an episode.

    Raises:
        SchemaError: A bad line or a task that fails a check (naming the file and line, or
            the task, and the stage and rule), a repeated id, or no task at all.
        ValueError: ``limit``, ``batch_size`` or ``max_steps`` out of range.
    """

    name = "synth"
    version = "synth-1"

    def __init__(
        self,
        path: str | Path | None = None,
        n: int = 200,
        seed: int = 1,
        split: str = "test",
        limit: int | None = None,
        batch_size: int | None = None,
        max_steps: int = 6,
    ) -> None:
        from xlam.synth.checks import check_all, synth_meta
        from xlam.synth.core import DOMAINS
        from xlam.synth.generate import generate, load_domains

        if limit is not None and int(limit) < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.max_steps = int(max_steps)
        if path is not None:
            records = list(_load(Path(path)))
            if any(synth_meta(t).get("domain") not in DOMAINS for _, t in records):
                load_domains()
        else:
            count = int(n) if limit is None else min(int(n), int(limit))
            records = [
                (f"generated {split} item {i} (seed {seed})", t)
                for i, t in enumerate(generate(count, int(seed), split))
            ]
        if limit is not None:
            records = records[: int(limit)]
        seen: dict[str, str] = {}
        self.tasks: list[_Task] = []
        for where, traj in records:
            stage, problems = check_all(traj)
            if stage is not None:
                p = problems[0]
                raise SchemaError(f"{where}: fails the {stage} check: {p.rule}: {p.message}")
            tid = traj["unique_trajectory_id"]
            if tid in seen:
                raise SchemaError(f"{where}: id {tid!r} already used at {seen[tid]}")
            seen[tid] = where
            self.tasks.append(self._task(traj))
        if not self.tasks:
            raise SchemaError(f"synth suite: no task to evaluate ({path or f'n={n}'})")
        self._turns = [t for task in self.tasks for t in self._turn_items(task)]

    @staticmethod
    def _task(traj: dict[str, Any]) -> _Task:
        messages, tools = Trajectory.from_dict(traj).to_chat()
        return _Task(
            traj=traj,
            messages=messages,
            offset=len(messages) - len(traj["conversation"]),
            tools=tools,
            params=tool_parameters(tools),
            kind=traj["metadata"]["synth"]["kind"],
            multi_turn=is_multi_turn(traj),
        )

    @staticmethod
    def _turn_items(task: _Task) -> list[_Turn]:
        conv = task.traj["conversation"]
        turns = [i for i, m in enumerate(conv) if m["role"] == "assistant"]
        out = []
        for k, i in enumerate(turns):
            calls = task.meta["calls"][k]
            req = Request(
                id=f"{task.id}#{k}",
                messages=task.messages[: task.offset + i],
                tools=task.tools,
                gold=calls or None,
                gold_text=None if calls else conv[i]["content"],
            )
            out.append(_Turn(req, task, k, final=k == len(turns) - 1))
        return out

    def ids(self) -> list[str]:
        """Per task: its next-action turns, then its episode."""
        turns: dict[str, list[str]] = {}
        for t in self._turns:
            turns.setdefault(t.task.id, []).append(t.request.id)
        return [i for task in self.tasks for i in (*turns[task.id], f"{task.id}#episode")]

    def requests(self) -> list[Request]:
        """The next-action requests, in order."""
        return [t.request for t in self._turns]

    # -- running ---------------------------------------------------------------------------
    def run(self, backend: Backend, skip: set[str], emit: Emit) -> None:
        size = self.batch_size or backend.batch_size or 1
        todo = [t for t in self._turns if t.request.id not in skip]
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            outs = self._generate(backend, [t.request for t in batch])
            for t, out in zip(batch, outs, strict=True):
                emit(self.score_turn(t, out))
        episodes = [task for task in self.tasks if f"{task.id}#episode" not in skip]
        for start in range(0, len(episodes), size):
            self._run_episodes(episodes[start : start + size], backend, emit)

    @staticmethod
    def _generate(backend: Backend, requests: list[Request]) -> list[Completion]:
        outs = backend.generate(requests)
        if len(outs) != len(requests):
            raise RuntimeError(
                f"backend {backend.name!r} returned {len(outs)} completions for "
                f"{len(requests)} requests"
            )
        return outs

    def _run_episodes(self, tasks: list[_Task], backend: Backend, emit: Emit) -> None:
        episodes = [_Episode(task) for task in tasks]
        for e in episodes:
            e.start()
        while active := [e for e in episodes if not e.done]:
            self._step(active, backend)
            for e in active:
                if e.done:
                    emit(self.score_episode(e))

    def _step(self, active: list[_Episode], backend: Backend) -> None:
        """One generation per active episode; execute calls or deliver the next user turn."""
        requests = [e.request() for e in active]
        outs = self._generate(backend, requests)
        for e, req, out in zip(active, requests, outs, strict=True):
            if e.prompt_hash is None:
                e.prompt_hash = prompt_hash(out.prompt or [*req.messages, {"tools": req.tools}])
            e.generations += 1
            if out.error is not None:
                e.backend_error, e.done = out.error, True
                continue
            e.raw.append(out.text)
            p = out.parse()
            if p.error:
                e.parse_errors.append(f"step {e.generations - 1}: {p.error}")
            e.assistant_turns += 1
            if p.calls:
                calls = [{"name": c.name, "arguments": c.arguments} for c in p.calls]
                observations = e.env.step(calls)
                ids = [f"call_{e.generations}_{j}" for j in range(len(calls))]
                e.messages.append(
                    {
                        "role": "assistant",
                        "content": p.content or "",
                        "tool_calls": [
                            {"id": i, "type": "function", "function": c}
                            for i, c in zip(ids, calls, strict=True)
                        ],
                    }
                )
                for i, c, obs in zip(ids, calls, observations, strict=True):
                    e.messages.append(
                        {"role": "tool", "tool_call_id": i, "name": c["name"], "content": obs}
                    )
                e.steps += 1
                if e.steps > self.max_steps:
                    e.force_terminated, e.done = True, True
                continue
            text = p.content or ""
            e.messages.append({"role": "assistant", "content": text})
            nxt = e.env.reply(text)
            if nxt is None:
                e.done = True
            else:
                e.messages.append({"role": "user", "content": nxt})
                e.steps = 0

    # -- scoring ---------------------------------------------------------------------------
    def score_turn(self, item: _Turn, out: Completion) -> Verdict:
        """The verdict of one next-action turn."""
        task = item.task
        v, text = score_turn(
            item.request,
            out,
            task.params,
            category=task.kind,
            turn=item.turn,
            final=item.final,
            extra={"view": "next_action", **task.base_extra()},
        )
        if text is None:
            return v
        if not text:
            v.error_type, v.detail = "no_answer", f"turn {item.turn}: no text"
            return v
        if item.final:
            missing = [x for x in task.meta["answer_values"] if x not in text]
            if missing:
                v.error_type = "wrong_value"
                v.detail = f"the answer lacks {', '.join(repr(x) for x in missing)}"
                return v
        v.valid = True
        return v

    def score_episode(self, e: _Episode) -> Verdict:
        """The verdict of a finished episode."""
        task = e.task
        s = e.env.score() if e.backend_error is None else None
        extra: dict[str, Any] = {
            "view": "episode",
            **task.base_extra(),
            "generations": e.generations,
            "force_terminated": e.force_terminated,
            **(s or {"success": False, "partial": 0.0}),
        }
        if e.parse_errors:
            extra["parse_errors"] = e.parse_errors
        v = Verdict(
            id=f"{task.id}#episode",
            category=task.kind,
            valid=bool(s and s["success"]),
            prompt_hash=e.prompt_hash,
            raw=e.raw,
            calls=e.env.calls,
            extra=extra,
        )
        if s is None:
            v.error_type, v.detail = "backend_error", e.backend_error
        elif not v.valid:
            v.error_type, v.detail = self._why(e, s)
        return v

    @staticmethod
    def _why(e: _Episode, s: dict[str, Any]) -> tuple[str, str]:
        """The first reason a failed episode failed, as an error type and a message."""
        if e.parse_errors and not e.env.calls:
            return "parse_error", e.parse_errors[0]
        gold, made = e.env.gold_calls, e.env.made_calls
        if not s["state_ok"] or not s["calls_ok"]:
            m = compare_calls(made, gold, e.task.params)
            if not m.valid:
                return m.error_type or "wrong_value", m.detail or ""
            return "wrong_value", "the final state differs from the gold calls' state"
        if not e.env.texts or not e.env.texts[-1].strip():
            return "no_answer", "the episode ends without a text answer"
        final = e.env.texts[-1]
        missing = [x for x in e.task.meta["answer_values"] if x not in final]
        return "wrong_value", f"the answer lacks {', '.join(repr(x) for x in missing)}"

    # -- summary ---------------------------------------------------------------------------
    def summarize(self, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
        """:func:`category_table` (by kind) plus ``metrics`` and ``by_kind`` (module
        docstring)."""
        out = category_table(verdicts)
        out["metrics"] = synth_metrics(verdicts)
        kinds = sorted({v["extra"]["kind"] for v in verdicts})
        by_kind = {}
        for k in kinds:
            vs = [v for v in verdicts if v["extra"]["kind"] == k]
            turns = [v for v in vs if v["extra"]["view"] == "next_action"]
            eps = [v for v in vs if v["extra"]["view"] == "episode"]
            calls = [v for v in turns if v["extra"]["expects_call"]]
            row: dict[str, float] = {}
            for key, num, den in (
                ("next_action", sum(bool(v["valid"]) for v in turns), len(turns)),
                ("call_accuracy", sum(bool(v["valid"]) for v in calls), len(calls)),
                ("episode_success", sum(bool(v["valid"]) for v in eps), len(eps)),
                ("episode_partial", sum(float(v["extra"]["partial"]) for v in eps), len(eps)),
            ):
                if den:
                    row[key] = num / den
            by_kind[k] = {**row, "turns": len(turns), "episodes": len(eps)}
        out["by_kind"] = by_kind
        return out


def synth_metrics(verdicts: list[dict[str, Any]]) -> dict[str, float]:
    """The suite's metrics (module docstring) of verdict dicts; empty ones left out."""
    turns = [v for v in verdicts if v["extra"]["view"] == "next_action"]
    eps = [v for v in verdicts if v["extra"]["view"] == "episode"]

    def calls_of(kind: str) -> list[dict[str, Any]]:
        return [v for v in turns if v["extra"]["kind"] == kind and v["extra"]["expects_call"]]

    multi = [v for v in turns if v["extra"]["multi_turn"]]
    parts = {
        "exact_match_single": calls_of("single"),
        "exact_match_parallel": calls_of("parallel"),
        "next_action_multi_turn": multi,
        "next_action": turns,
        "episode_success": eps,
    }
    out = {k: sum(bool(v["valid"]) for v in vs) / len(vs) for k, vs in parts.items() if vs}
    call_turns = [v for v in turns if v["extra"]["expects_call"]]
    if call_turns:
        names = sum(bool(v["extra"].get("name_match")) for v in call_turns)
        out["tool_name_accuracy"] = names / len(call_turns)
    if turns:
        relevant = sum(bool(v["extra"].get("relevance_ok")) for v in turns)
        out["relevance_accuracy"] = relevant / len(turns)
    if eps:
        out["episode_partial"] = sum(float(v["extra"]["partial"]) for v in eps) / len(eps)
    return out


__all__ = ["METRICS", "SynthSuite", "is_multi_turn", "synth_metrics"]
