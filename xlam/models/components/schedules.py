"""Learning-rate schedules and optimizer parameter groups (pure torch, no Lightning)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

NO_DECAY_KEYWORDS = ("bias", "norm", "layernorm", "ln_", "embed_norm")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices, none on biases and norm weights.

    Empty groups are left out (ZeRO-3 drops them, which would desynchronise a scheduler).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lname = name.lower()
        # A ZeRO-3 partitioned parameter is a flat shard; its real shape is `ds_shape`.
        ndim = len(getattr(p, "ds_shape", p.shape))
        if ndim < 2 or any(k in lname for k in NO_DECAY_KEYWORDS):
            no_decay.append(p)
        else:
            decay.append(p)
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
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(name, warmup_steps, total_steps, min_lr_ratio)
    )
