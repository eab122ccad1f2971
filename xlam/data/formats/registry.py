"""The registry of native formats: name -> importer (and its optional fast path)."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from . import hermes, openai, sharegpt, toolace, unified, xlam_fc_60k
from .base import Importer


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
