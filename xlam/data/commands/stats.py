"""``xlam-data stats IN [--tokenizer DIR] [--plots DIR] [--json FILE]``: what a dataset holds.

Per source: trajectories, messages per trajectory, assistant turns, tool calls per
assistant turn and lengths (tokens with ``--tokenizer``, else characters of the JSON line).
Distributions are kept as value counts, so memory does not grow with the number of
records; ``--plots`` writes one PNG histogram per measure (matplotlib, Agg backend).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlam.data.commands.errors import UserError
from xlam.data.formats import InputError, Reject, fastjson, import_records, unified
from xlam.data.formats.io import progress

_BATCH = 256


@dataclass
class Dist:
    """A distribution of integers stored as value -> count."""

    counts: Counter[int] = field(default_factory=Counter)

    def add(self, value: int) -> None:
        self.counts[value] += 1

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def mean(self) -> float:
        n = self.n
        return sum(v * c for v, c in self.counts.items()) / n if n else math.nan

    def quantile(self, q: float) -> int:
        """Smallest value with at least ``q`` of the mass at or below it."""
        n = self.n
        if not n:
            return 0
        target = q * n
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if seen >= target:
                return value
        return max(self.counts)

    def summary(self) -> dict[str, Any]:
        if not self.counts:
            return {"n": 0}
        return {
            "n": self.n,
            "mean": round(self.mean(), 3),
            "min": min(self.counts),
            "p50": self.quantile(0.5),
            "p90": self.quantile(0.9),
            "p99": self.quantile(0.99),
            "max": max(self.counts),
        }


MEASURES = {
    "messages": "messages per trajectory",
    "assistant_turns": "assistant turns per trajectory",
    "calls_per_turn": "tool calls per assistant turn",
    "length": "length per trajectory",
}


@dataclass
class SourceStats:
    trajectories: int = 0
    invalid: int = 0
    dists: dict[str, Dist] = field(default_factory=lambda: {m: Dist() for m in MEASURES})


class Collector:
    """Accumulates per-source distributions; token counts are computed in batches."""

    def __init__(self, tokenizer: Any = None, group_by: str = "source") -> None:
        from xlam.data.verify import trajectory_text  # jsonschema loads only when stats runs

        self._text = trajectory_text
        self.tokenizer = tokenizer
        self.group_by = group_by
        self.sources: dict[str, SourceStats] = {}
        self._pending: list[tuple[str, str]] = []

    def _get(self, source: str) -> SourceStats:
        s = self.sources.get(source)
        if s is None:
            s = self.sources[source] = SourceStats()
        return s

    def add_invalid(self, source: str) -> None:
        self._get(source).invalid += 1

    def group(self, traj: Any) -> str:
        """The group of ``traj``: its source, or a dotted ``metadata`` path's value."""
        if self.group_by == "source":
            return traj.source
        value: Any = traj.metadata
        for key in self.group_by.removeprefix("metadata.").split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return "(none)" if value is None else str(value)

    def add(self, traj: Any) -> None:
        group = self.group(traj)
        s = self._get(group)
        s.trajectories += 1
        d = s.dists
        d["messages"].add(len(traj.conversation))
        turns = 0
        for m in traj.conversation:
            if m.role == "assistant":
                turns += 1
                d["calls_per_turn"].add(len(m.tool_calls))
        d["assistant_turns"].add(turns)
        if self.tokenizer is None:
            # Characters of the line as verify writes it (compact JSON), as --max-chars counts.
            d["length"].add(len(fastjson.dumps(traj.to_dict()).decode("utf-8", "replace")))
        else:
            self._pending.append((group, self._text(traj)))
            if len(self._pending) >= _BATCH:
                self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        texts = [t for _, t in self._pending]
        try:
            ids = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        except Exception:  # one bad text (lone surrogate) must not sink the batch
            ids = []
            for t in texts:
                try:
                    ids.append(
                        self.tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"]
                    )
                except Exception:
                    ids.append(None)
        for (source, _), tok in zip(self._pending, ids):
            if tok is not None:
                self.sources[source].dists["length"].add(len(tok))
        self._pending.clear()

    def to_dict(self, unit: str) -> dict[str, Any]:
        return {
            "length_unit": unit,
            "sources": {
                name: {
                    "trajectories": s.trajectories,
                    "invalid": s.invalid,
                    **{m: d.summary() for m, d in s.dists.items()},
                }
                for name, s in sorted(self.sources.items())
            },
        }


