"""Preference pairs from an eval run: the model's wrong next action against the gold one.

The ``trajectories`` and ``synth`` suites ask for every assistant turn ``k`` of a trajectory
given the gold history before it, as item ``<trajectory id>#<k>`` (``k`` counts assistant
messages from 0). Each item of ``items.jsonl`` with ``valid: false`` becomes a pair: the
history is that trajectory's conversation before its ``k``-th assistant message (what the
request held, system prompt = ``task_instruction``), ``chosen`` is the gold message and
``rejected`` what the model said. The rejected message is the model's output read by the
serving parser (:func:`xlam.serving.parse_tool_calls`): its calls, its text and its
reasoning; an output the parser cannot read (``parse_error``) is a text message holding the
raw output. A chat API's structured calls (``raw`` is then the message text) are taken as
they were recorded.

The data comes from the run's ``eval_state.json`` (the suite's ``path``, or for a ``synth``
suite without one the generated ``n``/``seed``/``split``/``limit``) unless given. Items that
cannot be mapped back are counted with the reason (:data:`UNMAPPED`); so are valid items,
and ``items == valid + pairs + unmapped``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlam.data.preference import PreferencePair, pair_at
from xlam.data.schema import (
    ArgumentsError,
    Message,
    SchemaError,
    ToolCall,
    Trajectory,
    parse_arguments,
    read_trajectories,
)
from xlam.eval.results import ITEMS_FILE, STATE_FILE
from xlam.serving.parser import parse_tool_calls

GENERATOR = "eval"

# Why an invalid item gives no pair.
UNMAPPED: dict[str, str] = {
    "not_a_turn": "the id names no assistant turn (a live episode, a BFCL item...)",
    "unknown_trajectory": "no trajectory of the data has the id's trajectory id",
    "turn_out_of_range": "the trajectory has fewer assistant turns than the id's turn",
    "no_output": "the backend produced nothing (backend_error)",
    "same_as_gold": "the model's message equals the gold message",
}


@dataclass
class EvalPairReport:
    """Counts of one :func:`eval_pairs` run (``items == valid + pairs + unmapped``).

    Attributes:
        items: Items read (one per id, the last line of an id).
        valid: Items the model got right (no pair).
        pairs: Pairs made.
        unmapped: Invalid items without a pair, per reason (:data:`UNMAPPED`).
        examples: Per reason, the first ids.
    """

    items: int = 0
    valid: int = 0
    pairs: int = 0
    unmapped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, item_id: str) -> None:
        self.unmapped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 5:
            shown.append(item_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "valid": self.valid,
            "pairs": self.pairs,
            "unmapped": dict(sorted(self.unmapped.items())),
            "examples": self.examples,
        }


def read_items(run_dir: str | Path) -> list[dict[str, Any]]:
    """The verdicts of an eval run dir, one per id (the last), in first-seen order.

    Raises:
        FileNotFoundError: No ``items.jsonl`` in ``run_dir``.
        SchemaError: A line that is not JSON, naming the file and line.
    """
    path = Path(run_dir) / ITEMS_FILE
    by_id: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise SchemaError(f"{path}:{lineno}: not a JSON verdict line: {e}") from None
            by_id[str(item["id"])] = item
    return list(by_id.values())


def eval_data(run_dir: str | Path) -> list[Trajectory]:
    """The trajectories an eval run asked about, from its ``eval_state.json``.

    Raises:
        SchemaError: The state names no data this module can read back (a ``bfcl`` run, a
            run on a training run's validation split: pass the data explicitly).
    """
    state_path = Path(run_dir) / STATE_FILE
    state = json.loads(state_path.read_text(encoding="utf-8"))
    cfg = state.get("suite_config") or {}
    suite = state.get("suite")
    if suite not in ("trajectories", "synth"):
        raise SchemaError(f"{state_path}: suite {suite!r} has no trajectories to pair")
    path = cfg.get("path")
    if path:
        return load_data(path if isinstance(path, list) else [path])
    if suite == "synth":
        from xlam.synth.generate import generate

        limit = cfg.get("limit")
        n = int(cfg["n"]) if limit is None else min(int(cfg["n"]), int(limit))
        return [Trajectory.from_dict(t) for t in generate(n, int(cfg["seed"]), cfg["split"])]
    raise SchemaError(
        f"{state_path}: the suite read no file (a training run's validation split): "
        "give the data explicitly"
    )


def load_data(paths: list[str | Path]) -> list[Trajectory]:
    """Unified trajectories of ``paths`` (synthetic ones included), in order."""
    return [t for p in paths for t in read_trajectories(p)]


def model_message(item: dict[str, Any], index: int) -> Message:
    """The assistant message a verdict records (module docstring); call ids are
    ``call_<message index>_<k>`` like the importers'."""
    raw = item.get("raw")
    text = raw if isinstance(raw, str) else ""
    parsed = parse_tool_calls(text)
    recorded = item.get("calls") or []
    if not recorded:
        # A text answer, or a call attempt the parser could not read (its raw text).
        if parsed.error is not None:
            return Message(role="assistant", content=text)
        return Message(role="assistant", content=parsed.content or "", reasoning=parsed.reasoning)
    if recorded == [{"name": c.name, "arguments": c.arguments} for c in parsed.calls]:
        content, reasoning = parsed.content or "", parsed.reasoning
    else:  # a chat API's structured calls: raw is the message text
        content, reasoning = text, None
    try:
        calls = [
            ToolCall(
                name=str(c["name"]),
                arguments=parse_arguments(c.get("arguments"), str(c["name"])),
                id=f"call_{index}_{k}",
            )
            for k, c in enumerate(recorded)
        ]
    except ArgumentsError:
        return Message(role="assistant", content=text)
    return Message(role="assistant", content=content, reasoning=reasoning, tool_calls=calls)


def _turn(item_id: str) -> tuple[str, int] | None:
    tid, sep, k = item_id.rpartition("#")
    if not sep or not k.isdigit():
        return None
    return tid, int(k)


def eval_pairs(
    run_dir: str | Path,
    trajectories: list[Trajectory] | None = None,
    report: EvalPairReport | None = None,
) -> Iterator[PreferencePair]:
    """Pairs from the invalid items of an eval run (module docstring), in item order.

    Args:
        run_dir: The eval's run dir (``items.jsonl``, ``eval_state.json``).
        trajectories: The data the eval asked about; default: :func:`eval_data`.
        report: Filled with the counts.
    """
    report = report if report is not None else EvalPairReport()
    trajs = {t.id: t for t in (eval_data(run_dir) if trajectories is None else trajectories)}
    turns = {
        tid: [i for i, m in enumerate(t.conversation) if m.role == "assistant"]
        for tid, t in trajs.items()
    }
    for item in read_items(run_dir):
        report.items += 1
        item_id = str(item["id"])
        if item.get("valid"):
            report.valid += 1
            continue
        where = _turn(item_id)
        if where is None:
            report.skip("not_a_turn", item_id)
            continue
        tid, k = where
        if tid not in trajs:
            report.skip("unknown_trajectory", item_id)
            continue
        if k >= len(turns[tid]):
            report.skip("turn_out_of_range", item_id)
            continue
        if item.get("error_type") == "backend_error":
            report.skip("no_output", item_id)
            continue
        t, index = trajs[tid], turns[tid][k]
        meta = {
            **t.metadata,
            "pair": {
                "generator": GENERATOR,
                "from": tid,
                "turn": k,
                "item": item_id,
                "error_type": item.get("error_type"),
                "detail": item.get("detail"),
            },
        }
        try:
            pair = pair_at(t, index, model_message(item, index), f"{item_id}.eval", meta)
        except SchemaError:
            report.skip("same_as_gold", item_id)
            continue
        report.pairs += 1
        yield pair


__all__ = [
    "GENERATOR",
    "UNMAPPED",
    "EvalPairReport",
    "eval_data",
    "eval_pairs",
    "load_data",
    "model_message",
    "read_items",
]
