"""Backends that need no model: the oracle (answers with the gold) and a fixed answer.

They prove the scoring chain: an oracle must score 100% on every suite, a backend that
never calls must score 0% wherever a call is expected.
"""

from __future__ import annotations

from typing import Any

from xlam.data.render import format_calls_json
from xlam.eval.core import Backend, Completion, Request


class OracleBackend(Backend):
    """Answers each request with its gold: the calls as an xLAM JSON list, else the text.

    The text goes through :func:`xlam.serving.parse_tool_calls` like a model's output.
    """

    name = "oracle"

    def __init__(self, batch_size: int = 64, **_: Any) -> None:
        self.batch_size = batch_size

    def generate(self, requests: list[Request]) -> list[Completion]:
        out = []
        for r in requests:
            if r.gold:
                out.append(Completion(text=format_calls_json(r.gold)))
            else:
                out.append(Completion(text=r.gold_text or "I cannot help with that."))
        return out


class ConstantBackend(Backend):
    """Answers every request with the same text (a model that never calls, by default)."""

    name = "constant"

    def __init__(
        self, text: str = "I cannot help with that.", batch_size: int = 64, **_: Any
    ) -> None:
        self.text = text
        self.batch_size = batch_size

    def generate(self, requests: list[Request]) -> list[Completion]:
        return [Completion(text=self.text) for _ in requests]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "text": self.text}


__all__ = ["ConstantBackend", "OracleBackend"]
