"""The real ``xlam-train`` CLI in a subprocess: single runs and ``-m`` sweeps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

XLAM_TRAIN = shutil.which("xlam-train") or str(Path(sys.executable).parent / "xlam-train")


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [XLAM_TRAIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_cli_fast_dev_run_from_any_dir(tmp_path: Path) -> None:
    # Run from an unrelated working directory: configs and assets come from the package.
    _run(["debug=fdr"], cwd=tmp_path)
    runs = list((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 1
    assert (runs[0] / ".hydra" / "config.yaml").is_file()


def test_cli_overrides_and_outputs(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _run(
        [
            f"hydra.run.dir={run_dir}",
            "trainer.max_steps=3",
            "data.batch_size=2",
            "model.optimizer.lr=0.01",
            "export.enabled=false",
        ],
        cwd=tmp_path,
    )
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert list(run_dir.glob("run-*.json"))
    assert "model.optimizer.lr=0.01" in (run_dir / ".hydra" / "overrides.yaml").read_text()


def test_cli_multirun_two_learning_rates(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    _run(
        [
            "-m",
            f"hydra.sweep.dir={sweep}",
            "model.optimizer.lr=0.001,0.003",
            "trainer.max_steps=2",
            "data.batch_size=2",
            "export.enabled=false",
            "callbacks=none",
        ],
        cwd=tmp_path,
        timeout=400,
    )
    dirs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [d.name for d in dirs] == ["0", "1"]
    lrs = []
    for d in dirs:
        overrides = (d / ".hydra" / "overrides.yaml").read_text()
        lrs.append(next(x for x in ("0.001", "0.003") if x in overrides))
        assert list(d.glob("run-*.json")), f"no run record in {d}"
    assert lrs == ["0.001", "0.003"]


@pytest.mark.slow
def test_cli_experiment_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    _run(
        ["-m", f"hydra.sweep.dir={sweep}", "experiment=glob(*)", "debug=fdr"],
        cwd=tmp_path,
        timeout=600,
    )
    assert any(p.is_dir() for p in sweep.iterdir())


@pytest.mark.slow
def test_cli_optuna_search(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    _run(
        [
            "-m",
            "hparams_search=optuna_lr",
            f"hydra.sweep.dir={sweep}",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            "trainer.max_steps=2",
            "data.batch_size=2",
            "export.enabled=false",
            "callbacks=none",
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert (sweep / "optimization_results.yaml").is_file()
