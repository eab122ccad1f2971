"""Training metrics that are not the loss: throughput, MFU, memory, lr, per-source losses.

Callbacks (``callbacks=default`` has both), so the LightningModule keeps to the model and its
loss. Each logs once per optimizer step, at the end of an accumulation window, with one
all-reduce of a few numbers; nothing syncs the host per micro-batch.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import lightning as L
import torch

from xlam.data.labels import IGNORE_INDEX
from xlam.models.components.flops import mfu, peak_flops
from xlam.models.components.loss import window_end
from xlam.models.components.metrics import per_source_losses


def peak_memory_gb(device: torch.device) -> float:
    """Peak allocated CUDA memory, or the process's peak resident memory on CPU (GiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _all_sum(trainer: L.Trainer, value: torch.Tensor) -> torch.Tensor:
    if trainer.world_size == 1:
        return value
    return trainer.strategy.reduce(value, reduce_op="sum")


class ThroughputMonitor(L.Callback):
    """Tokens/s (all, per device, supervised), padding and supervised ratios, MFU, memory, lr.

    MFU uses the module's ``param_counts`` and a peak-FLOP/s table of CUDA devices
    (:mod:`xlam.models.components.flops`); it is not logged on CPU.
    """

    def __init__(self) -> None:
        self._t: float | None = None
        self._stats: torch.Tensor | None = None  # [real tokens, padded tokens, supervised]
        self._peak: float | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: Any, batch: Any, idx: int
    ) -> None:
        if self._t is None:
            self._t = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        attn = batch["attention_mask"]
        stats = torch.stack(
            [
                attn.sum().double(),
                torch.tensor(float(attn.numel()), dtype=torch.float64, device=attn.device),
                (batch["labels"][:, 1:] != IGNORE_INDEX).sum().double(),
            ]
        )
        self._stats = stats if self._stats is None else self._stats + stats
        if not window_end(batch, idx, trainer.accumulate_grad_batches):
            return
        now = time.perf_counter()
        dt = max(now - (self._t or now), 1e-9)
        self._t = now
        tokens, padded, sup = _all_sum(trainer, self._stats).tolist()
        self._stats = None
        world = trainer.world_size
        metrics = {
            "train/tokens_per_s_per_device": tokens / dt / world,
            "train/supervised_tokens_per_s": sup / dt,
            "train/padding_ratio": 1.0 - tokens / max(padded, 1.0),
            "train/supervised_ratio": sup / max(tokens, 1.0),
            "train/step_tokens": sup,
            "train/peak_mem_gb": peak_memory_gb(pl_module.device),
        }
        if self._peak is None:
            on_cuda = pl_module.device.type == "cuda"
            name = torch.cuda.get_device_name(pl_module.device) if on_cuda else ""
            self._peak = (peak_flops(name) or 0.0) if on_cuda else 0.0
        counts = getattr(pl_module, "param_counts", {})
        util = mfu(
            tokens / dt / world, counts.get("params", 0), counts.get("trainable_params"), self._peak
        )
        if util is not None:
            metrics["train/mfu"] = util
        bar = {"on_step": True, "on_epoch": False, "prog_bar": True}
        pl_module.log("train/tokens_per_s", tokens / dt, **bar)
        if trainer.lr_scheduler_configs:
            lr = trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0]
            pl_module.log("train/lr", lr, **bar)
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)


class SourceLossMonitor(L.Callback):
    """``train/loss/<source>`` (this rank's token mean) and ``train/samples/<source>``.

    Reads the per-token losses the module returns (``token_losses``) and the batch's
    ``sample_index``/``sources``; the sample counts come from the resumable stream state
    (all ranks).
    """

    def __init__(self) -> None:
        self._acc: dict[str, torch.Tensor] = {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        losses = outputs.get("token_losses") if isinstance(outputs, dict) else None
        if losses is None or "sample_index" not in batch:
            return
        by_source = per_source_losses(
            losses, batch["labels"], batch["sample_index"], batch["sources"]
        )
        for name, v in by_source.items():
            self._acc[name] = self._acc[name] + v if name in self._acc else v
        if not window_end(batch, idx, trainer.accumulate_grad_batches):
            return
        kw = {"on_step": True, "on_epoch": False, "batch_size": 1}
        for name, v in self._acc.items():
            pl_module.log(f"train/loss/{name}", v[0] / v[1].clamp(min=1), **kw)
        self._acc.clear()
        for name, n in batch.get("stream_state", {}).get("seen", {}).items():
            pl_module.log(f"train/samples/{name}", float(n), **kw)


__all__ = ["SourceLossMonitor", "ThroughputMonitor", "peak_memory_gb"]
