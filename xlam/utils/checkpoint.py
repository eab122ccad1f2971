"""Atomic checkpoints and ``ckpt_path=last`` resolution.

A checkpoint is written under a hidden temporary name and renamed into place, so a process
killed mid-save leaves the previous checkpoint intact. Files are swapped with one atomic
``os.replace``; sharded checkpoints (DeepSpeed folders) with two renames, and the moved-aside
old folder stays loadable until the new one is in place (:func:`resolve_ckpt_path` falls back
to it).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)

LAST_NAME = "last.ckpt"


def partial_path(path: str | os.PathLike) -> str:
    """Temporary name of a checkpoint being written: hidden and suffixed, never resumed from."""
    p = Path(path)
    return str(p.with_name(f".{p.name}.partial"))


def aside_path(path: str | os.PathLike) -> str:
    """Name of the previous checkpoint while a new folder is swapped into place."""
    p = Path(path)
    return str(p.with_name(f".{p.name}.old"))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_path(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move a fully written ``tmp`` (file or folder) to ``target``, replacing what is there."""
    tmp, target = Path(tmp), Path(target)
    if tmp.is_dir():
        old = Path(aside_path(target))
        if old.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        if old.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, target)
    _fsync_dir(target.parent)


def resolve_ckpt_path(
    ckpt_path: str | None,
    ckpt_dir: str | os.PathLike | None,
    hpc_dir: str | os.PathLike | None = None,
) -> str | None:
    """The checkpoint to resume from.

    Args:
        ckpt_path: ``None`` (fresh start), a path, or ``last`` (this run's last checkpoint).
        ckpt_dir: The run's checkpoint folder.
        hpc_dir: Where Lightning writes ``hpc_ckpt_N.ckpt`` on SLURM's pre-emption signal
            (the trainer's ``default_root_dir``); for ``last``, the newest of those and
            ``last.ckpt`` wins.

    Returns:
        A path, or ``None`` when ``last`` finds no checkpoint (a first launch of a job that
        always passes ``ckpt_path=last``, e.g. under SLURM requeue).
    """
    if ckpt_path is None or ckpt_path in ("", "null"):
        return None
    if ckpt_path != "last":
        if not Path(ckpt_path).exists():
            raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
        return str(ckpt_path)
    if ckpt_dir is None:
        raise ValueError("ckpt_path=last needs a ModelCheckpoint callback with a dirpath")
    last = Path(ckpt_dir) / LAST_NAME
    candidates = [p for p in Path(hpc_dir).glob("hpc_ckpt_*.ckpt")] if hpc_dir else []
    if last.exists():
        candidates.append(last)
    elif Path(aside_path(last)).exists():
        log.warning("a save of %s was interrupted: %s is the previous one", last, aside_path(last))
        candidates.append(Path(aside_path(last)))
    if not candidates:
        log.warning("ckpt_path=last but %s holds no checkpoint: starting fresh", ckpt_dir)
        return None
    return str(max(candidates, key=lambda p: p.stat().st_mtime))


def clean_partials(ckpt_dir: str | os.PathLike | None) -> list[str]:
    """Remove leftovers of interrupted saves; returns what was removed."""
    if ckpt_dir is None or not Path(ckpt_dir).is_dir():
        return []
    removed = []
    for p in Path(ckpt_dir).glob(".*.partial"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        removed.append(str(p))
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the same folder, fsync, then rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(partial_path(target))
        try:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            replace_path(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
