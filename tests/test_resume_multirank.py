"""Exact resume on 2 ranks: DeepSpeed ZeRO-2/3 killed with SIGKILL, resumed with ``last``.

The resumed run must log the losses of an uninterrupted 2-rank run and feed every rank the
same samples at every (step, micro-batch). Lightning starts the second rank as a child
process, so the kill hits the whole process group, as a node failure or ``scancel`` would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import ENV, QUIET, XLAM_TRAIN, batch_ids, batch_records, train_losses

STEPS = 5
RANKS = 2
ARGS = [
    *QUIET,
    "callbacks=debug",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    # last.ckpt only: a sharded save per step is what the test needs, not a second copy.
    "callbacks.model_checkpoint.save_top_k=0",
    "data.val_size=0",
    f"trainer.max_steps={STEPS}",
    f"trainer.devices={RANKS}",
    "trainer.precision=32-true",
    "data.batch_size=2",
    "trainer.accumulate_grad_batches=2",
    "export.enabled=false",
    "model.optimizer.lr=0.01",
]


def _launch(run: Path, cwd: Path, trainer: str, extra: list[str] = ()) -> subprocess.Popen:
    # A session of its own: the process group holds rank 0 and the rank 1 it spawns. Output
    # goes to a file: two ranks' warnings could fill a pipe nobody reads until the end.
    with (cwd / "output.log").open("a") as out:
        return subprocess.Popen(
            [XLAM_TRAIN, *ARGS, f"trainer={trainer}", f"hydra.run.dir={run}", *extra],
            cwd=cwd,
            env=ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _tail(cwd: Path) -> str:
    return (cwd / "output.log").read_text()[-5000:]


def _started_step(run: Path, step: int) -> bool:
    # Rank 0 logs a batch of `step` only after the checkpoint of `step` was swapped in.
    return any(r["step"] >= step for r in batch_records(run))


def _kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return  # every rank is gone
        time.sleep(0.05)
    raise AssertionError("a rank survived SIGKILL of the process group")


# ZeRO-3 (parameters sharded too) takes as long again: slow, ZeRO-2 stays in the default run.
@pytest.mark.parametrize(
    "trainer", ["deepspeed_zero2", pytest.param("deepspeed_zero3", marks=pytest.mark.slow)]
)
def test_sigkill_two_ranks_then_resume_matches_uninterrupted(trainer: str, tmp_path: Path) -> None:
    procs: list[subprocess.Popen] = []
    try:
        _check_resume(trainer, tmp_path, procs)
    finally:
        for proc in procs:  # a failed assertion leaves no training run behind
            if proc.poll() is None:
                _kill_group(proc)


def _check_resume(trainer: str, tmp_path: Path, procs: list[subprocess.Popen]) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ref = _launch(full, tmp_path / "a", trainer)
    victim = _launch(killed, tmp_path / "b", trainer)
    procs += [ref, victim]
    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None and not _started_step(killed, 2):
        time.sleep(0.05)
    assert victim.poll() is None, "the run ended before it could be killed:\n" + _tail(
        tmp_path / "b"
    )
    _kill_group(victim)
    assert ref.wait(timeout=400) == 0, _tail(tmp_path / "a")
    # ZeRO-2 writes mp_rank_00_model_states.pt, ZeRO-3 one zero_pp_rank_<r>_... per rank.
    states = sorted((killed / "checkpoints" / "last.ckpt" / "checkpoint").glob("*model_states.pt"))
    client = torch.load(states[0], map_location="cpu", weights_only=False)
    assert 2 <= client["global_step"] < STEPS

    resumed = _launch(killed, tmp_path / "b", trainer, ["ckpt_path=last"])
    procs.append(resumed)
    assert resumed.wait(timeout=400) == 0, _tail(tmp_path / "b")

    # Every rank saw the same samples at every (step, micro-batch) ...
    for rank in range(RANKS):
        ref_ids, got_ids = batch_ids(full, rank), batch_ids(killed, rank)
        assert sorted(ref_ids) == [(s, m) for s in range(STEPS) for m in range(2)]
        for key, ids in ref_ids.items():
            assert got_ids[key] == ids, (rank, key, ids, got_ids[key])
    assert batch_ids(full, 0)[(0, 0)] != batch_ids(full, 1)[(0, 0)]  # the ranks split the batch
    # ... and the optimizer continued from the same state.
    a, b = train_losses(full), train_losses(killed)
    assert sorted(a) == sorted(b) == list(range(STEPS))
    for step in range(STEPS):
        assert abs(a[step] - b[step]) < 1e-5, (step, a[step], b[step])
    record = json.loads(max(killed.glob("run-*.json"), key=os.path.getmtime).read_text())
    assert record["resumed_from"].endswith("last.ckpt")
    assert record["global_step"] == STEPS and record["world_size"] == RANKS
