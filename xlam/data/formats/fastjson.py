"""JSON for the hot path: ``orjson`` when installed, with the stdlib's exact semantics kept.

``orjson`` parses and writes several times faster than ``json``, which matters at millions of
records, but differs at the edges; each difference falls back to the stdlib:

* integers wider than 64 bits: ``orjson.loads`` turns them into floats (silently lossy), so
  text holding a run of 19+ digits is parsed by ``json``; ``orjson.dumps`` refuses them;
* lone surrogate escapes (``"\\ud800"``) and invalid UTF-8: ``orjson`` refuses them, ``json``
  reads the former and reports the latter as a ``UnicodeDecodeError``;
* ``NaN``/``Infinity`` are not JSON (RFC 8259): both paths reject them when reading. A
  non-finite float that reaches a writer from elsewhere (a Parquet float column) is written
  as ``null`` by ``orjson``.

Without ``orjson`` everything goes through the stdlib with the same rules.
"""

from __future__ import annotations

import json
import math
from typing import Any

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _orjson = None

HAVE_ORJSON = _orjson is not None
# Beyond 64 bits orjson reads integers as floats. Any such integer has 19+ digits in a row;
# mapping every digit to "0" and searching for 19 zeros finds a run in C at ~1 GB/s, where
# a regex like ``\d{19}`` costs ~15 µs per record.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_RUN = b"0" * 19


def _may_hold_big_int(data: bytes | str) -> bool:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return _RUN in data.translate(_DIGITS_TO_ZERO)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


_std_decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def _std_loads(data: bytes | str) -> Any:
    if isinstance(data, bytes | bytearray):
        data = bytes(data).decode("utf-8")  # UnicodeDecodeError names the bad byte
    return _std_decoder.decode(data)


def loads(data: bytes | str) -> Any:
    """Parse JSON text (bytes or str).

    Raises:
        ValueError: ``json.JSONDecodeError`` for bad JSON, ``UnicodeDecodeError`` for bad
            UTF-8, a plain ``ValueError`` for NaN/Infinity/out-of-range numbers.
        RecursionError: For absurdly deep nesting.
    """
    if _orjson is not None and not _may_hold_big_int(data):
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass  # let the stdlib decide, with its (and our) error message
    return _std_loads(data)


def _std_dumps(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escaped, so the line stays valid UTF-8
        return json.dumps(obj, ensure_ascii=True).encode("ascii")


def dumps(obj: Any) -> bytes:
    """Serialise to compact UTF-8 JSON bytes (no newline); never raises for JSON data."""
    if _orjson is not None:
        try:
            return _orjson.dumps(obj)
        except TypeError:
            pass  # big integers, lone surrogates, non-string keys
    return _std_dumps(obj)


def dumps_exact(obj: Any) -> tuple[bytes, bool]:
    """Like :func:`dumps`, plus whether :func:`loads_exact` may read the bytes back.

    ``True`` means orjson wrote them (so no integer is wider than 64 bits) and no ``null``
    appears (so no NaN was turned into one): an orjson parse then returns an equal value
    without the big-integer scan.
    """
    if _orjson is not None:
        try:
            data = _orjson.dumps(obj)
        except TypeError:
            pass
        else:
            return data, b"null" not in data
    return _std_dumps(obj), False


def loads_exact(data: bytes, exact: bool) -> Any:
    """Read back what :func:`dumps_exact` wrote, skipping the scan when ``exact``."""
    if exact and _orjson is not None:
        return _orjson.loads(data)
    return loads(data)


def dumps_checked(obj: Any) -> tuple[bytes, str | None]:
    """Like :func:`dumps`, and say whether the text holds lone surrogates.

    Returns:
        ``(data, problem)`` where ``problem`` is ``None`` or why the text is not encodable
        as UTF-8 (the data is then written with ASCII escapes).
    """
    if _orjson is not None:
        try:
            return _orjson.dumps(obj), None
        except TypeError:
            pass
    text = json.dumps(obj, ensure_ascii=False)
    try:
        return text.encode("utf-8"), None
    except UnicodeEncodeError as e:
        return json.dumps(obj, ensure_ascii=True).encode("ascii"), (
            f"unencodable character {text[e.start]!r} at offset {e.start}"
        )


def cache_key(obj: Any) -> bytes | None:
    """A compact key for JSON data; ``None`` when the data cannot be keyed exactly."""
    if _orjson is not None:
        try:
            key = _orjson.dumps(obj)
        except TypeError:
            pass
        else:
            if b"null" not in key:  # orjson writes NaN as null: let the stdlib tell them apart
                return key
    try:
        return _std_dumps(obj)
    except (TypeError, ValueError, RecursionError):
        return None
