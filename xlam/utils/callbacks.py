"""Callbacks that record what was trained: per-source sample counts and per-step batch ids."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import torch


class SourceCounter(L.Callback):
    """Counts the samples of each source that actually reached the model.

    The counts travel in checkpoints (global across ranks at save time), so a resumed run
    reports the whole run's counts, not only its own part.
    """

    def __init__(self) -> None:
        self.base: Counter[str] = Counter()  # global counts restored from a checkpoint
        self.local: Counter[str] = Counter()  # this rank's counts since the start or restore

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.local.update(batch.get("sources", []) if isinstance(batch, dict) else [])

    def global_counts(self, trainer: L.Trainer) -> dict[str, int]:
        """Whole-run counts over all ranks (a collective: call it on every rank)."""
        names = sorted(set(self.base) | set(self.local) | set(_planned_sources(trainer)))
        if not names:
            return {}
        local = torch.tensor(
            [self.local[n] for n in names], dtype=torch.float64, device=trainer.strategy.root_device
        )
        if trainer.world_size > 1:
            local = trainer.strategy.reduce(local, reduce_op="sum")
        return {n: int(self.base[n] + v) for n, v in zip(names, local.tolist())}

    def state_dict(self) -> dict[str, Any]:
        # Lightning collects callback state on every rank when saving, so this reduce is safe.
        trainer = getattr(self, "_trainer", None)
        counts = self.global_counts(trainer) if trainer is not None else dict(self.base)
        return {"counts": counts}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base = Counter(state_dict.get("counts", {}))
        self.local = Counter()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer


def _planned_sources(trainer: L.Trainer) -> list[str]:
    plan = getattr(getattr(trainer, "datamodule", None), "plan", None) or {}
    return list(plan)


class BatchRecord(L.Callback):
    """Debugging aid: one JSON line per micro-batch with the step, sample ids and sources.

    Written per rank to ``<dirpath>/batches-rank<r>.jsonl``; compare two runs' files to check
    that a resumed run saw exactly the samples of an uninterrupted one.

    Args:
        dirpath: Folder of the files (usually ``${paths.output_dir}/debug``).
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self._file: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"batches-rank{trainer.global_rank}.jsonl"
        self._file = path.open("a", encoding="utf-8")

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._file is None or not isinstance(batch, dict):
            return
        line = {
            "step": trainer.global_step,
            "micro": batch.get("step_micro"),
            "ids": batch.get("ids"),
            "sources": batch.get("sources"),
            "positions": batch.get("positions"),
        }
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
