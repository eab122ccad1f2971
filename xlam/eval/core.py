"""The eval contract: what a suite asks a backend (:class:`Request`), what comes back
(:class:`Completion`), and the verdict a suite writes per item (:class:`Verdict`).

Suites (:mod:`xlam.eval.suites`) make requests and score completions; backends
(:mod:`xlam.eval.backends`) only generate. Neither knows the other's internals.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from xlam.serving.parser import ParseResult, parse_tool_calls

# Why an item failed; ``None`` when it passed. One per item, the first found.
ERROR_TYPES: tuple[str, ...] = (
    "parse_error",  # a call was attempted but the text could not be parsed
    "wrong_function",  # a call names another function
    "missing_argument",  # a required (gold) argument is absent
    "extra_argument",  # an argument the gold call does not have
    "wrong_type",  # the value's JSON type differs from the schema's / gold's
    "wrong_value",  # right type, wrong value
    "wrong_count",  # a different number of calls (parallel)
    "hallucinated_call",  # a call where none was expected (relevance)
    "missed_call",  # no call where one was expected
    "no_answer",  # a final turn without text
    "backend_error",  # the backend failed for this request (after retries)
    "checker_error",  # the benchmark's checker failed for this item
)


@dataclass
class Request:
    """One generation: continue ``messages`` (OpenAI chat format) given ``tools``.

    Attributes:
        id: The item id (unique within a suite run; multi-turn steps add ``#turn.step``).
        messages: OpenAI chat messages (``system``/``user``/``assistant`` with
            ``tool_calls`` whose ``arguments`` are objects/``tool``).
        tools: OpenAI function schemas (``{"type": "function", "function": {...}}``).
        gold: For the oracle backend only: the expected calls as
            ``[{"name", "arguments"}]``, or ``None`` with ``gold_text`` for a text answer.
        gold_text: The oracle's text answer when no call is expected.
    """

    id: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    gold: list[dict[str, Any]] | None = None
    gold_text: str | None = None


@dataclass
class Completion:
    """A backend's answer to one :class:`Request`.

    Attributes:
        text: The raw generated text (for a chat API: the message content).
        calls: Structured calls a chat API returned (``[{"name", "arguments"}]``);
            ``None`` when the backend returns text only (then :meth:`parse` parses it).
        error: Why the backend produced nothing (after its retries); counted, not raised.
        prompt: The exact prompt text, when the backend rendered one.
        num_tokens: Generated tokens (0 when unknown).
    """

    text: str = ""
    calls: list[dict[str, Any]] | None = None
    error: str | None = None
    prompt: str | None = None
    num_tokens: int = 0

    def parse(self) -> ParseResult:
        """Calls and content, by :func:`xlam.serving.parse_tool_calls` for raw text."""
        if self.calls is not None:
            from xlam.serving.parser import ParsedCall

            calls = [
                ParsedCall(name=c["name"], arguments=c.get("arguments") or {}) for c in self.calls
            ]
            return ParseResult(content=self.text or None, calls=calls, syntax="api")
        return parse_tool_calls(self.text)


@dataclass
class Verdict:
    """One scored item, a line of ``items.jsonl``.

    Attributes:
        id: Item id.
        category: BFCL category, or the trajectory source/kind.
        valid: Whether the item passed.
        error_type: One of :data:`ERROR_TYPES` (``None`` when valid).
        detail: The checker's message.
        prompt_hash: sha256 (16 hex) of the prompt text or messages.
        raw: The raw output(s).
        calls: The parsed calls (``[{"name", "arguments"}]``).
        extra: Suite-specific fields (per-turn scores, kind, relevance...).
    """

    id: str
    category: str
    valid: bool
    error_type: str | None = None
    detail: str | None = None
    prompt_hash: str | None = None
    raw: Any = None
    calls: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prompt_hash(prompt: str | list[dict[str, Any]] | None) -> str | None:
    """A short stable hash of a prompt (text, or messages when no text was rendered)."""
    if prompt is None:
        return None
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Backend:
    """Generates completions for requests; subclasses implement :meth:`generate`.

    Attributes:
        name: The backend's name (``hf``, ``openai``, ``vllm``, ``oracle``...).
        batch_size: How many requests a suite should hand over at once.
    """

    name: str = "backend"
    batch_size: int = 8

    def generate(self, requests: list[Request]) -> list[Completion]:
        """One completion per request, in order; failures come back as ``error``."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the run record should say about this backend (no secrets)."""
        return {"name": self.name}

    def close(self) -> None:
        """Release what the backend holds (a server process, a model)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Emit = Callable[[Verdict], None]


class Suite:
    """A set of items, run through a backend and scored.

    ``run`` emits one :class:`Verdict` per item (skipping ids in ``skip``: a resumed run)
    as soon as it is scored, so an interrupted eval loses at most one batch.

    Attributes:
        name: Suite name (``bfcl``, ``trajectories``).
        version: What the scores depend on besides the model (data/checker versions).
    """

    name: str = "suite"
    version: str = "0"

    def ids(self) -> list[str]:
        """The item ids this run covers (after ``categories``/``limit``)."""
        raise NotImplementedError

    def run(self, backend: Backend, skip: set[str], emit: Emit) -> None:
        raise NotImplementedError

    def summarize(self, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
        """``summary.json``'s body: at least :func:`category_table`'s keys."""
        return category_table(verdicts)

    def close(self) -> None:
        """Release what the suite holds (a checker process)."""


def category_table(verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-category and overall accuracy and error counts of verdict dicts.

    Returns:
        ``{"n", "correct", "accuracy", "errors", "categories": {cat: {n, correct,
        accuracy, errors}}}`` where ``errors`` counts :data:`ERROR_TYPES`.
    """
    cats: dict[str, dict[str, Any]] = {}
    for v in verdicts:
        c = cats.setdefault(v["category"], {"n": 0, "correct": 0, "errors": {}})
        c["n"] += 1
        c["correct"] += bool(v["valid"])
        if not v["valid"]:
            et = v.get("error_type") or "unknown"
            c["errors"][et] = c["errors"].get(et, 0) + 1
    errors: dict[str, int] = {}
    for c in cats.values():
        c["accuracy"] = c["correct"] / c["n"] if c["n"] else 0.0
        for k, n in c["errors"].items():
            errors[k] = errors.get(k, 0) + n
    n = sum(c["n"] for c in cats.values())
    correct = sum(c["correct"] for c in cats.values())
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "errors": errors,
        "categories": dict(sorted(cats.items())),
    }


__all__ = [
    "ERROR_TYPES",
    "Backend",
    "Completion",
    "Emit",
    "Request",
    "Suite",
    "Verdict",
    "category_table",
    "prompt_hash",
]
