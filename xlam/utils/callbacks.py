"""Callbacks: per-source sample counts, per-step batch ids, pre-emption checkpoints, EMA."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import threading
import warnings
from collections import Counter, deque
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch import callbacks as pl_callbacks
from lightning.pytorch.utilities.exceptions import SIGTERMException

from xlam.utils.accumulation import unfinished_micro_batches
from xlam.utils.strategy import strategy_kind

log = logging.getLogger(__name__)


class ModelCheckpoint(pl_callbacks.ModelCheckpoint):
    """Lightning's, plus ``last.ckpt`` at the end of training when its step was not saved.

    Periodic checkpoints rarely land on the last step; the final state must be resumable.
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run or not self.save_last or self.dirpath is None:
            return
        # Lightning's own record of the last saved step (private; tests/test_train.py pins it).
        if self._last_global_step_saved != trainer.global_step:
            name = f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
            trainer.save_checkpoint(Path(self.dirpath) / name)


def progress_bar(
    enabled: bool = True, refresh_rate: int = 1
) -> pl_callbacks.TQDMProgressBar | None:
    """A progress bar, or none when ``trainer.enable_progress_bar=false`` silences the run."""
    return pl_callbacks.TQDMProgressBar(refresh_rate=refresh_rate) if enabled else None


class EMA(pl_callbacks.EMAWeightAveraging):
    """Lightning's exponential moving average of the weights, exact across every resume.

    The average is what the run hands back and exports (Lightning copies it into the model
    at the end) and what a checkpoint's ``state_dict`` holds (``xlam-export`` of any
    checkpoint exports it); the training weights travel beside it for resume. Lightning's
    end-of-training copy would also overwrite the training weights in the ``last.ckpt``
    written after it: they are kept here so that a finished run extended with
    ``ckpt_path=last`` resumes from the weights it trained, not from their average.
    """

    def __init__(self, decay: float = 0.999, start_step: int = 0, every_n_steps: int = 1) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"callbacks.ema.decay must be in [0, 1), got {decay}")
        super().__init__(
            decay=decay,
            update_starting_at_step=start_step,
            update_every_n_steps=every_n_steps,
        )
        self._trained_state: dict[str, torch.Tensor] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            kind = strategy_kind(trainer.strategy)
            if kind != "other":
                # every rank would hold a whole unsharded copy, averaged from its shard
                raise ValueError(
                    f"callbacks.ema is for a model on one process or DDP, not {kind}: "
                    "set callbacks.ema.enabled=false or use trainer=cpu/gpu/ddp"
                )
            if getattr(pl_module, "hparams", {}).get("quantization"):
                raise ValueError(
                    "callbacks.ema cannot average quantized weights (model.quantization): "
                    "set callbacks.ema.enabled=false"
                )
        with warnings.catch_warnings():
            # its "configure_model may shard" warning: sharded strategies are refused above
            warnings.filterwarnings("ignore", message=".*overrides the configure_model.*")
            super().setup(trainer, pl_module, stage)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._trained_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._trained_state is not None and "current_model_state" in checkpoint:
            checkpoint["current_model_state"] = self._trained_state


def ema(
    enabled: bool = False, decay: float = 0.999, start_step: int = 0, every_n_steps: int = 1
) -> EMA | None:
    """The :class:`EMA` callback, or none unless ``callbacks.ema.enabled=true``."""
    return EMA(decay, start_step, every_n_steps) if enabled else None


