"""Counting what a source loses between its file and the model, and refusing too much.

Every record read is either trained on, held out for validation, left unused by the config
(``size``, ``overfit_samples``) or lost under a named *rule*:

- ``render_error:<kind>``: the renderer refused the trajectory (``kind`` is its problem name,
  :data:`~xlam.data.render.ERROR_KINDS`, or ``schema_error``); counted in trajectories.
- ``dropped_overlong``: a sample longer than ``data.max_length`` with ``overlong=drop`` (or,
  streaming ``per_turn``, a record's samples that do not fit one packed bin together).
- ``truncated``: a sample cut to ``data.max_length`` (``overlong=truncate``); it is kept,
  but the cut turn's supervision is removed and the turns past the cut are gone.
- ``truncated_unsupervised``: truncation left no supervised token; the sample is dropped.

The last three are counted in samples. A source's *lost fraction* combines both units:
``1 - (1 - trajectories lost / read) × (1 - samples lost or cut / samples rendered)``. Above
``max_drop_fraction`` the run stops with :class:`DataLossError`, naming the source, each
rule with its count and example ids, and the override that accepts the loss.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from xlam.data.render import ERROR_KINDS

RENDER_ERROR = "render_error"
SAMPLE_RULES: dict[str, str] = {
    "dropped_overlong": "longer than data.max_length, dropped (data.overlong=drop)",
    "truncated": "longer than data.max_length, cut (data.overlong=truncate): the cut turn is "
    "unsupervised, the turns past the cut are lost",
    "truncated_unsupervised": "truncation left no supervised token, dropped",
}
MAX_EXAMPLES = 5


class DataLossError(ValueError):
    """A source loses more of its data than its ``max_drop_fraction`` allows."""


def describe(rule: str) -> str:
    """What a rule means, for messages."""
    if rule.startswith(f"{RENDER_ERROR}:"):
        kind = rule.split(":", 1)[1]
        return ERROR_KINDS.get(kind, "the trajectory could not be rendered" if kind else "")
    return SAMPLE_RULES.get(rule, "")


@dataclass
class SourceLedger:
    """What one source read, rendered and lost, per rule, with example ids.

    Attributes:
        source: Source name.
        path: Its file or folder (for messages).
        read: Trajectories read.
        rendered: Samples the renderer produced.
        lost: Count per rule (``truncated`` samples are kept, the others are not).
        examples: Up to :data:`MAX_EXAMPLES` ids per rule.
        turns_unsupervised: Turns cut by ``max_length`` whose kept tokens became context.
    """

    source: str
    path: str = ""
    read: int = 0
    rendered: int = 0
    lost: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    turns_unsupervised: int = 0

    def add(self, rule: str, ids: str | list[str], n: int | None = None) -> None:
        """Count ``n`` (default: one per id) losses under ``rule``, keeping example ids."""
        ids = [ids] if isinstance(ids, str) else list(ids)
        self.lost[rule] += len(ids) if n is None else n
        ex = self.examples.setdefault(rule, [])
        ex.extend(ids[: MAX_EXAMPLES - len(ex)])

    def _denominator(self, rule: str) -> tuple[int, str]:
        if rule.startswith(f"{RENDER_ERROR}:"):
            return self.read, "trajectories read"
        return self.rendered, "samples rendered"

    @property
    def trajectories_lost(self) -> int:
        return sum(n for r, n in self.lost.items() if r.startswith(f"{RENDER_ERROR}:"))

    @property
    def samples_lost(self) -> int:
        """Samples dropped (not trained at all)."""
        return sum(
            n for r, n in self.lost.items() if not r.startswith(RENDER_ERROR) and r != "truncated"
        )

    def lost_fraction(self) -> float:
        """Share of the source lost or cut (see the module docstring)."""
        ft = self.trajectories_lost / self.read if self.read else 0.0
        hit = self.samples_lost + self.lost["truncated"]
        fs = hit / self.rendered if self.rendered else 0.0
        return 1.0 - (1.0 - ft) * (1.0 - fs)

    def problem(self, limit: float, scope: str = "") -> str | None:
        """The error message when the lost fraction is above ``limit``, else ``None``.

        Args:
            limit: The source's ``max_drop_fraction``.
            scope: What was counted (e.g. ``"the first 100 records"``), for the message.
        """
        frac = self.lost_fraction()
        if frac <= limit:
            return None
        lines = [
            f"source {self.source!r} ({self.path}) loses or cuts {frac:.2%} of its data, more than "
            f"its max_drop_fraction={limit:g} ({self.read} trajectories read, "
            f"{self.rendered} samples rendered{', ' + scope if scope else ''}):"
        ]
        for rule, n in self.lost.most_common():
            total, unit = self._denominator(rule)
            lines.append(
                f"  - {rule}: {n} of {total} {unit}: {describe(rule)}; "
                f"e.g. {', '.join(self.examples.get(rule, []))}"
            )
        want = min(1.0, math.ceil(frac * 100) / 100)
        lines.append(
            "Fix the data or the settings named above, or accept the loss: "
            f"++data.sources.{self.source}.max_drop_fraction={want:g} "
            "(data.max_drop_fraction for every source)."
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """For the run record: counts per rule (``dropped``: not trained) and examples."""
        return {
            "read": self.read,
            "rendered": self.rendered,
            "render_error": self.trajectories_lost,
            "dropped_overlong": self.lost["dropped_overlong"],
            "truncated": self.lost["truncated"],
            "turns_unsupervised": self.turns_unsupervised,
            "dropped": {r: n for r, n in sorted(self.lost.items()) if r != "truncated" and n},
            "examples": {r: list(v) for r, v in sorted(self.examples.items())},
            "lost_fraction": round(self.lost_fraction(), 6),
        }

    @classmethod
    def from_dict(cls, source: str, path: str, d: dict[str, Any]) -> SourceLedger:
        """Inverse of :meth:`to_dict` (memoised probes)."""
        lost = Counter({r: n for r, n in d["dropped"].items()})
        if d.get("truncated"):
            lost["truncated"] = d["truncated"]
        return cls(
            source,
            path,
            d["read"],
            d["rendered"],
            lost,
            {r: list(v) for r, v in d["examples"].items()},
            d.get("turns_unsupervised", 0),
        )


__all__ = ["MAX_EXAMPLES", "SAMPLE_RULES", "DataLossError", "SourceLedger", "describe"]
