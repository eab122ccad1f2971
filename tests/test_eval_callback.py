"""Eval during training: the live model's held-out scores are logged as ``eval/*``, and they
are the scores ``xlam-eval`` gives the exported model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import step_metrics, train_small

from xlam.eval.app import evaluate
from xlam.utils.hydra import compose_config


def _items(path: Path) -> dict[str, dict]:
    return {v["id"]: v for v in map(json.loads, (path / "items.jsonl").read_text().splitlines())}


def test_eval_callback_logs_and_matches_xlam_eval_on_the_export(tmp_path: Path) -> None:
    run = tmp_path / "run"
    metrics, objects = train_small(
        run,
        "trainer.max_steps=4",
        "data.val_size=1",
        "callbacks.eval.enabled=true",
        "callbacks.eval.every_n_steps=2",
        "callbacks.eval.max_new_tokens=12",
    )
    cb = next(c for c in objects["trainer"].callbacks if type(c).__name__ == "EvalCallback")
    assert [step for step, _ in cb.history] == [2, 4]  # every 2 steps; the end is step 4
    assert "eval/call_accuracy" in metrics and "eval/relevance_accuracy" in metrics
    logged = step_metrics(run)
    assert any("eval/call_accuracy" in row for row in logged.values())
    live = _items(run / "eval" / "step000004")
    assert len({i.split("#")[0] for i in live}) == 3  # one held-out trajectory per source

    # The same held-out turns through xlam-eval on the export: the same greedy outputs.
    cfg = compose_config(
        [
            f"model_path={run}",
            "suite=trajectories",
            "backend.max_new_tokens=12",
            "eval.progress=false",
            "eval.charts=false",
        ],
        output_dir=tmp_path / "eval",
        config_name="eval",
    )
    summary = evaluate(cfg)
    exported = _items(tmp_path / "eval")
    assert exported.keys() == live.keys()
    assert {k: v["raw"] for k, v in exported.items()} == {k: v["raw"] for k, v in live.items()}
    assert summary["metrics"]["relevance_accuracy"] == pytest.approx(
        metrics["eval/relevance_accuracy"], rel=1e-6
    )


def test_optuna_eval_search_optimises_the_eval_metric() -> None:
    cfg = compose_config(["hparams_search=optuna_eval"], output_dir=None)
    assert cfg.optimized_metric == "eval/call_accuracy"
    assert cfg.callbacks.eval.enabled is True
    assert cfg.hydra.sweeper.direction == "maximize"