def plot(collector: Collector, out_dir: Path, unit: str) -> list[Path]:
    """One PNG histogram per measure, one step curve per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for measure, title in MEASURES.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        drawn = False
        for name, s in sorted(collector.sources.items()):
            counts = s.dists[measure].counts
            if not counts:
                continue
            values = sorted(counts)
            weights = [counts[v] for v in values]
            lo, hi = values[0], values[-1]
            if measure == "length":
                bins: Any = 50
            else:  # small integers: one bar per value
                bins = [x - 0.5 for x in range(lo, hi + 2)]
            ax.hist(values, bins=bins, weights=weights, histtype="step", label=name)
            drawn = True
        label = f"{title} ({unit})" if measure == "length" else title
        ax.set_title(label)
        ax.set_xlabel(unit if measure == "length" else "count")
        ax.set_ylabel("trajectories" if measure != "calls_per_turn" else "assistant turns")
        if drawn:
            ax.legend(fontsize="small")
        fig.tight_layout()
        path = out_dir / f"{measure}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="unified trajectories (JSONL, JSON, Parquet...)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="HF tokenizer folder")
    parser.add_argument("--plots", type=Path, default=None, help="folder for PNG histograms")
    parser.add_argument("--json", type=Path, default=None, help="write the statistics as JSON")
    parser.add_argument(
        "--group-by",
        default="source",
        help="group by 'source' (default) or a metadata path, e.g. metadata.synth.kind",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from xlam.data.commands.verify import load_tokenizer
    from xlam.data.verify import UNKNOWN_SOURCE

    if not args.input.exists():
        raise UserError(f"{args.input}: no such file or directory")
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    unit = "tokens" if tokenizer is not None else "chars"
    if args.group_by != "source" and not args.group_by.startswith("metadata."):
        raise UserError(f"--group-by must be 'source' or metadata.<path>, got {args.group_by!r}")
    collector = Collector(tokenizer, args.group_by)
    try:
        with progress(f"stats {args.input.name}") as update:
            for n, (result, record, _) in enumerate(
                import_records(args.input, unified.convert, source="unified"), 1
            ):
                if isinstance(result, Reject):
                    src = record.get("source") if isinstance(record, dict) else None
                    collector.add_invalid(src if isinstance(src, str) else UNKNOWN_SOURCE)
                else:
                    collector.add(result)
                if n % 4096 == 0:
                    update(n)
    except (InputError, OSError) as e:
        raise UserError(str(e)) from None
    collector.flush()
    stats = collector.to_dict(unit)

    table = Table(title=f"stats: {args.input}")
    for col in (args.group_by, "measure", "n", "mean", "p50", "p90", "max"):
        table.add_column(
            col, justify="right" if col in ("n", "mean", "p50", "p90", "max") else "left"
        )
    for name, s in stats["sources"].items():
        table.add_row(name, "trajectories", f"{s['trajectories']:,}", *[""] * 4)
        if s["invalid"]:
            table.add_row("", "invalid records", f"{s['invalid']:,}", *[""] * 4)
        for measure in MEASURES:
            d = s[measure]
            label = f"{measure} ({unit})" if measure == "length" else measure
            if not d["n"]:
                table.add_row("", label, "0", *["-"] * 4)
                continue
            table.add_row(
                "",
                label,
                f"{d['n']:,}",
                f"{d['mean']:.1f}",
                str(d["p50"]),
                str(d["p90"]),
                str(d["max"]),
                end_section=measure == "length",
            )
    console = Console()
    console.print(table)
    try:
        if args.plots:
            for path in plot(collector, args.plots, unit):
                console.print(f"wrote {path}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise UserError(str(e)) from None
    return 0
