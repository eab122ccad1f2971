"""Verify a file: stream it through :class:`~xlam.data.verify.rules.Verifier`, write good
trajectories and rejects, count both.

``read == good + rejected`` always: every record ends up in one file. A native format is
converted and verified in one pass, through its fast path when it has one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from xlam.data.formats import fastjson
from xlam.data.formats.convert import Reject, fast_path, import_records
from xlam.data.formats.io import JsonlWriter
from xlam.data.formats.registry import get_importer
from xlam.data.schema import Trajectory
from xlam.data.verify.report import VerifyReport
from xlam.data.verify.rules import Verifier, Violation

_PROGRESS_EVERY = 4096

UNKNOWN_SOURCE = "<unparsed>"


def reject_record(
    violations: list[Violation],
    origin: dict[str, Any],
    record: Any,
    traj: Trajectory | None = None,
) -> dict[str, Any]:
    """The JSON object written to the rejects file for one rejected record."""
    out: dict[str, Any] = {
        "rule": violations[0].rule,
        "message": violations[0].message,
        "violations": [v.to_dict() for v in violations],
        "origin": origin,
    }
    if traj is not None:
        out["id"] = traj.unique_trajectory_id
        out["source"] = traj.source
        if "origin" in traj.metadata:
            out["provenance"] = traj.metadata["origin"]
    out["record"] = record
    return out


def _source_of(record: Any) -> str:
    if isinstance(record, dict) and isinstance(record.get("source"), str):
        return record["source"]
    return UNKNOWN_SOURCE


def _shortcut(
    fmt: str, source: str, verifier: Verifier
) -> Callable[[Any, dict[str, Any]], bytes | None] | None:
    """``(record, origin) -> JSON line of a good trajectory, or None`` for a native format
    with a fast converter (see :mod:`~xlam.data.formats.fastpath`)."""
    if verifier.max_tokens is not None:  # token counts need the trajectory itself
        return None
    return fast_path(fmt, source, verifier.check_fast)


def verify_file(
    path: str | Path,
    good_path: str | Path,
    rejects_path: str | Path,
    verifier: Verifier | None = None,
    on_progress: Callable[[int], None] | None = None,
    fmt: str = "unified",
    source: str | None = None,
) -> VerifyReport:
    """Verify a file: good trajectories to ``good_path``, rejects to ``rejects_path``.

    Streams (memory does not grow with the input beyond the 8-byte id hashes). Records
    that cannot be read or mapped are rejected under the import rules (``invalid_json``,
    ``schema``...), never dropped.

    Args:
        path: Input file (see :func:`~xlam.data.formats.iter_records`).
        good_path: JSONL of trajectories that break no rule.
        rejects_path: JSONL of rejects: rule, message, all violations, origin, record.
        verifier: Rule settings and state (default: :class:`Verifier` defaults).
        on_progress: Called with the number of records done, now and then.
        fmt: Input format. ``unified`` verifies converted data; a native format converts
            and verifies in one pass (``xlam-data convert --verify``), without the
            intermediate file.
        source: Source name for a native format (default: the format name).
    """
    verifier = verifier or Verifier()
    report = VerifyReport()
    native = fmt != "unified"
    importer = get_importer(fmt)
    reject_source = source or fmt
    dumps_checked = fastjson.dumps_checked
    fast = _shortcut(fmt, reject_source, verifier) if native else None
    with JsonlWriter(good_path) as good, JsonlWriter(rejects_path) as bad:
        for result, record, origin in import_records(
            path, importer, source=reject_source, fast=fast
        ):
            if type(result) is bytes:  # the shortcut's line: a good trajectory
                good.write_bytes(result)
                report.add_good(reject_source)
            elif isinstance(result, Reject):
                violations = [Violation(result.rule, result.message)]
                bad.write(reject_record(violations, origin, record))
                report.add(reject_source if native else _source_of(record), [result.rule])
            else:
                encoded = dumps_checked(result.to_dict())
                violations = verifier.check(result, encoded)
                if violations:
                    bad.write(reject_record(violations, origin, record, result))
                    report.add(result.source, [v.rule for v in violations])
                else:
                    good.write_bytes(encoded[0])
                    report.add(result.source)
            if on_progress is not None and report.read % _PROGRESS_EVERY == 0:
                on_progress(report.read)
    return report
