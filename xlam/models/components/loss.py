"""The token-mean loss over a whole optimizer step (pure torch, no Lightning).

Why this file exists: the natural ``loss.mean()`` per micro-batch weights every micro-batch
equally, so under gradient accumulation or data parallelism a micro-batch with few supervised
tokens counts as much as one with many, and the gradient depends on how the global batch was
split. The loss we want is

    L = (Σ over all micro-batches of the step, all ranks, of token losses) / N

where ``N`` is the number of supervised tokens of the whole optimizer step. Two facts make it
exact with an unmodified trainer:

* :class:`StepTokenCounter` reads one accumulation window of micro-batches ahead and stamps
  every batch with the supervised-token count of *its rank's* window (``step_tokens``); one
  scalar all-reduce per step then gives ``N`` on every rank before any backward runs.
* Each micro-batch returns ``sum_loss * world * accum / N`` (:func:`step_loss_scale`). The
  trainer divides by ``accum`` once and data-parallel reduction averages over ``world``
  ranks, so the accumulated gradient is exactly ``∇ Σ token losses / N``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from xlam.data.labels import IGNORE_INDEX

STEP_TOKENS_KEY = "step_tokens"
STEP_MICRO_KEY = "step_micro"
STEP_WINDOW_KEY = "step_window"


def supervised_tokens(labels: torch.Tensor) -> int:
    """Number of tokens a causal LM is trained to predict (labels shifted by one)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def step_loss_scale(
    world_size: int, accumulate: int, step_tokens: float | torch.Tensor
) -> float | torch.Tensor:
    """Factor turning a micro-batch's *summed* token loss into its share of the step loss.

    Args:
        world_size: Data-parallel ranks (their gradients are averaged).
        accumulate: Micro-batches per optimizer step (the trainer divides each by it).
        step_tokens: Supervised tokens of the whole step, all micro-batches and ranks; a
            tensor stays on its device (no host sync per micro-batch).
    """
    if isinstance(step_tokens, torch.Tensor):
        return world_size * accumulate / step_tokens.clamp(min=1.0)
    return world_size * accumulate / max(float(step_tokens), 1.0)


class StepTokenCounter:
    """Wrap a batch iterable and stamp each batch with its accumulation window's token count.

    Windows are consecutive groups of ``accumulate`` micro-batches, aligned with how the
    trainer counts them (a resumed run restarts at a step boundary, so alignment holds). A last,
    shorter window is counted as it is.

    Args:
        loader: Iterable of dict batches holding ``labels``.
        accumulate: Micro-batches per optimizer step.
        count: What a batch counts towards the step's denominator; default its supervised
            tokens (a preference objective counts pairs: its loss is a mean over pairs).
    """

    def __init__(
        self,
        loader: Iterable[dict[str, Any]],
        accumulate: int,
        count: Callable[[dict[str, Any]], int] | None = None,
    ) -> None:
        if accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {accumulate}")
        self.loader = loader
        self.accumulate = accumulate
        self.count = count

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        # Lightning inspects loader attributes (batch_size, sampler, dataset); forward them.
        if name in ("loader", "accumulate", "count"):
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        it = iter(self.loader)
        while True:
            window = []
            for _ in range(self.accumulate):
                try:
                    window.append(next(it))
                except StopIteration:
                    break
            if not window:
                return
            count = self.count or (lambda b: supervised_tokens(b["labels"]))
            total = sum(count(b) for b in window)
            for i, b in enumerate(window):
                b[STEP_TOKENS_KEY] = total
                b[STEP_MICRO_KEY] = i
                b[STEP_WINDOW_KEY] = len(window)
                yield b


def window_end(batch: dict[str, Any], batch_idx: int, accumulate: int) -> bool:
    """Whether ``batch`` is the last micro-batch of its optimizer step."""
    if STEP_WINDOW_KEY in batch:
        return batch[STEP_MICRO_KEY] == batch[STEP_WINDOW_KEY] - 1
    return (batch_idx + 1) % accumulate == 0
