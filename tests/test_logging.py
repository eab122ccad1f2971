"""Training metrics, offline wandb files in the run dir, resumable CSV, MFU."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import train_rows, train_small

from xlam.models.components.flops import flops_per_token, mfu, peak_flops
from xlam.utils.logging import ResumableCSVLogger


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wandb")
    train_small(
        out / "run",
        "logger=wandb",
        "trainer.max_steps=3",
        "trainer.accumulate_grad_batches=2",
        "export.enabled=false",
    )
    import wandb

    wandb.finish()
    return out / "run"


def test_wandb_id_follows_the_run_dir(tmp_path: Path) -> None:
    from xlam.utils.hydra import compose_config

    # Resuming in place (same run dir) continues the same wandb run; another dir is another run.
    ids = [
        compose_config(["logger=wandb"], output_dir=tmp_path / d).logger.wandb.id
        for d in ("a", "a", "b")
    ]
    assert ids[0] == ids[1] != ids[2]
    # No API key here: offline mode (the wandb_run fixture trains with this logger).
    assert compose_config(["logger=wandb"], output_dir=tmp_path / "a").logger.wandb.offline


def test_wandb_writes_offline_files_in_run_dir(wandb_run: Path) -> None:
    runs = list((wandb_run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    data = list(runs[0].glob("run-*.wandb"))
    assert data and data[0].stat().st_size > 0


def test_step_metrics_logged(wandb_run: Path) -> None:
    rows = train_rows(wandb_run)
    assert [int(r["step"]) for r in rows] == [0, 1, 2]  # one row per optimizer step
    for key in (
        "train/loss",
        "train/tokens_per_s",
        "train/supervised_tokens_per_s",
        "train/padding_ratio",
        "train/lr",
        "train/grad_norm",
        "train/step_tokens",
        "train/tokens_per_s_per_device",
        "train/peak_mem_gb",
    ):
        assert all(r.get(key) for r in rows), key
    r = rows[-1]
    assert 0.0 <= float(r["train/padding_ratio"]) < 1.0
    assert float(r["train/supervised_tokens_per_s"]) <= float(r["train/tokens_per_s"])
    assert "train/mfu" not in r or not r["train/mfu"]  # no known peak on a CPU


def test_resumable_csv_keeps_history(tmp_path: Path) -> None:
    first = ResumableCSVLogger(tmp_path, name="csv", version="")
    for step in range(5):
        first.log_metrics({"train/loss": float(step)}, step=step)
    first.save()
    # A resume from the step-3 checkpoint re-trains steps 3 and 4 and adds a metric.
    second = ResumableCSVLogger(tmp_path, name="csv", version="")
    second.log_metrics({"train/loss": 30.0, "val/loss": 1.0}, step=3)
    second.log_metrics({"train/loss": 40.0}, step=4)
    second.save()
    with (tmp_path / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["step"]), float(r["train/loss"])) for r in rows] == [
        (0, 0.0),
        (1, 1.0),
        (2, 2.0),
        (3, 30.0),
        (4, 40.0),
    ]
    assert rows[3]["val/loss"] == "1.0"


def test_peak_flops_table_and_mfu() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA L40S") == 362e12
    assert peak_flops("cpu") is None and peak_flops(None) is None
    assert flops_per_token(100) == 600  # 6 N for full fine-tuning
    assert flops_per_token(100, 0) == 400  # frozen base: no weight gradients
    assert mfu(1000.0, 10**9, None, 989e12) == pytest.approx(6e12 / 989e12)
    assert mfu(1000.0, 10**9, None, None) is None
