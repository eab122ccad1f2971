"""Mixture recipes: which sources, how much of each, and the plan of the run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class SourceSpec:
    """One source of a mixture.

    Attributes:
        name: Source name (used in metrics and the run record).
        path: File or folder holding the records.
        format: Importer name (``unified`` for the unified JSONL format).
        size: Records to use; counted from the data when ``None``.
        epochs: Passes over the source (fractions subsample without repeats).
        weight: Explicit mixing weight; excludes ``epochs``.
    """

    name: str
    path: str
    format: str = "unified"
    size: int | None = None
    epochs: float | None = None
    weight: float | None = None

    def __post_init__(self) -> None:
        if self.epochs is not None and self.weight is not None:
            raise ValueError(f"source {self.name!r}: give either epochs or weight, not both")
        if self.epochs is not None and self.epochs < 0:
            raise ValueError(f"source {self.name!r}: epochs must be >= 0, got {self.epochs}")
        if self.weight is not None and self.weight < 0:
            raise ValueError(f"source {self.name!r}: weight must be >= 0, got {self.weight}")


def sources_from_config(cfg: dict[str, Any]) -> list[SourceSpec]:
    """Build source specs from a ``{name: {path, format, ...}}`` mapping."""
    return [SourceSpec(name=name, **dict(spec)) for name, spec in cfg.items() if spec is not None]


def plan_mixture(
    specs: list[SourceSpec], sizes: dict[str, int], num_samples: int | None = None
) -> dict[str, int]:
    """Number of samples each source delivers over the run.

    With ``epochs`` (ActionStudio semantics) source ``s`` gives ``size_s × epochs_s``
    samples, so its probability is ``size_s·epochs_s / Σ size·epochs``. With ``weight`` the
    run has ``num_samples`` samples (default: the sum of sizes) split by weight.

    Raises:
        ValueError: When sources mix ``epochs`` and ``weight``.
    """
    by_weight = [s for s in specs if s.weight is not None]
    if by_weight and len(by_weight) != len(specs):
        names = ", ".join(s.name for s in by_weight)
        raise ValueError(f"sources {names} use weight; the others use epochs: pick one rule")
    if by_weight:
        total = num_samples if num_samples is not None else sum(sizes[s.name] for s in specs)
        wsum = sum(s.weight for s in specs)  # type: ignore[misc]
        if wsum <= 0:
            raise ValueError("mixture weights sum to zero")
        return _largest_remainder({s.name: total * s.weight / wsum for s in specs}, total)  # type: ignore[operator]
    plan = {s.name: sizes[s.name] * (1.0 if s.epochs is None else s.epochs) for s in specs}
    if num_samples is not None:
        raw = sum(plan.values())
        return _largest_remainder({k: num_samples * v / raw for k, v in plan.items()},
                                  num_samples)
    return {k: int(math.floor(v + 0.5)) for k, v in plan.items()}


def _largest_remainder(shares: dict[str, float], total: int) -> dict[str, int]:
    floors = {k: int(math.floor(v)) for k, v in shares.items()}
    left = total - sum(floors.values())
    for k in sorted(shares, key=lambda k: floors[k] - shares[k])[:left]:
        floors[k] += 1
    return floors


def planned_steps(
    total_samples: int, batch_size: int, world_size: int = 1, accumulate: int = 1
) -> int:
    """Optimizer steps that consume the planned stream once."""
    per_step = batch_size * world_size * accumulate
    return max(1, total_samples // per_step)
