"""The unified format itself: identity mapping with schema validation.

Columnar containers (Parquet, HF datasets) hold ``tools``, ``arguments`` and ``metadata`` as
JSON strings (Arrow would otherwise unify heterogeneous structs); they are decoded here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xlam.data.schema import SchemaError, Trajectory

from .base import Context, RecordError, load_json_field, require_dict

NAME = "unified"
DESCRIPTION = "xlam unified trajectories (validated, kept as they are)"


def read_unified(record: Any, ctx: Context, from_dict: Callable[[Any], Any]) -> Any:
    """Validate a record with ``from_dict`` (a unified class's reader), decoding a JSON
    ``metadata`` string; ``metadata['origin']`` is set only if absent.

    Raises:
        RecordError: ``record_type`` or ``schema``.
    """
    record = require_dict(record)
    if isinstance(record.get("metadata"), str):
        record = {**record, "metadata": load_json_field(record["metadata"], "'metadata'") or {}}
    try:
        obj = from_dict(record)
    except RecursionError:
        raise
    except SchemaError as e:
        raise RecordError("schema", str(e)) from None
    if ctx.origin and "origin" not in obj.metadata:
        obj.metadata = {**obj.metadata, "origin": ctx.origin}
    return obj


def convert(record: Any, ctx: Context) -> Trajectory:
    """Validate a unified record; its ``metadata['origin']`` is set only if absent."""
    return read_unified(record, ctx, Trajectory.from_dict)
