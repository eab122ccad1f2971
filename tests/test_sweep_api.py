"""``-m`` sweeps through the compose API: the points Hydra would launch, run in-process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from xlam.utils.hydra import compose_config, run_sweep, sweep_points

SWEEPS = [
    ["model.optimizer.lr=0.001,0.003", "trainer.max_steps=2"],
    ["seed=1,2,3", "model.optimizer.lr=0.001,0.01", "data.batch_size=2"],
    ["trainer.max_steps=range(2,5)", "experiment=glob(*)"],
    ["logger=csv,none", "callbacks=default,none"],
]


def _hydra_points(overrides: list[str]) -> list[list[str]]:
    # Hydra's own basic sweeper as the oracle: a private API, so this test is also the
    # alarm for the day it changes.
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from xlam.utils.hydra import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        (batch,) = BasicSweeper.split_arguments(parser.parse_overrides(overrides), None)
    return batch


@pytest.mark.parametrize("overrides", SWEEPS, ids=lambda o: " ".join(o))
def test_sweep_points_are_hydras(overrides: list[str]) -> None:
    assert sweep_points(overrides) == _hydra_points(overrides)


def test_sweep_points_keep_plain_overrides_verbatim() -> None:
    points = sweep_points(["seed=1,2", "+extra=1", "~tags", "model.optimizer.lr=1e-3"])
    assert points == [
        ["seed=1", "+extra=1", "~tags", "model.optimizer.lr=1e-3"],
        ["seed=2", "+extra=1", "~tags", "model.optimizer.lr=1e-3"],
    ]


def test_sweep_points_refuse_what_needs_a_sweeper() -> None:
    with pytest.raises(ValueError, match=r"'model.optimizer.lr=interval\(0.001,0.1\)'"):
        sweep_points(["model.optimizer.lr=interval(0.001,0.1)"])


def _seen(cfg) -> dict:
    hc = HydraConfig.get()
    return {"out": cfg.paths.output_dir, "mode": hc.mode, "num": hc.job.num, "seed": cfg.seed}


def test_run_sweep_runs_multirun_jobs(tmp_path: Path) -> None:
    runs = run_sweep(["seed=7,8", "data.batch_size=2"], _seen, sweep_dir=tmp_path / "sweep")
    assert [r.overrides for r in runs] == [
        ["seed=7", "data.batch_size=2"],
        ["seed=8", "data.batch_size=2"],
    ]
    for num, run in enumerate(runs):
        # the layout of xlam-train -m: <sweep dir>/<job num>, created before the task runs
        assert run.output_dir == (tmp_path / "sweep" / str(num)).resolve()
        assert run.output_dir.is_dir()
        assert run.result == {
            "out": str(run.output_dir),
            "mode": RunMode.MULTIRUN,
            "num": num,
            "seed": 7 + num,
        }


def _slow(cfg) -> dict:
    time.sleep(1.1)  # the next point starts in another second of ${now:...}
    return _seen(cfg)


def test_run_sweep_default_dir_is_the_configs(tmp_path: Path) -> None:
    runs = run_sweep(["seed=1,2", f"paths.log_dir={tmp_path}"], _slow)
    # hydra.sweep.dir = ${paths.log_dir}/${task_name}/multiruns/<time>, shared by the points
    parent = runs[0].output_dir.parent
    assert parent.parent == tmp_path / "train" / "multiruns"
    assert [r.output_dir for r in runs] == [parent / "0", parent / "1"]


def test_run_sweep_refuses_another_sweeper(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="OptunaSweeper"):
        run_sweep(["hparams_search=optuna_lr"], _seen, sweep_dir=tmp_path)


def test_compose_config_is_a_single_run(tmp_path: Path) -> None:
    cfg = compose_config(["seed=3"], output_dir=tmp_path / "run")
    assert HydraConfig.get().mode == RunMode.RUN
    assert cfg.paths.output_dir == str((tmp_path / "run").resolve())
