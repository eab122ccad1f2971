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

from xlam.data.schema import Message, SchemaError, Trajectory


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
        if side not in ("chosen", "rejected"):
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
        for side in ("chosen", "rejected"):
            if side not in d:
                raise SchemaError(f"missing '{side}' (an assistant message)")
            msg = Message.from_dict(d[side])
            if msg.role != "assistant":
                raise SchemaError(f"'{side}' must be an assistant message, not {msg.role}")
            sides[side] = msg
        hist = Trajectory.from_dict({k: v for k, v in d.items() if k not in sides})
        if hist.conversation[-1].role == "assistant":
            raise SchemaError("the history must end with a user or tool message")
        if sides["chosen"] == sides["rejected"]:
            raise SchemaError("'chosen' and 'rejected' are the same message")
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


def read_pairs(path: str | Path) -> Iterator[PreferencePair]:
    """Stream pairs from a JSONL file.

    Raises:
        SchemaError: On the first bad line, naming the file and line number.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield PreferencePair.from_json(line)
            except SchemaError as e:
                raise SchemaError(f"{path}:{lineno}: {e}") from e


def write_pairs(pairs: Iterator[PreferencePair] | list[PreferencePair], path: str | Path) -> int:
    """Write pairs as JSONL; returns the count written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for p in pairs:
            f.write(p.to_json() + "\n")
            n += 1
    return n
