"""What the judge is asked and how its answer is read.

The rubric is one text template (``conf/critic.yaml``'s ``prompt``, or a file) in which
``{trajectory}`` marks where the trajectory goes, as plain text (:func:`render_trajectory`).
Only that placeholder is replaced, so the template may show JSON braces freely. The answer
must be a JSON object ``{"score": 1..5, "reasons": "..."}``, alone or in a fenced block;
anything else is re-asked with what was wrong (:func:`reask`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xlam.data.schema import Trajectory
from xlam.data.scores import MAX_SCORE, MIN_SCORE

PLACEHOLDER = "{trajectory}"
# Bump when render_trajectory changes what the judge sees: it is part of the prompt hash.
RENDER_VERSION = 1
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


class VerdictParseError(ValueError):
    """The judge's answer is not a verdict; the message says why (it is sent back)."""


@dataclass(frozen=True)
class Rubric:
    """The judge's instructions.

    Attributes:
        template: The prompt, with :data:`PLACEHOLDER` once.
        source: Where it came from (a file, or ``conf/critic.yaml``), for the report.
        max_message_chars: Longest message text shown to the judge; longer ones are cut in
            the middle (tool outputs can be huge and the head and tail say the most).
    """

    template: str
    source: str = "config"
    max_message_chars: int = 4000

    def __post_init__(self) -> None:
        if self.template.count(PLACEHOLDER) != 1:
            raise ValueError(
                f"the critic prompt ({self.source}) must contain {PLACEHOLDER} exactly once, "
                f"where the trajectory goes; found {self.template.count(PLACEHOLDER)}"
            )
        if self.max_message_chars < 200:
            raise ValueError(f"max_message_chars must be >= 200, got {self.max_message_chars}")

    @classmethod
    def load(cls, text: str | None, file: str | Path | None, max_message_chars: int) -> Rubric:
        """The rubric from a file when one is given, else from ``text``."""
        if file is not None:
            path = Path(file)
            if not path.is_file():
                raise FileNotFoundError(f"critic prompt file {path} does not exist")
            return cls(path.read_text(encoding="utf-8"), str(path), max_message_chars)
        if not text:
            raise ValueError("no critic prompt: set `prompt` in the config or give --prompt FILE")
        return cls(text, "config", max_message_chars)

    @property
    def hash(self) -> str:
        """Identifies everything but the trajectory that shapes the request."""
        blob = json.dumps(
            [self.template, self.max_message_chars, RENDER_VERSION], ensure_ascii=False
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def messages(self, traj: Trajectory) -> list[dict[str, Any]]:
        """The first request: one user message, the template filled with the trajectory."""
        text = self.template.replace(PLACEHOLDER, render_trajectory(traj, self.max_message_chars))
        return [{"role": "user", "content": text}]


def trajectory_hash(traj: Trajectory) -> str:
    """Hash of what the judge is shown: instruction, tools and conversation.

    Ids, source and metadata (an earlier verdict included) are left out: the same episode
    under another id is the same question.
    """
    d = traj.to_dict()
    shown = {k: d[k] for k in ("task_instruction", "tools", "conversation")}
    blob = json.dumps(shown, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    return f"{text[:head]} [... {len(text) - limit} characters cut ...] {text[-tail:]}"


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def render_trajectory(traj: Trajectory, max_message_chars: int = 4000) -> str:
    """The trajectory as text for a judge: instruction, tools (JSON), numbered turns."""
    lines = ["SYSTEM INSTRUCTION:", traj.task_instruction or "(none)", "", "TOOLS:"]
    if traj.tools:
        lines += [f"- {_json(t['function'])}" for t in traj.tools]
    else:
        lines.append("(none)")
    lines += ["", "CONVERSATION:"]
    for i, m in enumerate(traj.conversation, 1):
        content = _cut(m.content, max_message_chars)
        if m.role == "tool":
            answers = f" (answers {m.tool_call_id})" if m.tool_call_id else ""
            lines.append(f"[{i}] tool {m.name or '?'}{answers}: {content}")
            continue
        if m.reasoning:
            lines.append(f"[{i}] {m.role} reasoning: {_cut(m.reasoning, max_message_chars)}")
        if content or not m.tool_calls:
            lines.append(f"[{i}] {m.role}: {content}")
        for c in m.tool_calls:
            args = _cut(_json(c.arguments), max_message_chars)
            call_id = f" [id {c.id}]" if c.id else ""
            lines.append(f"[{i}] {m.role} calls {c.name}({args}){call_id}")
    return "\n".join(lines)


def _candidates(text: str) -> list[str]:
    """Where a JSON verdict may be: fenced blocks, the whole text, the outermost braces."""
    out = [m.group(1).strip() for m in _FENCE.finditer(text)]
    out.append(text.strip())
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        out.append(text[start : end + 1])
    return out


def parse_verdict(text: str) -> tuple[int, str]:
    """``(score, reasons)`` from a judge's answer.

    Accepts the JSON object alone, inside a fenced block (```json), or surrounded by text;
    a ``<think>`` block is ignored. ``score`` must be an integer 1..5 (``4.0`` counts as 4;
    ``"4"`` and ``true`` do not); ``reasons`` a non-empty string.

    Raises:
        VerdictParseError: Saying what is wrong, in words meant for the judge.
    """
    text = _THINK.sub("", text or "").strip()
    if not text:
        raise VerdictParseError("the answer was empty")
    obj: Any = None
    for cand in _candidates(text):
        try:
            obj = json.loads(cand)
        except ValueError:
            continue
        if isinstance(obj, dict):
            break
    if not isinstance(obj, dict):
        raise VerdictParseError("the answer holds no JSON object")
    score = obj.get("score")
    if isinstance(score, float) and score.is_integer():
        score = int(score)
    if isinstance(score, bool) or not isinstance(score, int):
        raise VerdictParseError(f'"score" must be an integer, got {json.dumps(score)}')
    if not MIN_SCORE <= score <= MAX_SCORE:
        raise VerdictParseError(f'"score" must be between {MIN_SCORE} and {MAX_SCORE}, got {score}')
    reasons = obj.get("reasons")
    if not isinstance(reasons, str) or not reasons.strip():
        raise VerdictParseError('"reasons" must be a non-empty string')
    return score, reasons.strip()


def reask(problem: str) -> str:
    """The follow-up message after an answer that is not a verdict."""
    return (
        f"Your answer could not be used: {problem}. Reply with only a JSON object, no other "
        f'text: {{"score": <integer {MIN_SCORE}-{MAX_SCORE}>, "reasons": "<why>"}}'
    )


__all__ = [
    "PLACEHOLDER",
    "Rubric",
    "VerdictParseError",
    "parse_verdict",
    "reask",
    "render_trajectory",
    "trajectory_hash",
]
