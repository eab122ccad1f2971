"""Learning-rate schedules and optimizer parameter groups (pure torch, no Lightning)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

NO_DECAY_KEYWORDS = ("bias", "norm", "layernorm", "ln_", "embed_norm")


def param_groups(model: nn.Module, weight_decay: float, named: bool = False) -> list[dict]:
    """AdamW groups: decay on weight matrices, none on biases and norm weights.

    Empty groups are left out (ZeRO-3 drops them, which would desynchronise a scheduler).
    ``named``: ``(name, parameter)`` pairs instead of parameters (for
    :class:`~xlam.models.components.muon.MuonAdamW`).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lname = name.lower()
        # A ZeRO-3 partitioned parameter is a flat shard; its real shape is `ds_shape`.
        ndim = len(getattr(p, "ds_shape", p.shape))
        item = (name, p) if named else p
        if ndim < 2 or any(k in lname for k in NO_DECAY_KEYWORDS):
            no_decay.append(item)
        else:
            decay.append(item)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def lr_lambda(
    name: str, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at a step.

    Args:
        name: ``cosine``, ``linear`` or ``constant`` (after linear warmup).
        warmup_steps: Steps of linear warmup from 0.
        total_steps: Steps in the run.
        min_lr_ratio: Floor of the decay as a fraction of the peak.
    """
    if name not in ("cosine", "linear", "constant"):
        raise ValueError(f"unknown schedule {name!r}: use cosine, linear or constant")
    total_steps = max(total_steps, 1)

    def fn(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if name == "cosine":
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            decay = 1.0 - progress
        return min_lr_ratio + (1.0 - min_lr_ratio) * decay

    return fn


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A step-wise ``LambdaLR`` following :func:`lr_lambda`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(name, warmup_steps, total_steps, min_lr_ratio)
    )


def warmup_schedule(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    name: str = "cosine",
    warmup_ratio: float = 0.0,
    warmup_steps: int | None = None,
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then ``name`` decay: the factory behind ``model.scheduler``.

    The config holds a partial (``_partial_: true``) that ``configure_optimizers`` calls
    with the optimizer and the run's optimizer steps, which are known only then.

    Args:
        optimizer: The optimizer whose learning rates are scheduled.
        total_steps: Optimizer steps of the run.
        name: ``cosine``, ``linear`` or ``constant`` after the warmup.
        warmup_ratio: Warmup as a fraction of ``total_steps`` (rounded).
        warmup_steps: Warmup in steps; wins over ``warmup_ratio`` when given.
        min_lr_ratio: Floor of the decay as a fraction of the peak.
    """
    if warmup_steps is None:
        warmup_steps = round(warmup_ratio * total_steps)
    return build_scheduler(optimizer, name, int(warmup_steps), total_steps, min_lr_ratio)


# What a module built without a scheduler uses.
DEFAULT_SCHEDULE: dict[str, Any] = {"name": "cosine", "warmup_ratio": 0.05}


def scheduler_factory(
    scheduler: Callable[..., Any] | Mapping[str, Any] | None,
) -> Callable[..., Any]:
    """``model.scheduler`` as a callable ``(optimizer, total_steps=...) -> scheduler``.

    Args:
        scheduler: A partial (what Hydra builds from the config), a mapping of
            :func:`warmup_schedule` arguments (Python callers), or ``None`` for
            :data:`DEFAULT_SCHEDULE`.
    """
    if scheduler is None or (isinstance(scheduler, Mapping) and not scheduler):
        scheduler = DEFAULT_SCHEDULE
    if isinstance(scheduler, Mapping):
        return functools.partial(warmup_schedule, **dict(scheduler))
    if not callable(scheduler):
        raise TypeError(f"model.scheduler must be a partial or a mapping, got {scheduler!r}")
    return scheduler
