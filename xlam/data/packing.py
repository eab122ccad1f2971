"""Sequence packing (pure Python, no Lightning).

The global sample stream (:class:`~xlam.data.sampler.BalancedSampler`) is cut into windows of
``window`` consecutive positions. Each window is packed on its own with best-fit decreasing
into bins of at most ``seq_length`` tokens, and its bins are put in a seeded random order
(BFD fills bins in length order, which would otherwise put all long samples in the first
steps of a window). A bin becomes one row of a packed batch: position ids restart at 0 for
each sample and no token attends across samples (see :mod:`xlam.data.collate`). How bins
are dealt to ranks and resumed: :mod:`xlam.data.stream`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from xlam.data.sampler import SampleRef


@dataclass
class PackingConfig:
    """How samples become rows: packed into bins, or one per padded row.

    Attributes:
        enabled: Pack samples into bins; otherwise one sample per padded row.
        seq_length: Tokens per bin (the longest row a packed batch can have).
        window: Consecutive stream positions packed (or grouped by length) together.
            Larger packs tighter; resuming re-packs one window.
        group_by_length: Unpacked only: a micro-batch takes samples of neighbouring lengths
            from its window, and the micro-batches of a window come in a seeded random
            order (less padding, as the Hugging Face Trainer's ``group_by_length``).
        pad_to_multiple_of: Pad every micro-batch's width up to a multiple of this (``None``:
            to its longest row). Bounds the shapes a run sees: kernels that plan per shape
            (cuDNN attention, ``torch.compile``) then plan a few times, not every step;
            ``seq_length`` gives every packed batch one shape.
    """

    enabled: bool = False
    seq_length: int = 4096
    window: int = 1000
    group_by_length: bool = False
    pad_to_multiple_of: int | None = None

    def __post_init__(self) -> None:
        if self.seq_length < 1:
            raise ValueError(f"packing.seq_length must be >= 1, got {self.seq_length}")
        if self.window < 1:
            raise ValueError(f"packing.window must be >= 1, got {self.window}")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ValueError(
                f"packing.pad_to_multiple_of must be >= 1 or null, got {self.pad_to_multiple_of}"
            )
        if self.enabled and self.group_by_length:
            raise ValueError(
                "packing.group_by_length is for unpacked rows (packing.enabled=false): "
                "packed bins are already filled by length"
            )

    @property
    def windowed(self) -> bool:
        """Whether rows are formed a window at a time (packed, or grouped by length)."""
        return self.enabled or self.group_by_length


def group_by_length(
    lengths: Sequence[int], span: int, carry: int, rng: np.random.Generator
) -> list[list[int]]:
    """One window's samples in an order whose consecutive ``span`` rows have similar lengths.

    The usable samples (length > 0) are sorted by length (ties in index order) and cut, from
    the short end, into: ``span - carry`` samples that complete the micro-batch begun in the
    previous window (none when ``carry`` is 0), then the ``r`` left over once the rest is cut
    into whole micro-batches (they begin the next window's first micro-batch), then the whole
    micro-batches of ``span`` samples, in a seeded random order. Every
    micro-batch boundary of the stream then falls on a boundary of this cut.

    Args:
        lengths: Length of each sample of the window (0: nothing to train on).
        span: Rows per global micro-batch.
        carry: Rows of the current micro-batch taken from earlier windows (``< span``).
        rng: Seeded generator of the micro-batch order.

    Returns:
        Single-sample bins in dealing order.
    """
    if not 0 <= carry < span:
        raise ValueError(f"carry {carry} not in [0, {span})")
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: (lengths[i], i))
    head = (span - carry) % span
    first, rest = order[:head], order[head:]
    left = len(rest) % span
    tail, whole = rest[:left], rest[left:]
    groups = [whole[i : i + span] for i in range(0, len(whole), span)]
    mixed = [i for g in rng.permutation(len(groups)) for i in groups[g]]
    return [[i] for i in (*first, *mixed, *tail)]


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Pack items into as few bins of ``capacity`` as best-fit decreasing finds.

    Items are placed longest first (ties in index order) into the fullest bin that still
    has room. Items of length 0 are left out (a sample that could not be rendered).

    Args:
        lengths: Length of each item.
        capacity: Room of one bin.

    Returns:
        Bins as lists of item indices, in creation order, each sorted by index.

    Raises:
        ValueError: If an item is longer than ``capacity`` (truncate or drop it first).
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    free: list[tuple[int, int]] = []  # (room left, bin id), sorted
    bins: list[list[int]] = []
    for i in order:
        n = lengths[i]
        if n <= 0:
            break  # sorted: only empty items remain
        if n > capacity:
            raise ValueError(f"item {i} has {n} tokens > bin capacity {capacity}")
        j = bisect.bisect_left(free, (n, -1))
        if j == len(free):
            bins.append([i])
            room, b = capacity - n, len(bins) - 1
        else:
            room, b = free.pop(j)
            bins[b].append(i)
            room -= n
        if room > 0:
            bisect.insort(free, (room, b))
    for b in bins:
        b.sort()
    return bins


def packing_efficiency(row_lengths: Sequence[int], rows_per_batch: int) -> float:
    """Real tokens over tokens processed when rows are padded to the longest of each batch."""
    real = processed = 0
    for i in range(0, len(row_lengths), rows_per_batch):
        chunk = row_lengths[i : i + rows_per_batch]
        real += sum(chunk)
        processed += max(chunk) * len(chunk)
    return real / processed if processed else 1.0


class LengthProvider(Protocol):
    """What the stream needs to know about samples: their lengths in tokens."""

    def lengths(self, refs: Sequence[SampleRef]) -> Sequence[int]:
        """Effective lengths (after truncation); 0 for a sample that will not exist."""
        ...

    def plan_lengths(self, name: str, records: np.ndarray) -> np.ndarray:
        """Lengths of records of one source for planning (an estimate where unknown)."""
        ...


__all__ = [
    "LengthProvider",
    "PackingConfig",
    "best_fit_decreasing",
    "group_by_length",
    "packing_efficiency",
]
