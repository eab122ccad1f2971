"""The unified format itself: identity mapping with schema validation.

Columnar containers (Parquet, HF datasets) hold ``tools``, ``arguments`` and ``metadata`` as
JSON strings (Arrow would otherwise unify heterogeneous structs); they are decoded here.
"""

from __future__ import annotations

from typing import Any

from xlam.data.schema import SchemaError, Trajectory

from .base import Context, RecordError, load_json_field, require_dict

NAME = "unified"
DESCRIPTION = "xlam unified trajectories (validated, kept as they are)"


def convert(record: Any, ctx: Context) -> Trajectory:
    """Validate a unified record; its ``metadata['origin']`` is set only if absent."""
    record = require_dict(record)
    if isinstance(record.get("metadata"), str):
        record = {**record, "metadata": load_json_field(record["metadata"], "'metadata'") or {}}
    try:
        traj = Trajectory.from_dict(record)
    except RecursionError:
        raise
    except SchemaError as e:
        raise RecordError("schema", str(e)) from None
    if ctx.origin and "origin" not in traj.metadata:
        traj.metadata = {**traj.metadata, "origin": ctx.origin}
    return traj
