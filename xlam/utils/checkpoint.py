"""Atomic checkpoints, safe loading and ``ckpt_path=last`` resolution.

A checkpoint is written under a hidden temporary name and renamed into place, so a process
killed mid-save (or a full disk) leaves the previous checkpoint intact. Files are swapped with
one atomic ``os.replace``; sharded checkpoints (DeepSpeed folders) with two renames, and the
moved-aside old folder stays loadable until the new one is in place (:func:`resolve_ckpt_path`
falls back to it).

Checkpoint files are read with ``torch.load(weights_only=True)``: tensors and plain
containers only, never code. Before a resume, :func:`resolve_ckpt_path` opens the file that
way (memory-mapped, cheap); a truncated or damaged ``last.ckpt`` is skipped for the newest
loadable checkpoint, with a warning. DeepSpeed folders are read by DeepSpeed's own loader,
which unpickles with ``weights_only=False``: resume only from folders you wrote.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import shutil
import zipfile
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


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file that cannot be read: truncated, damaged, or not a checkpoint."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holding objects other than tensors and plain containers."""


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def load_checkpoint_file(
    path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Raises:
        UnsafeCheckpointError: The file holds other objects than tensors and plain
            containers (torch refuses to unpickle them: they could run code).
        CorruptCheckpointError: The file is truncated, damaged, or not a checkpoint.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path} holds objects other than tensors and plain containers, which "
            f"torch.load(weights_only=True) refuses ({_first_line(e)}): xlam never unpickles "
            "code from a checkpoint. If you wrote it and trust it, register the class with "
            "torch.serialization.add_safe_globals before loading."
        ) from e
    except (RuntimeError, EOFError, ValueError) as e:
        raise CorruptCheckpointError(
            f"{path} is not a readable checkpoint ({_first_line(e)}): it is truncated or "
            "damaged (a copy cut short, a full disk)"
        ) from e


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why a checkpoint file cannot be resumed from, or ``None`` when it loads.

    Memory-maps the file, so even a large checkpoint is checked in a moment. Folders
    (DeepSpeed) are DeepSpeed's to check.

    Raises:
        UnsafeCheckpointError: The file holds objects that could run code.
    """
    if Path(path).is_dir():
        return None
    if not zipfile.is_zipfile(path):
        # Cut short, the archive loses its central directory (written last).
        return (
            f"{path} is not a readable checkpoint (no complete zip archive): it is truncated "
            "or damaged (a copy cut short, a full disk), or in torch's pre-1.6 format"
        )
    try:
        load_checkpoint_file(path, mmap=True)
    except CorruptCheckpointError as e:
        return str(e)
    return None


def _newest_loadable(candidates: list[Path], exclude: Path) -> Path | None:
    for p in sorted(set(candidates), key=lambda p: p.stat().st_mtime, reverse=True):
        if p == exclude:
            continue
        try:
            if checkpoint_problem(p) is None:
                return p
        except UnsafeCheckpointError:
            continue
    return None


def resolve_ckpt_path(
    ckpt_path: str | None,
    ckpt_dir: str | os.PathLike | None,
    hpc_dir: str | os.PathLike | None = None,
) -> str | None:
    """The checkpoint to resume from, checked to load.

    Args:
        ckpt_path: ``None`` (fresh start), a path, or ``last`` (this run's last checkpoint).
        ckpt_dir: The run's checkpoint folder.
        hpc_dir: Where Lightning writes ``hpc_ckpt_N.ckpt`` on SLURM's pre-emption signal
            (the trainer's ``default_root_dir``); for ``last``, the newest of those and
            ``last.ckpt`` wins.

    Returns:
        A path, or ``None`` when ``last`` finds no checkpoint (a first launch of a job that
        always passes ``ckpt_path=last``, e.g. under SLURM requeue). When the newest
        checkpoint of ``last`` is unreadable (truncated), the newest loadable one among the
        periodic, SLURM and moved-aside checkpoints, with a warning naming both.

    Raises:
        CorruptCheckpointError: ``last`` finds only unreadable checkpoints, or the path
            given is unreadable (the message names the newest loadable one beside it).
        UnsafeCheckpointError: The checkpoint holds objects that could run code.
    """
    if ckpt_path is None or ckpt_path in ("", "null"):
        return None
    if ckpt_path != "last":
        path = Path(ckpt_path)
        if not path.exists():
            raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
        problem = checkpoint_problem(path)
        if problem:
            good = _newest_loadable([*path.parent.glob("*.ckpt")], path)
            hint = f"the newest loadable one beside it is {good}" if good else "none beside it"
            raise CorruptCheckpointError(f"ckpt_path={ckpt_path}: {problem}; {hint}")
        return str(ckpt_path)
    if ckpt_dir is None:
        raise ValueError("ckpt_path=last needs a ModelCheckpoint callback with a dirpath")
    last = Path(ckpt_dir) / LAST_NAME
    hpc = [p for p in Path(hpc_dir).glob("hpc_ckpt_*.ckpt")] if hpc_dir else []
    aside = Path(aside_path(last))
    candidates = list(hpc)
    if last.exists():
        candidates.append(last)
    elif aside.exists():
        log.warning("a save of %s was interrupted: %s is the previous one", last, aside)
        candidates.append(aside)
    if not candidates:
        log.warning("ckpt_path=last but %s holds no checkpoint: starting fresh", ckpt_dir)
        return None
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    problem = checkpoint_problem(newest)
    if problem is None:
        return str(newest)
    others = [*Path(ckpt_dir).glob("*.ckpt"), *hpc, *([aside] if aside.exists() else [])]
    good = _newest_loadable(others, newest)
    if good is None:
        raise CorruptCheckpointError(
            f"ckpt_path=last: {problem}, and {ckpt_dir} holds no other loadable checkpoint. "
            f"Delete {newest} to start fresh, or pass ckpt_path=<a checkpoint you have>."
        )
    log.warning(
        "ckpt_path=last: %s; resuming from %s, the newest loadable checkpoint", problem, good
    )
    return str(good)


def clean_partials(ckpt_dir: str | os.PathLike | None) -> list[str]:
    """Remove leftovers of interrupted saves; returns what was removed."""
    if ckpt_dir is None or not Path(ckpt_dir).is_dir():
        return []
    removed = []
    for p in Path(ckpt_dir).glob(".*.partial"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        removed.append(str(p))
    return removed


def _disk_full(e: BaseException | None) -> bool:
    # torch.save reports a failed write as a RuntimeError; the OSError is in the chain.
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        e = e.__cause__ or e.__context__
    return False


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the same folder, fsync, then rename.

    Loads with ``torch.load(weights_only=True)`` unless a caller asks otherwise.
    """

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
        except Exception as e:
            if not _disk_full(e):
                raise
            kept = f"{target} still holds the previous checkpoint" if target.exists() else ""
            raise OSError(
                errno.ENOSPC,
                f"disk full while saving a checkpoint (the partial file is removed; "
                f"{kept or 'no previous checkpoint there'}): free space on {target.parent}",
                str(target),
            ) from e
        finally:
            if os.path.lexists(tmp):
                tmp.unlink()

    def load_checkpoint(
        self,
        path: Any,
        map_location: Any = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if weights_only is False or not Path(path).exists():
            # An explicit opt-out, or a remote (fsspec) path: Lightning's loader.
            return super().load_checkpoint(path, map_location, weights_only is not False)
        return load_checkpoint_file(path, map_location)
