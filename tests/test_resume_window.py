"""Checkpoints saved inside an accumulation window resume exactly.

A callback saves at ``batch_idx % 4 == 1`` (two micro-batches into a window of 4), and a
real SIGUSR1 / SIGTERM stops a subprocess wherever it lands; the resumed runs must take the
same optimizer steps (gradients to 1e-6), micro-batch losses and sample ids as an
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from conftest import QUIET, batch_ids, batch_records, launch_cli, step_metrics

from xlam.train import train
from xlam.utils.hydra import compose_config

ACCUM = 4
STEPS = 4
ARGS = [
    *QUIET,
    "data.val_size=0",
    "data.batch_size=1",
    f"trainer.max_steps={STEPS}",
    f"trainer.accumulate_grad_batches={ACCUM}",
    "export.enabled=false",
    "model.optimizer.lr=0.01",
]


class Recorder(L.Callback):
    """What each optimizer step trained: sample ids and loss per micro-batch, gradients."""

    def __init__(self) -> None:
        self.micro: list[tuple[int, int, list[str]]] = []
        self.losses: dict[tuple[int, int], float] = {}
        self.grads: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        self.micro.append((trainer.global_step, idx % ACCUM, list(batch["ids"])))

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        step = trainer.global_step - (1 if idx % ACCUM == ACCUM - 1 else 0)
        self.losses[(step, idx % ACCUM)] = float(outputs["loss"])

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        grads = [p.grad.flatten() for p in pl_module.parameters() if p.grad is not None]
        self.grads[trainer.global_step] = torch.cat(grads).clone()


class SaveAt(L.Callback):
    """Saves a checkpoint after the given micro-batches (from ``on_train_batch_end``)."""

    def __init__(self, dirpath: str, at: list[int]) -> None:
        self.dirpath = Path(dirpath)
        self.at = set(at)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        if idx in self.at:
            trainer.save_checkpoint(self.dirpath / f"after-micro-{idx}.ckpt")


def _run(out: Path, extra: list[str]) -> tuple[Recorder, dict[str, Any]]:
    cfg = compose_config(
        [*ARGS, "+callbacks.recorder._target_=test_resume_window.Recorder", *extra],
        output_dir=out,
    )
    _, objects = train(cfg)
    rec = next(c for c in objects["trainer"].callbacks if isinstance(c, Recorder))
    return rec, objects


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recorder, Path, dict]:
    out = tmp_path_factory.mktemp("window")
    saves = out / "saves"
    rec, objects = _run(
        out / "full",
        [
            "+callbacks.save_at._target_=test_resume_window.SaveAt",
            f"+callbacks.save_at.dirpath={saves}",
            "+callbacks.save_at.at=[5,7]",
        ],
    )
    return rec, saves, json.loads(Path(objects["run_record"]).read_text())


@pytest.mark.parametrize("micro", [5, 7], ids=["inside-window", "at-window-end"])
def test_checkpoint_inside_window_resumes_exactly(
    uninterrupted: tuple[Recorder, Path, dict], micro: int, tmp_path: Path
) -> None:
    full, saves, full_record = uninterrupted
    ckpt = saves / f"after-micro-{micro}.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    # Both save points resume at micro-batch 4 or 8: the start of an unfinished window.
    start = micro + 1 - (micro + 1) % ACCUM if (micro + 1) % ACCUM == 0 else micro - micro % ACCUM
    assert state["TrajectoryDataModule"]["stream"]["step"] == start
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["stream"]["step"] == (
        start
    )
    counts = state["callbacks"]["SourceCounter"]["counts"]
    trained = [s for step, _, ids in full.micro[:start] for s in ids]
    assert sum(counts.values()) == len(trained)

    resumed, objects = _run(tmp_path / "resumed", [f"ckpt_path={ckpt}"])
    first = start // ACCUM
    assert resumed.micro == [m for m in full.micro if m[0] >= first]
    assert sorted(resumed.grads) == list(range(first, STEPS))
    for step in range(first, STEPS):
        diff = (resumed.grads[step] - full.grads[step]).abs().max().item()
        assert diff < 1e-6, (step, diff)
    for key, loss in resumed.losses.items():
        assert abs(loss - full.losses[key]) < 1e-6, key
    assert set(resumed.losses) == {k for k in full.losses if k[0] >= first}
    # The whole run's per-source counts: the replayed micro-batches are not counted twice.
    record = json.loads(Path(objects["run_record"]).read_text())
    assert record["mixture"]["actual"] == full_record["mixture"]["actual"]


# -- real pre-emption signals ------------------------------------------------------------
SUB_ARGS = [*ARGS, "callbacks=debug", "callbacks.progress_bar=null"]


class SignalAt(L.Callback):
    """Sends this process a real signal as a micro-batch starts (before it trains)."""

    def __init__(self, at: int, signum: str) -> None:
        self.at = at
        self.signum = signal.Signals[signum]

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        if idx == self.at:
            os.kill(os.getpid(), self.signum)


def _launch(run: Path, cwd: Path, extra: list[str] = ()) -> subprocess.Popen:
    # tests/ is on the subprocess's PYTHONPATH (conftest.ENV): configs can name SignalAt.
    return launch_cli([*SUB_ARGS, f"hydra.run.dir={run}", *extra], cwd)


def _csv(run: Path) -> dict[int, tuple[float, float]]:
    return {s: (m["train/loss"], m["train/grad_norm"]) for s, m in step_metrics(run).items()}


@pytest.mark.slow
def test_real_preemption_signals_resume_exactly(tmp_path: Path) -> None:
    ref_dir, usr1_dir, term_dir = tmp_path / "ref", tmp_path / "usr1", tmp_path / "term"
    ref = _launch(ref_dir, tmp_path / "a")
    # SIGUSR1 (SLURM's warning) arrives as micro-batch 5 starts: one micro-batch into a window.
    usr1 = _launch(
        usr1_dir,
        tmp_path / "b",
        [
            "+callbacks.signal_at._target_=test_resume_window.SignalAt",
            "+callbacks.signal_at.at=5",
            "+callbacks.signal_at.signum=SIGUSR1",
        ],
    )
    # SIGTERM from outside, wherever it lands once a few micro-batches have trained.
    term = _launch(term_dir, tmp_path / "c")
    deadline = time.time() + 300
    while time.time() < deadline and term.poll() is None and len(batch_records(term_dir)) < 6:
        time.sleep(0.02)
    assert term.poll() is None, "the run ended before the signal"
    os.kill(term.pid, signal.SIGTERM)
    assert term.wait(timeout=200) == 1, term.stderr.read()[-3000:]
    assert usr1.wait(timeout=400) == 1, usr1.stderr.read()[-3000:]

    resumed = {}
    for run in (usr1_dir, term_dir):
        hpc = list(run.glob("hpc_ckpt_*.ckpt"))
        assert len(hpc) == 1, run
        step = torch.load(hpc[0], map_location="cpu", weights_only=False)["TrajectoryDataModule"][
            "stream"
        ]["step"]
        # Saved after micro-batch 5 (SIGUSR1) or wherever SIGTERM landed: a window's start.
        assert step == 4 if run == usr1_dir else step % ACCUM == 0, (run.name, step)
        resumed[run] = _launch(run, tmp_path / run.name, ["ckpt_path=last"])
    assert ref.wait(timeout=400) == 0, ref.stderr.read()[-3000:]
    for run, proc in resumed.items():
        assert proc.wait(timeout=400) == 0, proc.stderr.read()[-3000:]
        a, b = _csv(ref_dir), _csv(run)
        assert sorted(a) == sorted(b) == list(range(STEPS))
        for step in a:
            assert abs(a[step][0] - b[step][0]) < 1e-5, (run.name, step, a[step], b[step])
            assert abs(a[step][1] - b[step][1]) < 1e-5, (run.name, step, a[step], b[step])
        assert batch_ids(ref_dir) == batch_ids(run)
        record = json.loads(max(run.glob("run-*.json"), key=os.path.getmtime).read_text())
        assert "hpc_ckpt_" in record["resumed_from"]
