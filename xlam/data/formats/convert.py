"""The conversion loop: stream records through an importer; every record ends up somewhere.

Each record read yields exactly one result, a :class:`~xlam.data.schema.Trajectory` or a
:class:`Reject` naming the broken rule with the record's origin, so that
``converted + rejected == read`` holds by construction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from xlam.data.schema import SchemaError, Trajectory

from . import fastpath
from .base import Context, Importer, RecordError
from .fastpath import FastRecord
from .io import JsonlWriter, iter_records
from .registry import FORMATS, get_importer

_PROGRESS_EVERY = 4096
T = TypeVar("T")


@dataclass(slots=True)
class Reject:
    """A record that did not make it, and why.

    Attributes:
        rule: Name of the broken rule.
        message: What exactly is wrong.
        origin: Where the record came from (file, line, index).
        record: The original record (or its raw text when it could not be decoded).
    """

    rule: str
    message: str
    origin: dict[str, Any]
    record: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "message": self.message,
            "origin": self.origin,
            "record": self.record,
        }


def _fallback_id(stem: str, origin: dict[str, Any]) -> str:
    split = origin.get("split")
    index = origin.get("index", 0)
    return f"{stem}-{split}-{index}" if split else f"{stem}-{index}"


def default_source(path: str | Path, fmt: str | Importer, source: str | None = None) -> str:
    """``source``, else the format name, else the input's file stem."""
    if source is not None:
        return source
    return fmt if isinstance(fmt, str) and fmt in FORMATS else Path(path).stem


def import_records(
    path: str | Path,
    fmt: str | Importer,
    source: str | None = None,
    fast: Callable[[Any, dict[str, Any]], Any] | None = None,
) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    """Yield ``(trajectory or reject, original record, origin)`` for each record of ``path``.

    Args:
        path: Input file or datasets folder (see :func:`~xlam.data.formats.iter_records`).
        fmt: Format name or importer function.
        source: Dataset name for ``Trajectory.source`` (default: the format name).
        fast: A caller's shortcut ``(record, origin) -> value or None``, tried first: a value
            other than ``None`` is yielded instead of the trajectory (the caller knows its
            type); ``None``, or an exception, means the record takes the general path.
    """
    importer = get_importer(fmt) if isinstance(fmt, str) else fmt
    source = default_source(path, fmt, source)
    stem = Path(path).stem
    early: list[Reject] = []

    def on_error(err: RecordError, origin: dict[str, Any], raw: Any) -> None:
        early.append(Reject(err.rule, err.message, origin, raw))

    for record, origin in iter_records(path, on_error=on_error):
        if early:
            for r in early:
                yield r, r.record, r.origin
            early.clear()
        if fast is not None:
            try:
                shortcut = fast(record, origin)
            except Exception:  # the general path below says what is wrong
                shortcut = None
            if shortcut is not None:
                yield shortcut, record, origin
                continue
        ctx = Context(source=source, fallback_id=_fallback_id(stem, origin), origin=origin)
        try:
            result: Trajectory | Reject = importer(record, ctx)
        except RecordError as e:
            result = Reject(e.rule, e.message, origin, record)
        except SchemaError as e:
            result = Reject("schema", str(e), origin, record)
        except RecursionError:
            result = Reject("too_deep", "record nested too deeply to process", origin, record)
        except Exception as e:  # an importer bug must not lose the record or stop the run
            result = Reject("internal_error", f"{type(e).__name__}: {e}", origin, record)
        yield result, record, origin
    for r in early:
        yield r, r.record, r.origin


@dataclass
class ConvertReport:
    """Counts of one conversion run (``read == converted + rejected``)."""

    read: int = 0
    converted: int = 0
    rejected: int = 0
    rules: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "converted": self.converted,
            "rejected": self.rejected,
            "rejects_by_rule": dict(self.rules.most_common()),
        }


def fast_path(
    fmt: str, source: str, finish: Callable[[FastRecord], T | None]
) -> Callable[[Any, dict[str, Any]], T | None] | None:
    """The shortcut of format ``fmt`` as ``(record, origin) -> finish(fast record) or None``
    (see :mod:`~xlam.data.formats.fastpath`), or ``None`` if the format has none."""
    spec = FORMATS.get(fmt)
    if spec is None or spec.fast is None or not fastpath.AVAILABLE:
        return None
    convert, tools = spec.fast, fastpath.TOOLS

    def run(record: Any, origin: dict[str, Any]) -> T | None:
        fast = convert(record, origin, source, tools)
        return None if fast is None else finish(fast)

    return run


def fast_writer(fmt: str, source: str) -> Callable[[Any, dict[str, Any]], bytes | None] | None:
    """The shortcut of format ``fmt`` as ``(record, origin) -> JSON line or None``, or
    ``None`` if the format has none."""
    encode = fastpath.encode
    return fast_path(fmt, source, lambda fast: encode(fast.out))


def convert_file(
    path: str | Path,
    fmt: str | Importer,
    out: str | Path,
    rejects: str | Path,
    source: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ConvertReport:
    """Convert ``path`` to unified JSONL ``out``; rejects (rule, message, origin, record) go to
    ``rejects``. Streams: memory does not grow with the input.

    ``fmt`` is a format name or an importer function (a pair importer of
    :mod:`~xlam.data.formats.pairs` too: whatever it returns is written by ``to_dict``)."""
    report = ConvertReport()
    source = default_source(path, fmt, source)
    with JsonlWriter(out) as good, JsonlWriter(rejects) as bad:
        fast = fast_writer(fmt, source) if isinstance(fmt, str) else None
        for result, _, _ in import_records(path, fmt, source, fast=fast):
            report.read += 1
            if type(result) is bytes:  # the shortcut's serialised trajectory
                report.converted += 1
                good.write_bytes(result)
            elif isinstance(result, Reject):
                report.rejected += 1
                report.rules[result.rule] += 1
                bad.write(result.to_dict())
            else:
                report.converted += 1
                good.write(result.to_dict())
            if on_progress is not None and report.read % _PROGRESS_EVERY == 0:
                on_progress(report.read)
    return report
