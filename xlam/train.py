"""Training entry point: ``train(cfg)`` does the work; ``main`` is the Hydra wrapper."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from xlam.utils.hydra import CONF_DIR, register_resolvers, to_container
from xlam.utils.run_record import new_run_id, write_run_record

log = logging.getLogger(__name__)
register_resolvers()


def _instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if c and "_target_" in c]


def _float_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _save_final_checkpoint(trainer: L.Trainer) -> None:
    # Periodic checkpoints rarely land on the last step; the final state must be resumable.
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt = trainer.checkpoint_callback
    if trainer.fast_dev_run or not isinstance(ckpt, ModelCheckpoint) or ckpt.dirpath is None:
        return
    if ckpt.save_last and ckpt._last_global_step_saved != trainer.global_step:
        trainer.save_checkpoint(Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}.ckpt")


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train a model as described by ``cfg``.

    Returns:
        ``(metrics, objects)``: final metrics and the datamodule, module and trainer.
    """
    if cfg.extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")
    if cfg.extras.get("print_config"):
        log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=False))
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id()

    datamodule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.model)
    callbacks = _instantiate_dict(cfg.get("callbacks"))
    loggers = _instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )

    datamodule.prepare()
    world = trainer.world_size
    accum = trainer.accumulate_grad_batches
    if not trainer.fast_dev_run:
        if trainer.max_steps is None or trainer.max_steps < 0:
            trainer.fit_loop.epoch_loop.max_steps = datamodule.planned_steps(world, accum)
        else:
            datamodule.set_num_samples(trainer.max_steps * datamodule.batch_size * world * accum)
    log.info(
        "plan: %d samples %s -> %d optimizer steps (batch %d x world %d x accum %d)",
        datamodule.total_samples, datamodule.plan, trainer.max_steps, datamodule.batch_size,
        world, accum,
    )

    ckpt_path = cfg.get("ckpt_path")
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = _float_metrics(trainer.callback_metrics)
    _save_final_checkpoint(trainer)

    objects: dict[str, Any] = {"datamodule": datamodule, "module": module, "trainer": trainer,
                               "run_id": run_id}
    if cfg.export.enabled and not trainer.fast_dev_run:
        if trainer.is_global_zero:
            from xlam.models.export import export_hf

            objects["export_dir"] = export_hf(module.model, datamodule.tokenizer, cfg.export.dir)
            log.info("exported HF model to %s", objects["export_dir"])
        trainer.strategy.barrier()
    if trainer.is_global_zero:
        record = write_run_record(
            output_dir,
            run_id,
            to_container(cfg),
            {"plan": datamodule.plan, "sources": datamodule.mixture_report(),
             "total_samples": datamodule.total_samples},
            metrics,
            extra={"global_step": trainer.global_step, "world_size": world},
            index_file=cfg.paths.get("runs_index"),
        )
        objects["run_record"] = record
        log.info("run record: %s", record)
    return metrics, objects


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """``xlam-train``: compose the config from the CLI and train."""
    metrics, _ = train(cfg)
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


if __name__ == "__main__":
    main()
