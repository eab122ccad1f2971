"""Training entry point: ``train(cfg)`` does the work; ``main`` is the Hydra wrapper."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from xlam.utils.callbacks import SourceCounter
from xlam.utils.checkpoint import clean_partials, resolve_ckpt_path
from xlam.utils.hydra import CONF_DIR, register_resolvers, to_container
from xlam.utils.run_record import new_run_id, write_config, write_run_record

log = logging.getLogger(__name__)
register_resolvers()


def _instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    # A factory may decline (a progress bar with trainer.enable_progress_bar=false): None.
    if not cfg:
        return []
    made = [hydra.utils.instantiate(c) for c in cfg.values() if c and "_target_" in c]
    return [m for m in made if m is not None]


def _float_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _checkpoint_dir(trainer: L.Trainer) -> str | None:
    ckpt = trainer.checkpoint_callback
    return getattr(ckpt, "dirpath", None)


def _check_single_process_sweep(trainer: L.Trainer) -> None:
    # Inside -m, Lightning would relaunch the whole sweep for each extra process, with the
    # wrong run dirs: sweeps run single-process points, distributed runs are one launch each.
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or trainer.world_size == 1:
        return
    env = getattr(trainer.strategy, "cluster_environment", None)
    external = env is not None and env.creates_processes_externally  # torchrun, SLURM tasks
    if HydraConfig.get().mode == RunMode.MULTIRUN and not external:
        raise ValueError(
            f"a -m sweep point asks for {trainer.world_size} processes: sweeps run "
            "single-process points (trainer.devices=1); launch distributed runs one at a "
            "time with torchrun or SLURM (docs/distributed.md)"
        )


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    return json.loads(path.read_text()) if path.is_file() else None


def resolve_run_dir_model(cfg: DictConfig) -> None:
    """``model.path=RUN_DIR`` (a finished run, e.g. SFT before DPO) means its ``export/``."""
    path = cfg.model.get("path")
    if path and not (Path(path) / "config.json").is_file():
        export = Path(path) / "export"
        if (export / "config.json").is_file():
            log.info("model.path %s is a run dir: training from its export %s", path, export)
            cfg.model.path = str(export)


def instantiate_module(cfg: DictConfig) -> L.LightningModule:
    """The LightningModule of ``cfg.objective``: ``sft`` the model group as it is, ``dpo``
    the same arguments to :class:`~xlam.models.dpo.DPOModule` with the objective."""
    objective = cfg.get("objective") or {}
    name = objective.get("name", "sft")
    if name == "sft":
        return hydra.utils.instantiate(cfg.model)
    if name != "dpo":
        raise ValueError(f"objective.name must be sft or dpo, got {name!r}")
    node = OmegaConf.to_container(cfg.model, resolve=True)
    node["_target_"] = "xlam.models.dpo.DPOModule"
    node["objective"] = to_container(objective)
    return hydra.utils.instantiate(node)


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train a model as described by ``cfg``.

    Instantiate, fit (resolving ``ckpt_path=last``), export, record. The datamodule sizes
    its plan for the trainer itself, so a bare ``Trainer(...).fit(module, datamodule)``
    trains the same run.

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

    resolve_run_dir_model(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    module = instantiate_module(cfg)
    callbacks = _instantiate_dict(cfg.get("callbacks"))
    loggers = _instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
    if trainer.is_global_zero:
        write_config(output_dir, to_container(cfg))

    _check_single_process_sweep(trainer)
    ckpt_dir = _checkpoint_dir(trainer)
    if trainer.is_global_zero:
        for leftover in clean_partials(ckpt_dir):
            log.warning("removed %s, left by an interrupted save", leftover)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), ckpt_dir, trainer.default_root_dir)
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = _float_metrics(trainer.callback_metrics)
    counter = next((c for c in trainer.callbacks if isinstance(c, SourceCounter)), None)
    # A collective: every rank calls it.
    actual = counter.global_counts(trainer) if counter is not None else None

    objects: dict[str, Any] = {
        "datamodule": datamodule,
        "module": module,
        "trainer": trainer,
        "run_id": run_id,
    }
    if cfg.export.enabled and not trainer.fast_dev_run:
        from xlam.models.export import export_trained

        export_dir = export_trained(
            trainer,
            module,
            datamodule.tokenizer,
            cfg.export.dir,
            cfg.export.get("adapter_dir"),
            cfg.export.get("dtype", "auto"),
            to_container(cfg.data.get("render")),
        )
        if export_dir is not None:
            objects["export_dir"] = export_dir
            log.info("exported HF model to %s", export_dir)
        trainer.strategy.barrier()
    if trainer.is_global_zero:
        ds_config = getattr(trainer.strategy, "config_out", None)
        record = write_run_record(
            output_dir,
            run_id,
            to_container(cfg),
            {
                "plan": datamodule.plan,
                "sources": datamodule.mixture_report(),
                "total_samples": datamodule.total_samples,
                "actual": actual,
                "actual_total": sum(actual.values()) if actual is not None else None,
            },
            metrics,
            extra={
                "global_step": trainer.global_step,
                "world_size": trainer.world_size,
                "accumulate_grad_batches": trainer.accumulate_grad_batches,
                "resumed_from": ckpt_path,
                "model_params": getattr(module, "param_counts", {}),
                "nonfinite_skipped": getattr(module, "nonfinite_skipped", 0),
                "deepspeed_config": _read_json(Path(ds_config)) if ds_config else None,
                "export_dir": str(objects.get("export_dir") or "") or None,
            },
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
