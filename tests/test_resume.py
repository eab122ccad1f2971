"""Exact resume: a run killed with SIGKILL and resumed trains like an uninterrupted one.

Also: a save interrupted midway leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import (
    ENV,
    QUIET,
    batch_ids,
    batch_records,
    launch_cli,
    train_losses,
)

from xlam.utils.checkpoint import (
    AtomicCheckpointIO,
    aside_path,
    clean_partials,
    partial_path,
    replace_path,
    resolve_ckpt_path,
)

STEPS = 8
# A checkpoint every step; callbacks=debug logs every micro-batch's sample ids per step.
ARGS = [
    *QUIET,
    "callbacks=debug",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    "data.val_size=0",
    f"trainer.max_steps={STEPS}",
    "data.batch_size=2",
    "trainer.accumulate_grad_batches=2",
    "export.enabled=false",
    "model.optimizer.lr=0.01",
]


def _launch(run: Path, cwd: Path, extra: list[str] = ()) -> subprocess.Popen:
    return launch_cli([*ARGS, f"hydra.run.dir={run}", *extra], cwd)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    # Separate roots: the two runs share no data cache while they run side by side.
    ref = _launch(full, tmp_path / "a")
    victim = _launch(killed, tmp_path / "b")
    # Kill once a few steps are checkpointed: wherever the kill lands (even mid-save), the
    # resumed run must continue the same stream.
    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None:
        if any(r["step"] >= 3 for r in batch_records(killed)):
            break
        time.sleep(0.05)
    assert victim.poll() is None, "the run ended before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert ref.wait(timeout=400) == 0, ref.stderr.read()[-3000:]
    done_before = torch.load(
        killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )["global_step"]
    assert 1 <= done_before < STEPS

    resumed = _launch(killed, tmp_path / "b", ["ckpt_path=last"])
    assert resumed.wait(timeout=400) == 0, resumed.stderr.read()[-3000:]

    a, b = train_losses(full), train_losses(killed)
    assert sorted(a) == sorted(b) == list(range(STEPS))
    for step in range(STEPS):
        assert abs(a[step] - b[step]) < 1e-5, (step, a[step], b[step])
    assert batch_ids(full) == batch_ids(killed)
    record = json.loads(max(killed.glob("run-*.json"), key=os.path.getmtime).read_text())
    assert record["resumed_from"].endswith("last.ckpt")
    assert record["global_step"] == STEPS
    # Counts of the samples actually trained span both parts of the run.
    full_record = json.loads(next(full.glob("run-*.json")).read_text())
    assert record["mixture"]["actual"] == full_record["mixture"]["actual"]


_CRASH = textwrap.dedent("""
    import os, signal, sys, torch
    from xlam.utils import checkpoint
    path = sys.argv[1]
    io = checkpoint.AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)

    def dying_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies in the middle of the save

    checkpoint.torch.save = dying_save
    io.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
""")


def test_interrupted_save_keeps_previous_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(ckpt)], env=ENV)
    assert proc.returncode == -signal.SIGKILL
    assert Path(partial_path(ckpt)).is_file()  # the torn write is aside, not in place
    state = AtomicCheckpointIO().load_checkpoint(ckpt)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(1000))
    assert resolve_ckpt_path("last", ckpt.parent) == str(ckpt)
    assert clean_partials(ckpt.parent) == [partial_path(ckpt)]
    assert not Path(partial_path(ckpt)).exists()


def test_folder_swap_falls_back_to_previous(tmp_path: Path) -> None:
    # Sharded (DeepSpeed) checkpoints are folders: swapped in two renames.
    last = tmp_path / "last.ckpt"
    for name, value in ((last, "old"), (Path(partial_path(last)), "new")):
        name.mkdir()
        (name / "shard").write_text(value)
    replace_path(partial_path(last), last)
    assert (last / "shard").read_text() == "new" and not Path(aside_path(last)).exists()
    # A crash between the renames leaves only the aside copy: resume uses it.
    os.replace(last, aside_path(last))
    assert resolve_ckpt_path("last", tmp_path) == aside_path(last)
    assert resolve_ckpt_path("last", tmp_path / "nothing") is None
    assert resolve_ckpt_path(None, tmp_path) is None
    with pytest.raises(FileNotFoundError):
        resolve_ckpt_path(str(tmp_path / "missing.ckpt"), tmp_path)


def test_last_prefers_the_newest_of_last_and_slurm_hpc(tmp_path: Path) -> None:
    # On SLURM pre-emption Lightning writes hpc_ckpt_N.ckpt in the run dir; it is newer.
    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    torch.save({"step": 1}, ckpt_dir / "last.ckpt")  # resolving checks that a file loads
    os.utime(ckpt_dir / "last.ckpt", (1, 1))
    torch.save({"step": 2}, tmp_path / "hpc_ckpt_1.ckpt")
    assert resolve_ckpt_path("last", ckpt_dir, tmp_path) == str(tmp_path / "hpc_ckpt_1.ckpt")
    assert resolve_ckpt_path("last", ckpt_dir) == str(ckpt_dir / "last.ckpt")
