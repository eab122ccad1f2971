"""Eval during training: the ``trajectories`` suite on a held-out slice, logged as ``eval/*``.

Every ``every_n_steps`` optimizer steps (and at the end) the live model answers every
assistant turn of the held-out trajectories, prompted exactly as training renders them,
and the suite's metrics are logged (``eval/call_accuracy``, ``eval/relevance_accuracy``...).
The final values are in the run's metrics, so ``hparams_search=optuna_eval`` can optimise
``eval/call_accuracy``. Each eval's verdicts go to ``<run dir>/eval/step<N>/``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch

from xlam.eval.results import ResultStore, metric_value, write_outputs

log = logging.getLogger(__name__)


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    values = {k: metric_value(v) for k, v in metrics.items()}
    return {k: v for k, v in values.items() if v is not None}


class EvalCallback(L.Callback):
    """Runs the trajectories suite with the live model during and after training.

    Args:
        every_n_steps: Evaluate after every N optimizer steps (0: only at the end).
        at_end: Evaluate when training ends.
        path: Held-out unified JSONL file(s); ``None``: the datamodule's validation split
            (``data.val_size`` samples per source).
        limit: At most this many held-out trajectories.
        batch_size: Prompts per ``generate`` call.
        max_new_tokens: Generation limit per assistant turn.
        write_items: Write each eval's verdicts and summary under ``<run dir>/eval``.
    """

    def __init__(
        self,
        every_n_steps: int = 0,
        at_end: bool = True,
        path: str | list[str] | None = None,
        limit: int | None = 32,
        batch_size: int = 8,
        max_new_tokens: int = 128,
        write_items: bool = True,
    ) -> None:
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.at_end = at_end
        self.path = path
        self.limit = limit
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.write_items = write_items
        self._suite: Any = None
        self._last_step = -1
        self.history: list[tuple[int, dict[str, float]]] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if (
            getattr(trainer.strategy, "zero_stage_3", False)
            or "FSDP" in type(trainer.strategy).__name__
        ):
            raise ValueError(
                "callbacks.eval needs the whole model on rank 0; under ZeRO-3/FSDP evaluate "
                "the export with xlam-eval instead"
            )

    def _suite_for(self, trainer: L.Trainer) -> Any:
        if self._suite is None:
            from xlam.eval.suites.trajectories import TrajectorySuite

            if self.path:
                self._suite = TrajectorySuite(path=self.path, limit=self.limit)
            else:
                from xlam.eval.heldout import heldout_trajectories

                trajs = heldout_trajectories(trainer.datamodule, self.limit)
                if not trajs:
                    raise ValueError(
                        "callbacks.eval has no held-out trajectories: set data.val_size > 0 "
                        "or callbacks.eval.path=<held-out JSONL>"
                    )
                self._suite = TrajectorySuite(trajectories=trajs)
        return self._suite

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        # global_step moves at a window's last micro-batch; later micro-batches of the
        # same step find it already evaluated.
        step = trainer.global_step
        if not self.every_n_steps or step in (0, self._last_step) or step % self.every_n_steps:
            return
        metrics = self.run(trainer, pl_module)
        if metrics:
            pl_module.log_dict({f"eval/{k}": v for k, v in metrics.items()}, rank_zero_only=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.at_end or trainer.global_step == self._last_step:
            return
        metrics = self.run(trainer, pl_module)
        if metrics:
            logged = {f"eval/{k}": v for k, v in metrics.items()}
            for lg in trainer.loggers:
                lg.log_metrics(logged, step=trainer.global_step)
            # the run's final metrics (and so a sweeper's objective) include them
            trainer.callback_metrics.update({k: torch.tensor(v) for k, v in logged.items()})

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Evaluate now (rank 0; the others wait); returns the suite's numeric metrics."""
        from xlam.eval.backends.hf import HFBackend
        from xlam.eval.prompt import PromptBuilder

        self._last_step = trainer.global_step
        metrics: dict[str, float] = {}
        if trainer.is_global_zero:
            dm = trainer.datamodule
            suite = self._suite_for(trainer)
            prompts = PromptBuilder(dm.tokenizer, dm.render_options)
            model = pl_module.model
            was_training = model.training
            model.eval()
            verdicts: list[dict[str, Any]] = []
            store = None
            out = Path(trainer.default_root_dir) / "eval" / f"step{trainer.global_step:06d}"
            if self.write_items:
                shutil.rmtree(out, ignore_errors=True)  # a resumed run evaluates anew
                store = ResultStore(out, {"suite": suite.name, "step": trainer.global_step})
            try:
                backend = HFBackend.from_model(
                    model, dm.tokenizer, prompts, self.batch_size, self.max_new_tokens
                )

                def emit(v: Any) -> None:
                    verdicts.append(v.to_dict())
                    if store is not None:
                        store.write(v)

                suite.run(backend, set(), emit)
            finally:
                if store is not None:
                    store.close()
                model.train(was_training)
            summary = suite.summarize(verdicts)
            if self.write_items:
                write_outputs(summary, out, charts=False)
            metrics = _numbers(summary.get("metrics", {}))
            metrics["accuracy"] = float(summary["accuracy"])
            self.history.append((trainer.global_step, metrics))
            log.info(
                "eval at step %d: %s",
                trainer.global_step,
                ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()),
            )
        trainer.strategy.barrier()
        return metrics


def eval_callback(enabled: bool = False, **kwargs: Any) -> EvalCallback | None:
    """The callback when ``enabled`` (``callbacks.eval.enabled=true``), else none."""
    return EvalCallback(**kwargs) if enabled else None


__all__ = ["EvalCallback", "eval_callback"]
