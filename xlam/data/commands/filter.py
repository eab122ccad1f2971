"""``xlam-data filter IN --min-score K --out OUT [--removed FILE] [--report JSON]``.

Keeps the trajectories whose critic score (``metadata.critic.score``, from ``xlam-data
critique``) is at least K. A trajectory without a score (unparseable, failed, never
critiqued) is removed, under its own rule. Prints kept and removed per source and rule;
``read == kept + removed`` always. ``--removed`` writes the removed trajectories, unchanged.
"""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from xlam.data.commands.convert import beside, check_paths
from xlam.data.commands.critique import by_source
from xlam.data.commands.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="unified JSONL with metadata.critic")
    parser.add_argument("--min-score", type=int, required=True, help="lowest score kept (1-5)")
    parser.add_argument("--out", type=Path, required=True, help="JSONL of the kept trajectories")
    parser.add_argument("--removed", type=Path, default=None, help="JSONL of the removed ones")
    parser.add_argument(
        "--report", type=Path, default=None, help="counts as JSON (default OUT.report.json)"
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from xlam.data.formats.io import progress
    from xlam.data.schema import SchemaError, read_trajectories
    from xlam.data.scores import RULES, ScoreCounts, check_min_score, score_rule

    try:
        check_min_score("--min-score", args.min_score)
    except ValueError as e:
        raise UserError(str(e)) from None
    if not args.input.is_file():
        raise UserError(f"{args.input}: no such file")
    report = args.report or beside(args.out, "report.json")
    check_paths([args.input], [args.out, report, *([args.removed] if args.removed else [])])
    counts = ScoreCounts(args.min_score)
    try:
        with ExitStack() as stack, progress(f"filter {args.input.name}") as update:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            kept = stack.enter_context(args.out.open("w", encoding="utf-8"))
            removed = None
            if args.removed:
                args.removed.parent.mkdir(parents=True, exist_ok=True)
                removed = stack.enter_context(args.removed.open("w", encoding="utf-8"))
            for t in read_trajectories(args.input):
                rule = score_rule(t, args.min_score)
                counts.add(t.source, rule)
                target = kept if rule is None else removed
                if target is not None:
                    target.write(t.to_json() + "\n")
                if counts.read % 4096 == 0:
                    update(counts.read)
    except (SchemaError, OSError) as e:
        raise UserError(str(e)) from None
    summary = {"input": str(args.input), "output": str(args.out), **counts.to_dict()}
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    def cells(s: dict[str, Any]) -> list[str]:
        gone = s["removed"]
        counts = [s["read"], s["kept"], sum(gone.values()), *(gone.get(r, 0) for r in RULES)]
        return [f"{c:,}" for c in counts]

    title = f"filter: {args.input}, score >= {args.min_score}"
    console = Console()
    labels = ("read", "kept", "removed", "below", "unparseable", "failed", "no critic")
    assert len(labels) == 3 + len(RULES)  # one column per rule, in RULES' order
    console.print(by_source(title, labels, summary, cells))
    console.print(f"kept {counts.kept:,} -> {args.out}   removed {counts.read - counts.kept:,}")
    if counts.removed["no_critic"]:
        console.print(
            f"[yellow]{counts.removed['no_critic']:,} trajectories carry no critic verdict: "
            "run xlam-data critique first[/yellow]"
        )
    return 0
