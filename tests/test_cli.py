"""The real ``xlam-train`` CLI in a subprocess: single runs and ``-m`` sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import leaves, run_cli
from omegaconf import Container, DictConfig, OmegaConf

from xlam.utils.hydra import CONF_DIR, compose_config

# Each point of a sweep: two steps, nothing kept but the run record.
SWEEP_POINT = ["trainer.max_steps=2", "data.batch_size=2", "export.enabled=false", "callbacks=none"]


def test_cli_fast_dev_run_from_any_dir(tmp_path: Path) -> None:
    # Run from an unrelated working directory: configs and assets come from the package.
    run_cli(["debug=fdr"], cwd=tmp_path, timeout=300)
    runs = list((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 1
    assert (runs[0] / ".hydra" / "config.yaml").is_file()


def test_cli_overrides_and_outputs(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_cli(
        [
            f"hydra.run.dir={run_dir}",
            "trainer.max_steps=3",
            "data.batch_size=2",
            "model.optimizer.lr=0.01",
            "export.enabled=false",
        ],
        cwd=tmp_path,
        timeout=300,
    )
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert list(run_dir.glob("run-*.json"))
    assert "model.optimizer.lr=0.01" in (run_dir / ".hydra" / "overrides.yaml").read_text()


def test_cli_multirun_two_learning_rates(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run_cli(
        [
            "-m",
            f"hydra.sweep.dir={sweep}",
            "model.optimizer.lr=0.001,0.003",
            *SWEEP_POINT,
        ],
        cwd=tmp_path,
    )
    dirs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [d.name for d in dirs] == ["0", "1"]
    lrs = []
    for d in dirs:
        overrides = (d / ".hydra" / "overrides.yaml").read_text()
        lrs.append(next(x for x in ("0.001", "0.003") if x in overrides))
        assert list(d.glob("run-*.json")), f"no run record in {d}"
    assert lrs == ["0.001", "0.003"]


def check_experiment_runs(sweep: Path, overrides: list[str], tmp_path: Path) -> None:
    """Every experiment has a sweep job that trained one step with the experiment's settings.

    The settings are the keys the experiment file writes, valued as the same overrides
    compose here: a job that ran without its experiment, or lost a key of it, fails.
    """
    jobs: dict[str, Path] = {}
    for d in sorted(p for p in sweep.iterdir() if p.is_dir()):
        for override in OmegaConf.load(d / ".hydra" / "overrides.yaml"):
            if override.startswith("experiment="):
                jobs[override.removeprefix("experiment=")] = d
    folder = CONF_DIR / "experiment"
    names = sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))
    assert names and sorted(jobs) == names, (names, jobs)
    for name in names:
        records = list(jobs[name].glob("run-*.json"))
        assert len(records) == 1, f"experiment={name}: no run record in {jobs[name]}"
        record = json.loads(records[0].read_text())
        assert record["global_step"] == 1, (name, record["global_step"])
        ran = OmegaConf.create(record["config"])
        expected = compose_config([f"experiment={name}", *overrides], output_dir=tmp_path / name)
        written = OmegaConf.to_container(OmegaConf.load(folder / f"{name}.yaml"))
        keys = [k for k in leaves(written) if k != "defaults"]
        assert keys, f"experiment {name} sets nothing"
        for key in keys:
            assert _value(ran, key) == _value(expected, key), (name, key)


def _value(cfg: DictConfig, key: str) -> object:
    value = OmegaConf.select(cfg, key, throw_on_missing=True)
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, Container) else value


@pytest.mark.slow
def test_cli_experiment_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run_cli(
        ["-m", f"hydra.sweep.dir={sweep}", "experiment=glob(*)", "debug=fdr"],
        cwd=tmp_path,
        timeout=600,
    )
    check_experiment_runs(sweep, ["debug=fdr"], tmp_path)


@pytest.mark.slow
def test_cli_optuna_search(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    run_cli(
        [
            "-m",
            "hparams_search=optuna_lr",
            f"hydra.sweep.dir={sweep}",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            *SWEEP_POINT,
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert (sweep / "optimization_results.yaml").is_file()
