"""The verifier's only per-record state: a compact set of seen (source, id) keys."""

from __future__ import annotations

from array import array


class IdSet:
    """Set of (source, id) keys in 8 bytes each: an open-addressing table of 64-bit hashes.

    A Python ``set`` of id strings costs ~100 bytes an entry; this keeps the verifier's only
    per-record state small (16 MB per million ids). Two different ids collide with
    probability ~n²/2⁶⁵ (3e-8 for a million): such a pair would be reported as a duplicate.
    """

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._table = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, key: str) -> bool:
        """Insert ``key``; ``False`` if it was already there."""
        h = (hash(key) & 0xFFFFFFFFFFFFFFFF) or 1  # 0 marks an empty slot
        table, mask = self._table, self._mask
        i = h & mask
        while True:
            v = table[i]
            if v == 0:
                table[i] = h
                self._n += 1
                if self._n * 2 > mask:
                    self._grow()
                return True
            if v == h:
                return False
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._table
        self._table = array("Q", bytes(16 * len(old)))
        self._mask = len(self._table) - 1
        table, mask = self._table, self._mask
        for h in old:
            if h:
                i = h & mask
                while table[i]:
                    i = (i + 1) & mask
                table[i] = h
