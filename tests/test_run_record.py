"""Every run records its config, data, metrics, commit and versions, and is queryable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import train_small
from omegaconf import OmegaConf

from xlam.utils.run_record import load_runs, write_run_record


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    out = tmp_path_factory.mktemp("record")
    _, objects = train_small(
        out / "run", "trainer.max_steps=2", "export.enabled=false", "tags=[record]"
    )
    return out / "run", objects, out / "logs" / "runs_index.jsonl"


def test_run_dir_holds_the_record(recorded_run: tuple[Path, dict, Path]) -> None:
    run, objects, _ = recorded_run
    config = OmegaConf.load(run / "config.yaml")  # the full resolved config
    assert config.trainer.max_steps == 2 and "${" not in (run / "config.yaml").read_text()
    record = json.loads((run / f"run-{objects['run_id']}.json").read_text())
    assert record["config"]["data"]["batch_size"] == 2
    mixture = record["mixture"]
    assert set(mixture["plan"]) == {"fc_single", "multi_turn", "chat"}
    # Actual = counted from the batches that reached the model.
    assert set(mixture["actual"]) == set(mixture["plan"])
    assert mixture["actual_total"] == sum(mixture["actual"].values()) > 0
    assert all(mixture["actual"][k] <= mixture["plan"][k] for k in mixture["plan"])
    assert record["metrics"]["train/loss"] > 0
    assert record["git"]["commit"] and record["versions"]["torch"]
    assert record["versions"]["deepspeed"] and "bitsandbytes" in record["versions"]
    assert record["global_step"] == 2 and record["deepspeed_config"] is None
    assert record["model_params"]["params"] > 0


def test_index_is_queryable(recorded_run: tuple[Path, dict, Path]) -> None:
    _, objects, index = recorded_run
    runs = load_runs(index)
    assert runs[-1]["run_id"] == objects["run_id"]
    assert runs[-1]["tags"] == ["record"] and runs[-1]["global_step"] == 2
    frame = load_runs(index, as_frame=True)
    assert "metrics.train/loss" in frame.columns
    full = load_runs(index, full=True)
    assert full[-1]["config"]["trainer"]["max_steps"] == 2


def test_write_and_load_many(tmp_path: Path) -> None:
    index = tmp_path / "index.jsonl"
    for i, strategy in enumerate(["ddp", {"_target_": "x.XlamDeepSpeedStrategy", "stage": 3}]):
        write_run_record(
            tmp_path / f"r{i}",
            f"id{i}",
            {
                "model": {"path": None, "lora": {"enabled": i == 1}},
                "trainer": {"strategy": strategy, "precision": "bf16-mixed"},
            },
            {"plan": {}},
            {"train/loss": 1.0 + i},
            {"world_size": 2},
            index,
        )
    runs = load_runs(index)
    assert [r["run_id"] for r in runs] == ["id0", "id1"]
    assert runs[1]["trainer"] == "XlamDeepSpeedStrategy(stage=3)" and runs[1]["lora"]
    frame = load_runs(index, as_frame=True)
    assert frame.loc[frame["metrics.train/loss"].idxmin(), "run_id"] == "id0"
    assert load_runs(tmp_path / "missing.jsonl") == []
