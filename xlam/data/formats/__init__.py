"""Importers: native agent datasets -> unified :class:`~xlam.data.schema.Trajectory`.

One small module per format, a registry and a streaming reader::

    from xlam.data.formats import FORMATS, get_importer, import_records, iter_records

    for result, record, origin in import_records("sample.json", "xlam_fc_60k"):
        ...  # result is a Trajectory or a Reject (rule, message, origin, record)

Only this package knows native formats (see ``docs/trajectory_format.md``).
"""

from __future__ import annotations

from .base import Context, Importer
from .convert import ConvertReport, Reject, convert_file, import_records
from .errors import IMPORT_RULES, RecordError
from .io import InputError, JsonlWriter, iter_records
from .registry import FORMATS, Format, get_importer

__all__ = [
    "FORMATS",
    "IMPORT_RULES",
    "Context",
    "ConvertReport",
    "Format",
    "Importer",
    "InputError",
    "JsonlWriter",
    "RecordError",
    "Reject",
    "convert_file",
    "get_importer",
    "import_records",
    "iter_records",
]
