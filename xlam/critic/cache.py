"""The critic's judgement cache: an append-only JSONL file, one judgement per line.

Keyed by (trajectory hash, judge, prompt hash). Each judgement is appended and flushed
as it arrives, so a run killed at any point loses at most the line being written; a torn
last line is skipped on reading and the next append starts on a fresh line. Only
judgements are kept (``scored``, ``unparseable``): a ``failed`` call is retried by the
next run. Lines hold hashes, the verdict and the request count: no trajectory text, no
credentials.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import IO, Any

from xlam.data.scores import CriticVerdict

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (trajectory hash, judge, prompt hash)
CACHED_STATUSES = ("scored", "unparseable")


class VerdictCache:
    """Judgements by key, read from ``path`` and appended to it.

    Args:
        path: The JSONL file (created on the first judgement).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._entries: dict[Key, tuple[CriticVerdict, int]] = {}
        self.skipped = 0  # unreadable lines (a torn last line after a kill)
        self._file: IO[str] | None = None
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    key = (d["trajectory"], d["judge"], d["prompt_hash"])
                    verdict = CriticVerdict.from_dict(d)
                except (ValueError, KeyError, TypeError):
                    self.skipped += 1
                    continue
                self._entries[key] = (verdict, int(d.get("requests", 0)))
        if self.skipped:
            log.warning("%s: %d unreadable lines skipped", self.path, self.skipped)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> CriticVerdict | None:
        got = self._entries.get(key)
        return None if got is None else got[0]

    def put(self, key: Key, verdict: CriticVerdict, requests: int) -> None:
        """Keep a judgement (``failed`` ones are not kept) and append it to the file."""
        if verdict.status not in CACHED_STATUSES:
            return
        self._entries[key] = (verdict, requests)
        if self._file is None:
            self._file = self._open()
        record: dict[str, Any] = {
            "trajectory": key[0],
            **verdict.to_dict(),
            "requests": requests,
        }
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()  # a killed run keeps every judgement it paid for

    def _open(self) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = False
        if self.path.is_file() and self.path.stat().st_size:
            with self.path.open("rb") as f:
                f.seek(-1, 2)
                torn = f.read(1) != b"\n"
        f = self.path.open("a", encoding="utf-8")
        if torn:  # a kill mid-line: do not glue the next record onto it
            f.write("\n")
        return f

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


__all__ = ["CACHED_STATUSES", "Key", "VerdictCache"]