class SourceCounter(L.Callback):
    """Counts the samples of each source that actually reached the model.

    The counts travel in checkpoints (global across ranks at save time), so a resumed run
    reports the whole run's counts, not only its own part.
    """

    def __init__(self) -> None:
        self.base: Counter[str] = Counter()  # global counts restored from a checkpoint
        self.local: Counter[str] = Counter()  # this rank's counts since the start or restore
        self.recent: deque[Counter[str]] = deque(maxlen=1)  # the last micro-batches' counts

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        counts = Counter(batch.get("sources", []) if isinstance(batch, dict) else [])
        self.local.update(counts)
        if self.recent.maxlen != trainer.accumulate_grad_batches:
            self.recent = deque(self.recent, maxlen=trainer.accumulate_grad_batches)
        self.recent.append(counts)

    def global_counts(self, trainer: L.Trainer, rewind: int = 0) -> dict[str, int]:
        """Whole-run counts over all ranks (a collective: call it on every rank).

        Args:
            trainer: The trainer.
            rewind: Leave out this rank's last ``rewind`` micro-batches (those a checkpoint
                saved inside an accumulation window trains again on resume).
        """
        names = sorted(set(self.base) | set(self.local) | set(_planned_sources(trainer)))
        if not names:
            return {}
        local = Counter(self.local)
        for counts in list(self.recent)[len(self.recent) - rewind :] if rewind else []:
            local.subtract(counts)
        local = torch.tensor(
            [local[n] for n in names], dtype=torch.float64, device=trainer.strategy.root_device
        )
        if trainer.world_size > 1:
            local = trainer.strategy.reduce(local, reduce_op="sum")
        return {n: int(self.base[n] + v) for n, v in zip(names, local.tolist())}

    def state_dict(self) -> dict[str, Any]:
        # Lightning collects callback state on every rank when saving, so this reduce is safe.
        trainer = getattr(self, "_trainer", None)
        if trainer is None:
            return {"counts": dict(self.base)}
        return {"counts": self.global_counts(trainer, unfinished_micro_batches(trainer))}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base = Counter(state_dict.get("counts", {}))
        self.local = Counter()
        self.recent.clear()

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


class PreemptionCheckpoint(L.Callback):
    """On SIGUSR1 (SLURM's pre-emption warning) or SIGTERM: save, requeue, stop.

    Lightning's own SLURM handler saves inside the signal handler, wherever the main thread
    happens to be (mid-forward, or between the optimizer updating two parameters). Here a
    signal only sets a flag. At the end of the micro-batch in progress all ranks agree (one
    scalar all-reduce per micro-batch, only when distributed), save ``hpc_ckpt_<n>.ckpt`` in
    the trainer's root dir (``ckpt_path=last`` takes it when it is the newest), ask SLURM to
    requeue the job after SIGUSR1 when running under SLURM, and stop with exit code 1. A save
    inside an accumulation window resumes at the window's start
    (:mod:`xlam.utils.accumulation`), so the resumed run equals an uninterrupted one.

    Args:
        signals: Names of the signals to handle.
        requeue: Run ``scontrol requeue $SLURM_JOB_ID`` after a SIGUSR1 save under SLURM.
    """

    def __init__(
        self, signals: tuple[str, ...] | list[str] = ("SIGUSR1", "SIGTERM"), requeue: bool = True
    ) -> None:
        self.signals = [signal.Signals[name] if isinstance(name, str) else name for name in signals]
        self.requeue = requeue
        self.received: int = 0
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.warning("not in the main thread: pre-emption signals are not handled")
            return
        self.received = 0
        for sig in self.signals:
            self._previous.setdefault(sig, signal.getsignal(sig))
            signal.signal(sig, self._make_handler(trainer))

    def _make_handler(self, trainer: L.Trainer) -> Any:
        def handler(signum: int, frame: Any) -> None:
            if not self.received:
                self.received = signum
                # Processes this one launched (Lightning's subprocess launcher) stop too.
                launcher = trainer.strategy.launcher
                if launcher is not None and hasattr(launcher, "kill"):
                    launcher.kill(signum)

        return handler

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        signum = self.received
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            flag = torch.tensor([signum], dtype=torch.int64, device=trainer.strategy.root_device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            signum = int(flag.item())
        if not signum:
            return
        name = signal.Signals(signum).name
        path = _next_hpc_path(Path(trainer.default_root_dir))
        log.warning("%s received: saving %s and stopping", name, path)
        trainer.save_checkpoint(path)
        if signum == signal.SIGUSR1 and self.requeue and trainer.is_global_zero:
            _slurm_requeue()
        raise SIGTERMException(f"stopped by {name} after saving {path}")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig, previous in self._previous.items():
                signal.signal(sig, previous)
        self._previous = {}


def _next_hpc_path(root: Path) -> Path:
    # The name Lightning gives SLURM checkpoints, so that tools that know it find ours.
    numbers = [
        int(m.group(1))
        for p in root.glob("hpc_ckpt_*.ckpt")
        if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))
    ]
    return root / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


def _slurm_requeue() -> None:
    job = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    if not job:
        return
    try:
        code = subprocess.call(["scontrol", "requeue", job])
    except FileNotFoundError:
        code = -1
    if code == 0:
        log.info("requeued SLURM job %s", job)
    else:
        log.warning("requeueing SLURM job %s failed (exit code %s)", job, code)
