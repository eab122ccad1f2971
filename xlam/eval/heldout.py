"""A training mixture's held-out trajectories (the validation split), for the eval."""

from __future__ import annotations

from typing import Any

from xlam.data.schema import Trajectory
from xlam.data.sources import load_source


def heldout_trajectories(datamodule: Any, limit: int | None = None) -> list[Trajectory]:
    """The trajectories whose samples the datamodule held out (``data.val_size``).

    Args:
        datamodule: A :class:`~xlam.data.datamodule.TrajectoryDataModule`; prepared here.
        limit: At most this many, taken round-robin over the sources (``None``: all).

    Returns:
        The trajectories in source order, each with ``source`` set to its mixture name.
    """
    datamodule.prepare()
    wanted: dict[str, set[str]] = {}
    for s in datamodule.val_samples:
        # per_turn samples are "<trajectory id>#<turn>"
        wanted.setdefault(s["source"], set()).add(str(s["id"]).split("#")[0])
    per_source: dict[str, list[Trajectory]] = {}
    for spec in datamodule.specs:
        ids = wanted.get(spec.name)
        if not ids:
            continue
        found = []
        for traj in load_source(spec):
            if traj.id in ids:
                traj.source = spec.name
                found.append(traj)
        per_source[spec.name] = found
    out: list[Trajectory] = []
    lists = list(per_source.values())
    for k in range(max((len(x) for x in lists), default=0)):
        out.extend(x[k] for x in lists if k < len(x))
    return out[:limit] if limit is not None else out


__all__ = ["heldout_trajectories"]
