"""Turn-level preference pairs: one history, a chosen and a rejected next assistant message.

A pair is the unified trajectory's fields (``conversation`` is the shared history, ending
with a user or tool message) plus ``chosen`` and ``rejected``, two assistant messages that
could come next. On disk a pair is one JSON object per line, like a trajectory. DPO renders
``history + chosen`` and ``history + rejected`` with the model's own template and scores only
that last turn (see ``docs/trajectory_format.md``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlam.data.schema import Message, SchemaError, Trajectory, read_jsonl, write_jsonl

# ``data.sources.NAME.format`` of a source of pairs (JSONL of :class:`PreferencePair`).
PAIRS_FORMAT = "pairs"

SIDES: tuple[str, ...] = ("chosen", "rejected")

# The rules a pair breaks beyond the trajectory schema (name -> meaning); importers report
# them under these names, :meth:`PreferencePair.from_dict` raises them as a SchemaError.
PAIR_RULES: dict[str, str] = {
    "pair_side": "'chosen' or 'rejected' is missing or is not one assistant message",
    "pair_history": "the shared history does not end with a user or tool message",
    "pair_same": "'chosen' and 'rejected' are the same message",
}


def pair_problem(
    conversation: list[Message], chosen: Message, rejected: Message
) -> tuple[str, str] | None:
    """The first pair rule (:data:`PAIR_RULES`) broken, as ``(rule, message)``, or ``None``."""
    for side, msg in (("chosen", chosen), ("rejected", rejected)):
        if msg.role != "assistant":
            return "pair_side", f"'{side}' must be an assistant message, not {msg.role}"
    if not conversation:
        return "pair_history", "the history is empty"
    if conversation[-1].role == "assistant":
        return "pair_history", "the history must end with a user or tool message"
    if chosen == rejected:
        return "pair_same", "'chosen' and 'rejected' are the same message"
    return None


@dataclass
class PreferencePair:
    """A shared history and two candidate next assistant messages.

    Attributes:
        unique_trajectory_id: Unique within ``source``.
        source: Dataset name.
        conversation: The shared history; its last message is a user or tool message.
        chosen: The preferred assistant message.
        rejected: The dispreferred assistant message.
        task_instruction: The system instruction.
        tools: Function schemas, as in :class:`Trajectory`.
        metadata: Anything else (``origin``, how the rejected message was made...).
    """

    unique_trajectory_id: str
    source: str
    conversation: list[Message]
    chosen: Message
    rejected: Message
    task_instruction: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.unique_trajectory_id

    def history(self) -> Trajectory:
        """The shared history as a trajectory (no assistant turn after it)."""
        return Trajectory(
            unique_trajectory_id=self.unique_trajectory_id,
            source=self.source,
            conversation=list(self.conversation),
            task_instruction=self.task_instruction,
            tools=self.tools,
            metadata=self.metadata,
        )

    def completed(self, side: str) -> Trajectory:
        """The history followed by the ``chosen`` or ``rejected`` message."""
        if side not in SIDES:
            raise ValueError(f"side must be 'chosen' or 'rejected', got {side!r}")
        traj = self.history()
        traj.unique_trajectory_id = f"{self.unique_trajectory_id}@{side}"
        traj.conversation.append(getattr(self, side))
        return traj

    def to_dict(self) -> dict[str, Any]:
        d = self.history().to_dict()
        d["chosen"] = self.chosen.to_dict()
        d["rejected"] = self.rejected.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: Any) -> PreferencePair:
        """Read a pair, checking the rules of the format.

        Raises:
            SchemaError: Not a valid trajectory history, a missing side, a side that is not
                an assistant message, a history ending with an assistant message, or two
                identical sides.
        """
        if not isinstance(d, dict):
            raise SchemaError(f"preference pair must be a JSON object, got {type(d).__name__}")
        sides = {}
        for side in SIDES:
            if side not in d:
                raise SchemaError(f"missing '{side}' (an assistant message)")
            try:
                sides[side] = Message.from_dict(d[side])
            except SchemaError as e:
                raise SchemaError(f"'{side}': {e}") from None
        hist = Trajectory.from_dict({k: v for k, v in d.items() if k not in sides})
        problem = pair_problem(hist.conversation, sides["chosen"], sides["rejected"])
        if problem is not None:
            raise SchemaError(problem[1])
        return cls(
            unique_trajectory_id=hist.unique_trajectory_id,
            source=hist.source,
            conversation=hist.conversation,
            chosen=sides["chosen"],
            rejected=sides["rejected"],
            task_instruction=hist.task_instruction,
            tools=hist.tools,
            metadata=hist.metadata,
        )

    @classmethod
    def from_json(cls, line: str) -> PreferencePair:
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise SchemaError(f"invalid JSON: {e}") from e
        return cls.from_dict(d)


def pair_at(
    traj: Trajectory,
    index: int,
    rejected: Message,
    pair_id: str,
    metadata: dict[str, Any] | None = None,
) -> PreferencePair:
    """The pair whose history is ``traj.conversation[:index]`` and whose chosen message is
    the assistant message at ``index`` (the gold turn), against ``rejected``.

    Raises:
        SchemaError: The message at ``index`` is not an assistant message, or the pair
            breaks a rule of :data:`PAIR_RULES`.
    """
    chosen = traj.conversation[index]
    hist = traj.conversation[:index]
    problem = pair_problem(hist, chosen, rejected)
    if problem is not None:
        raise SchemaError(f"{traj.id} message {index}: {problem[1]}")
    return PreferencePair(
        unique_trajectory_id=pair_id,
        source=traj.source,
        conversation=hist,
        chosen=chosen,
        rejected=rejected,
        task_instruction=traj.task_instruction,
        tools=traj.tools,
        metadata=metadata if metadata is not None else {},
    )


def read_pairs(path: str | Path) -> Iterator[PreferencePair]:
    """Stream pairs from a JSONL file.

    Raises:
        SchemaError: On the first bad line, naming the file and line number.
    """
    return read_jsonl(path, PreferencePair.from_json)


def write_pairs(pairs: Iterator[PreferencePair] | list[PreferencePair], path: str | Path) -> int:
    """Write pairs as JSONL; returns the count written."""
    return write_jsonl(pairs, path)
