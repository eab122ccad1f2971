"""``train()`` adds nothing a bare ``Trainer(...).fit(module, datamodule)`` lacks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import hydra
import lightning as L
import numpy as np

from xlam.train import train
from xlam.utils.hydra import compose_config

PIN = [
    "trainer.max_steps=2",
    "trainer.precision=32-true",
    "seed=42",
    "export.enabled=false",
    "trainer.enable_progress_bar=false",
    "extras.print_config=false",
]


def _curve(run: Path) -> tuple[list[float], list[float]]:
    with (run / "csv" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    return [float(r["train/loss"]) for r in rows], [float(r["train/grad_norm"]) for r in rows]


def test_bare_trainer_fit_trains_like_train(tmp_path: Path) -> None:
    # With accumulation, the loss is a token mean over each optimizer step only if the
    # datamodule stamps every micro-batch with its step's token count itself.
    args = [*PIN, "trainer.accumulate_grad_batches=2", f"data.cache_dir={tmp_path / 'cache'}"]
    train(compose_config(args, output_dir=tmp_path / "train"))

    # A notebook's spelling: no train(), no step count, no loader wrapping by hand.
    cfg = compose_config(args, output_dir=tmp_path / "bare")
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.model)
    callbacks = [hydra.utils.instantiate(c) for c in cfg.callbacks.values()]
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[c for c in callbacks if c is not None],
        logger=hydra.utils.instantiate(cfg.logger.csv),
    )
    trainer.fit(module, datamodule=datamodule)
    (losses, norms), (ref_losses, ref_norms) = _curve(tmp_path / "bare"), _curve(tmp_path / "train")
    assert len(losses) == 2
    assert np.allclose(losses, ref_losses, rtol=0, atol=1e-6), (losses, ref_losses)
    assert np.allclose(norms, ref_norms, rtol=0, atol=1e-6), (norms, ref_norms)
    assert (tmp_path / "bare" / "checkpoints" / "last.ckpt").is_file()


def test_without_max_steps_one_epoch_is_the_planned_run(tmp_path: Path) -> None:
    # max_steps=-1: the datamodule's loader holds exactly the planned optimizer steps.
    cfg = compose_config(
        [
            "trainer.enable_progress_bar=false",
            "extras.print_config=false",
            "export.enabled=false",
            "trainer.accumulate_grad_batches=3",
            # a short plan: one pass of a fifth of each sample source
            *(f"data.sources.{n}.epochs=0.2" for n in ("fc_single", "multi_turn", "chat")),
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
        output_dir=tmp_path,
    )
    _, objects = train(cfg)
    dm, trainer = objects["datamodule"], objects["trainer"]
    assert trainer.global_step == dm.planned_steps(1, 3)
    assert trainer.num_training_batches == dm.planned_steps(1, 3) * 3


def test_callbacks_none_means_none(tmp_path: Path) -> None:
    cfg = compose_config([*PIN, "callbacks=none"], output_dir=tmp_path)
    _, objects = train(cfg)
    from xlam.utils import callbacks as ours

    mine = [c for c in objects["trainer"].callbacks if type(c).__module__ == ours.__name__]
    assert mine == []
    assert not (tmp_path / "checkpoints").exists()
    record = json.loads(Path(objects["run_record"]).read_text())
    assert record["mixture"]["actual"] is None  # nothing counted what was trained
