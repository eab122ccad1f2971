"""Checkpoints saved inside a gradient-accumulation window resume at the window's start.

Lightning may save at any micro-batch: a callback's ``trainer.save_checkpoint``, or a
pre-emption checkpoint (:class:`xlam.utils.callbacks.PreemptionCheckpoint`). The gradients
accumulated since the last optimizer step are not part of a checkpoint, so resuming right
after the saved micro-batch would take the next optimizer step with part of a window, and
the token-mean loss (:mod:`xlam.models.components.loss`) would count another window than
the one Lightning steps on. Such a checkpoint is therefore rewound to the window's start:
the loop counters, the data cursor and the per-source counts all point at its first
micro-batch, which the resumed run trains again. Weights, optimizer, scheduler and step only
change at a window's end, so nothing else needs rewinding and the resumed run equals an
uninterrupted one.

Lightning's loop-progress layout is private API; it is read and edited here only, and
``tests/test_resume_window.py`` fails the day it changes.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

_BATCH_PROGRESS = "epoch_loop.batch_progress"
_COUNTERS = ("ready", "started", "processed", "completed")


def unfinished_micro_batches(trainer: L.Trainer | None) -> int:
    """Micro-batches fetched since the last optimizer step (0 at a window boundary).

    Exact when called between micro-batches or from ``on_train_batch_end`` (where every
    xlam save happens). A save from inside a running micro-batch cannot know whether its
    optimizer step has run; such a save counts it as not run.
    """
    # Validation inside an epoch leaves the fit loop's counters as they are: still valid.
    if trainer is None or trainer.state.fn != TrainerFn.FITTING:
        return 0
    loop = trainer.fit_loop.epoch_loop
    progress = loop.batch_progress.current
    accum = trainer.accumulate_grad_batches
    done = progress.processed
    if progress.ready == done and (done % accum == 0 or loop._num_ready_batches_reached()):
        return 0  # the last processed micro-batch closed its window with a step
    return progress.ready - (done - done % accum)


def rewind_loops(checkpoint: dict[str, Any], micro_batches: int) -> None:
    """Move the fit loop's batch counters of ``checkpoint`` back by ``micro_batches``.

    All four counters then equal the window start, which Lightning reads as "saved after a
    completed micro-batch": the resumed loop fetches the window's first micro-batch next.
    """
    if micro_batches <= 0:
        return
    fit = checkpoint.get("loops", {}).get("fit_loop")
    if not fit or _BATCH_PROGRESS not in fit:
        raise KeyError(
            f"checkpoint has no loops.fit_loop[{_BATCH_PROGRESS!r}]: Lightning's loop "
            "state layout changed; xlam/utils/accumulation.py must follow it"
        )
    progress = fit[_BATCH_PROGRESS]
    current = progress["current"]
    start = current["ready"] - micro_batches
    if start < 0:
        raise ValueError(f"cannot rewind {micro_batches} micro-batches from {current}")
    before = progress["total"]["ready"] - current["ready"]  # batches of earlier epochs
    for name in _COUNTERS:
        current[name] = start
        progress["total"][name] = before + start
    progress["is_last_batch"] = False
