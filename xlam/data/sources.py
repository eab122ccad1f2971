"""Loading one source of a mixture into trajectories (format dispatch)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from xlam.data.mixture import SourceSpec
from xlam.data.schema import Trajectory, read_trajectories


def load_source(spec: SourceSpec) -> Iterator[Trajectory]:
    """Stream the trajectories of a source, whatever its native format.

    Raises:
        FileNotFoundError: When the source path does not exist.
    """
    path = Path(spec.path)
    if not path.exists():
        raise FileNotFoundError(f"source {spec.name!r}: {path} does not exist")
    if spec.format == "unified" and path.suffix == ".jsonl":
        for t in read_trajectories(path):
            if not t.source:
                t.source = spec.name
            yield t
        return
    from xlam.data.formats import import_file

    yield from import_file(path, spec.format, source=spec.name)
