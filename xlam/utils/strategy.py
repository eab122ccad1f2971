"""Which kind of distributed strategy a trainer runs: one helper, by type, not by name."""

from __future__ import annotations

from typing import Literal

from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, Strategy

StrategyKind = Literal["deepspeed", "fsdp", "other"]


def strategy_kind(strategy: Strategy | None) -> StrategyKind:
    """``deepspeed`` (its engine steps and clips), ``fsdp`` (sharded gradients) or ``other``."""
    if isinstance(strategy, DeepSpeedStrategy):
        return "deepspeed"
    if isinstance(strategy, FSDPStrategy):
        return "fsdp"
    return "other"


__all__ = ["StrategyKind", "strategy_kind"]
