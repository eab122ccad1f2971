"""Streaming input and output: read records from any supported container, write JSONL.

:func:`iter_records` yields ``(record, origin)`` one at a time from a JSONL file, a JSON
array (parsed incrementally, never loaded whole), a Parquet file (by row batch) or a
Hugging Face ``datasets`` folder written by ``save_to_disk`` (memory-mapped Arrow). A line or
element that cannot be decoded is handed to ``on_error`` with its origin and the stream goes
on, so one bad byte costs one record, not the file.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from . import fastjson
from .base import RecordError

Origin = dict[str, Any]
ErrorHandler = Callable[[RecordError, Origin, Any], None]

_CHUNK = 1 << 20
# Characters that ``surrogateescape`` produces for bytes that are not UTF-8.
_BAD_BYTES = re.compile("[\udc80-\udcff]")
_WS = " \t\r\n"


class InputError(ValueError):
    """The input as a whole cannot be read (not a file we know, corrupt container)."""


def _raise(err: RecordError, origin: Origin, raw: Any) -> None:
    where = f"{origin.get('file')}:{origin.get('line', origin.get('index'))}"
    raise RecordError(err.rule, f"{where}: {err.message}")


def iter_records(
    path: str | Path, on_error: ErrorHandler | None = None
) -> Iterator[tuple[Any, Origin]]:
    """Yield ``(record, origin)`` for every record of ``path``, streaming.

    ``origin`` is ``{"file", "index"}`` plus ``"line"`` (1-based) for JSONL and JSON arrays
    and ``"split"`` for a ``DatasetDict`` folder. ``index`` counts every record, bad ones
    included, so it is stable whatever happens to the others.

    Args:
        path: A ``.jsonl``/``.ndjson``/``.json`` file, a ``.parquet`` file or a folder written
            by ``datasets.Dataset.save_to_disk``.
        on_error: Called as ``on_error(error, origin, raw)`` for an undecodable record, where
            ``raw`` is its text; the stream goes on. Without it the error is raised.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        InputError: If the container itself cannot be read.
    """
    path = Path(path)
    handler = on_error or _raise
    if path.is_dir():
        yield from _iter_hf(path)
        return
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _iter_parquet(path)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _iter_jsonl(path, handler)
    else:
        kind = _sniff(path)
        if kind == "array":
            yield from _iter_json_array(path, handler)
        elif kind == "object":
            yield from _iter_single(path, handler)
        else:
            yield from _iter_jsonl(path, handler)


def _sniff(path: Path) -> str:
    """``array`` for a JSON array, ``object`` for one pretty-printed object, else ``jsonl``."""
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:].lstrip()
        if head.startswith(b"["):
            return "array"
        if not head.startswith(b"{"):
            return "jsonl"
        f.seek(0)
        # A pretty-printed object has no line that is a whole object by itself; JSON lines
        # do, even when their first line happens to be broken.
        for _ in range(3):
            line = f.readline()
            if not line:
                break
            try:
                if isinstance(json.loads(line), dict):
                    return "jsonl"
            except (ValueError, RecursionError):
                continue
    return "object"


def _decode_error(e: Exception) -> RecordError:
    if isinstance(e, UnicodeDecodeError):
        return RecordError("invalid_utf8", f"not valid UTF-8 at byte {e.start}: {e.reason}")
    if isinstance(e, RecursionError):
        return RecordError("invalid_json", "JSON nested too deeply to decode")
    if isinstance(e, json.JSONDecodeError):
        return RecordError("invalid_json", f"not valid JSON: {e.msg} at column {e.colno}")
    return RecordError("invalid_json", f"not valid JSON: {e}")


def _iter_jsonl(path: Path, on_error: ErrorHandler) -> Iterator[tuple[Any, Origin]]:
    file = str(path)
    loads = fastjson.loads
    index = 0
    # Binary lines: a bad byte then only breaks its own line, and the parser decodes UTF-8
    # itself, which is faster than decoding first. Large reads: one system call per MiB.
    with path.open("rb", buffering=_CHUNK) as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                record = loads(raw)
            except (ValueError, RecursionError) as e:
                if not raw.strip():
                    continue
                on_error(
                    _decode_error(e),
                    {"file": file, "line": lineno, "index": index},
                    raw.decode("utf-8", "replace").rstrip("\n"),
                )
                index += 1
                continue
            yield record, {"file": file, "line": lineno, "index": index}
            index += 1


def _iter_single(path: Path, on_error: ErrorHandler) -> Iterator[tuple[Any, Origin]]:
    raw = path.read_bytes()
    try:
        record = fastjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))
    except (ValueError, RecursionError) as e:
        on_error(_decode_error(e), {"file": str(path), "line": 1, "index": 0}, None)
        return
    yield record, {"file": str(path), "line": 1, "index": 0}


class _ArrayReader:
    """Buffer over a text file for incremental ``raw_decode`` of array elements.

    Consumed text is dropped only when a chunk is appended, never per element: slicing a
    megabyte buffer after each small element would make reading quadratic.
    """

    def __init__(self, f: IO[str]) -> None:
        self.f = f
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line = 1  # line number at ``mark``
        self.mark = 0
        self.decode = json.JSONDecoder().raw_decode

    def fill(self, grow: bool = False) -> bool:
        if self.eof:
            return False
        chunk = self.f.read(max(_CHUNK, len(self.buf) - self.pos) if grow else _CHUNK)
        if not chunk:  # leave the buffer as it is: callers may hold offsets into it
            self.eof = True
            return False
        self.count_lines()
        self.buf = self.buf[self.pos :] + chunk
        self.pos = self.mark = 0
        return True

    def count_lines(self) -> int:
        self.line += self.buf.count("\n", self.mark, self.pos)
        self.mark = self.pos
        return self.line

    def skip_ws(self) -> str:
        while True:
            buf, n = self.buf, len(self.buf)
            while self.pos < n and buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < n:
                return buf[self.pos]
            if not self.fill():
                return ""

    def element(self) -> tuple[Any, int, int]:
        """Decode the element at ``pos``; returns ``(value, start, end)`` in ``buf``."""
        while True:
            start = self.pos
            try:
                obj, end = self.decode(self.buf, start)
            except json.JSONDecodeError as e:
                # Only text cut at the buffer's end is worth more reading; a mistake in the
                # middle is final (else a broken file would be read whole into memory).
                cut = e.pos >= len(self.buf) - 8 or e.msg.startswith("Unterminated string")
                if cut and len(self.buf) - start < _MAX_ELEMENT and self.fill(grow=True):
                    continue
                raise
            # A number cut at the border decodes as a shorter number: read on to be sure.
            if end == len(self.buf) and not self.eof and self.fill(grow=True):
                continue
            return obj, start, end


_MAX_ELEMENT = 1 << 30


def _iter_json_array(path: Path, on_error: ErrorHandler) -> Iterator[tuple[Any, Origin]]:
    """Incremental ``[elem, elem, ...]`` reader: memory holds one element, not the file."""
    file = str(path)
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
        r = _ArrayReader(f)
        if r.skip_ws() == "\ufeff":
            r.pos += 1
        if r.skip_ws() != "[":
            err = RecordError("invalid_json", "expected a JSON array")
            on_error(err, {"file": file, "line": r.count_lines(), "index": 0}, None)
            return
        r.pos += 1
        if r.skip_ws() == "]":
            return
        index = 0
        while True:
            r.skip_ws()
            origin = {"file": file, "line": r.count_lines(), "index": index}
            try:
                _, start, end = r.element()
            except json.JSONDecodeError as e:
                msg = f"element is not valid JSON ({e.msg}); the rest of the array is unreadable"
                on_error(RecordError("invalid_json", msg), origin, None)
                return
            except RecursionError:
                on_error(RecordError("invalid_json", "element nested too deeply"), origin, None)
                return
            if _BAD_BYTES.search(r.buf, start, end):
                err = RecordError("invalid_utf8", "element holds bytes that are not UTF-8")
                on_error(err, origin, None)
            else:
                # The scan above only finds the element's end; parse it again with the rules
                # every reader shares (no NaN, exact big integers), one element at a time.
                try:
                    yield fastjson.loads(r.buf[start:end]), origin
                except (ValueError, RecursionError) as e:
                    on_error(_decode_error(e), origin, r.buf[start:end])
            index += 1
            r.pos = end
            c = r.skip_ws()
            if c == ",":
                r.pos += 1
                continue
            if c == "]":
                return
            got = repr(c) if c else "end of file"
            err = RecordError("invalid_json", f"expected ',' or ']' after an element, got {got}")
            on_error(err, {"file": file, "line": r.count_lines(), "index": index}, None)
            return


def _iter_parquet(path: Path) -> Iterator[tuple[Any, Origin]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise InputError(f"{path}: not a readable Parquet file: {e}") from None
    index = 0
    file = str(path)
    for batch in pf.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield row, {"file": file, "index": index}
            index += 1


def _iter_hf(path: Path) -> Iterator[tuple[Any, Origin]]:
    if not (path / "dataset_info.json").exists() and not (path / "dataset_dict.json").exists():
        raise InputError(f"{path}: a folder, but not one written by datasets' save_to_disk")
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise InputError(f"{path}: cannot load the datasets folder: {e}") from None
    splits = ds.items() if isinstance(ds, datasets.DatasetDict) else [(None, ds)]
    file = str(path)
    for split, part in splits:
        index = 0
        for batch in part.iter(batch_size=1024):
            columns = list(batch)
            for values in zip(*(batch[c] for c in columns)):
                origin: Origin = {"file": file, "index": index}
                if split is not None:
                    origin["split"] = split
                yield dict(zip(columns, values)), origin
                index += 1


class JsonlWriter:
    """Write JSON lines to a file (binary, UTF-8), creating its folder.

    Values are serialised by :func:`fastjson.dumps`: text with lone surrogates (a valid JSON
    escape, but not encodable as UTF-8) is written with ASCII escapes, so nothing is lost
    or dropped.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[bytes] = self.path.open("wb", buffering=_CHUNK)
        self.count = 0

    def write(self, obj: Any) -> None:
        """Serialise ``obj`` and write it as one line."""
        self._f.write(fastjson.dumps(obj) + b"\n")
        self.count += 1

    def write_bytes(self, data: bytes) -> None:
        """Write one pre-serialised JSON line (without its newline)."""
        self._f.write(data + b"\n")
        self.count += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def progress(description: str, enabled: bool | None = None) -> Iterator[Callable[[int], None]]:
    """A record counter on stderr (rich), shown only on a terminal.

    Yields:
        ``update(n)`` to report ``n`` records done; call it every few thousand records.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} records"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda n: bar.update(task, completed=n)
