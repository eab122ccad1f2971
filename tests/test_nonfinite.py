"""A NaN loss follows ``model.nonfinite``: stop naming the step and sources, or skip and count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from conftest import QUIET

from xlam.train import train
from xlam.utils.hydra import compose_config

ARGS = [
    *QUIET,
    "data.val_size=0",
    "data.batch_size=2",
    "trainer.max_steps=4",
    "export.enabled=false",
    "+callbacks.poison._target_=test_nonfinite.Poison",
]


class Poison(L.Callback):
    """Makes the logits of the chosen micro-batches NaN; keeps the weights around them."""

    def __init__(self, at: list[int] | None = None) -> None:
        self.at = set(at or [2])
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.sources: dict[int, list[str]] = {}
        self._hook: Any = None

    def _snapshot(self, pl_module: Any) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        self.weights[idx] = self._snapshot(pl_module)
        if idx in self.at:
            self.sources[idx] = sorted(set(batch["sources"]))
            head = pl_module.model.get_output_embeddings()
            self._hook = head.register_forward_hook(lambda m, i, out: out * float("nan"))

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.weights["end"] = self._snapshot(pl_module)


def _poison(objects: dict[str, Any]) -> Poison:
    return next(c for c in objects["trainer"].callbacks if isinstance(c, Poison))


def test_stop_names_the_step_and_sources(tmp_path: Path) -> None:
    cfg = compose_config([*ARGS, "+callbacks.poison.at=[2]"], output_dir=tmp_path)
    with pytest.raises(FloatingPointError, match=r"non-finite gradient norm nan at step 2") as e:
        train(cfg)
    assert "model.nonfinite=skip" in str(e.value)
    assert "sources with a non-finite loss" in str(e.value)


def test_skip_leaves_the_weights_and_counts(tmp_path: Path) -> None:
    cfg = compose_config(
        [*ARGS, "+callbacks.poison.at=[2]", "model.nonfinite=skip"], output_dir=tmp_path
    )
    _, objects = train(cfg)
    poison = _poison(objects)
    assert objects["trainer"].global_step == 4
    assert objects["module"].nonfinite_skipped == 1
    # Step 2 changed nothing (not even AdamW's decay or moments); the others trained.
    before, after = poison.weights[2], poison.weights[3]
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert not all(torch.equal(poison.weights[1][n], before[n]) for n in before)
    assert not all(torch.equal(after[n], poison.weights["end"][n]) for n in after)
    assert all(torch.isfinite(p).all() for p in poison.weights["end"].values())
    record = json.loads(Path(objects["run_record"]).read_text())
    assert record["nonfinite_skipped"] == 1
    # The count travels with the checkpoint.
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["xlam"]["nonfinite_skipped"] == 1


def test_skip_stops_past_the_limit(tmp_path: Path) -> None:
    cfg = compose_config(
        [
            *ARGS,
            "+callbacks.poison.at=[0,1,2]",
            "model.nonfinite=skip",
            "model.max_nonfinite_skips=2",
        ],
        output_dir=tmp_path,
    )
    with pytest.raises(FloatingPointError, match="3 steps skipped so far, more than"):
        train(cfg)
