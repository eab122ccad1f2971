"""Importers: native agent datasets -> unified :class:`~xlam.data.schema.Trajectory`.

One small module per format, a registry and a streaming reader::

    from xlam.data.formats import FORMATS, get_importer, import_records, iter_records

    for result, record, origin in import_records("sample.json", "xlam_fc_60k"):
        ...  # result is a Trajectory or a Reject (rule, message, origin, record)

Only this package knows native formats (see ``docs/trajectory_format.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from . import hermes, openai, sharegpt, toolace, unified, xlam_fc_60k
from .base import IMPORT_RULES, Context, Importer, RecordError
from .convert import ConvertReport, Reject, convert_file, import_records
from .io import InputError, JsonlWriter, iter_records


@dataclass(frozen=True)
class Format:
    """A registered native format.

    Attributes:
        name: Registry key (the ``--format`` value).
        description: One line for ``--help``.
        convert: The importer, ``(record, Context) -> Trajectory``.
        fast: Optional shortcut for plain records (see :mod:`~xlam.data.formats.fastpath`),
            ``(record, origin, source, ToolTable) -> FastRecord | None``.
    """

    name: str
    description: str
    convert: Importer
    fast: Any = None


def _register(module: ModuleType) -> Format:
    return Format(
        name=module.NAME,
        description=module.DESCRIPTION,
        convert=module.convert,
        fast=getattr(module, "fast_convert", None),
    )


FORMATS: dict[str, Format] = {
    f.name: f for f in map(_register, (xlam_fc_60k, sharegpt, openai, hermes, toolace, unified))
}


def get_importer(name: str) -> Importer:
    """The importer function of format ``name``.

    Raises:
        KeyError: For an unknown name; the message lists the known ones.
    """
    try:
        return FORMATS[name].convert
    except KeyError:
        raise KeyError(f"unknown format {name!r} (known: {', '.join(FORMATS)})") from None


__all__ = [
    "FORMATS",
    "IMPORT_RULES",
    "Context",
    "ConvertReport",
    "Format",
    "InputError",
    "JsonlWriter",
    "RecordError",
    "Reject",
    "convert_file",
    "get_importer",
    "import_records",
    "iter_records",
]
