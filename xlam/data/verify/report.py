"""What a verification run read, kept and rejected, per source and rule."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceCounts:
    """Counts for one source; ``rules`` counts trajectories per broken rule."""

    read: int = 0
    good: int = 0
    rejected: int = 0
    rules: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "good": self.good,
            "rejected": self.rejected,
            "rules": dict(self.rules.most_common()),
        }


@dataclass
class VerifyReport:
    """What a verification run read, kept and rejected, per source and rule.

    A trajectory that breaks several rules counts once in ``rejected`` and once under each
    rule it breaks.
    """

    read: int = 0
    good: int = 0
    rejected: int = 0
    sources: dict[str, SourceCounts] = field(default_factory=dict)

    def add(self, source: str, rules: Iterable[str] = ()) -> None:
        counts = self.sources.get(source)
        if counts is None:
            counts = self.sources[source] = SourceCounts()
        broken = set(rules)
        self.read += 1
        counts.read += 1
        if broken:
            self.rejected += 1
            counts.rejected += 1
            counts.rules.update(broken)
        else:
            self.good += 1
            counts.good += 1

    def add_good(self, source: str) -> None:
        """``add(source)`` for a good trajectory, without the rule bookkeeping."""
        counts = self.sources.get(source)
        if counts is None:
            counts = self.sources[source] = SourceCounts()
        self.read += 1
        counts.read += 1
        self.good += 1
        counts.good += 1

    def by_rule(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for c in self.sources.values():
            total.update(c.rules)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "good": self.good,
            "rejected": self.rejected,
            "by_rule": dict(self.by_rule().most_common()),
            "by_source": {s: c.to_dict() for s, c in sorted(self.sources.items())},
        }

    def table(self) -> Any:
        """A ``rich`` table: a column per source (and total), a row per count and rule.

        Sources are few and rules many, so rules go down the rows and the table stays
        readable in 80 columns.
        """
        from rich.table import Table

        names = sorted(self.sources)
        table = Table(title="verify: trajectories per source and rule")
        table.add_column("")
        for name in names:
            table.add_column(name, justify="right", overflow="fold")
        with_total = len(names) > 1
        if with_total:
            table.add_column("total", justify="right")
        rows = [
            ("read", [self.sources[n].read for n in names], self.read),
            ("good", [self.sources[n].good for n in names], self.good),
            ("rejected", [self.sources[n].rejected for n in names], self.rejected),
        ]
        total = self.by_rule()
        for rule, n in total.most_common():
            rows.append((f"  {rule}", [self.sources[s].rules[rule] for s in names], n))
        for label, values, tot in rows:
            cells = [f"{v:,}" for v in values] + ([f"{tot:,}"] if with_total else [])
            table.add_row(label, *cells, end_section=label == "rejected" and bool(total))
        return table
