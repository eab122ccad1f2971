"""Sequence packing and the resumable micro-batch stream (pure Python, no Lightning).

Packing. The global sample stream (:class:`~xlam.data.sampler.BalancedSampler`) is cut into
windows of ``window`` consecutive positions. Each window is packed on its own with best-fit
decreasing into bins of at most ``seq_length`` tokens, and its bins are put in a seeded
random order (BFD fills bins in length order, which would otherwise put all long samples in
the first steps of a window). A bin becomes one row of a packed batch: position ids restart
at 0 for each sample and no token attends across samples (see :mod:`xlam.data.collate`).

Dealing. Every rank packs every window (lengths only, which is cheap) and the bins form one
global sequence; global micro-batch ``g`` is the next ``batch_size × world_size`` bins and
rank ``r`` takes the ``r``-th ``batch_size`` of them. So every rank consumes the same number
of rows per step whatever the sample lengths, and the state is global and identical on all
ranks: *(start of the current window, bins of it already trained)*. Resuming re-packs one
window (``O(window)``) after an ``O(S² log N)`` seek; nothing before it is read again, and
the state stays exact when the world size changes (only the dealing of later bins changes).

Without packing a "bin" is one sample and the state is the next global position.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from xlam.data.sampler import BalancedSampler, SampleRef, stable_seed


@dataclass
class PackingConfig:
    """How samples are packed into rows.

    Attributes:
        enabled: Pack samples into bins; otherwise one sample per padded row.
        seq_length: Tokens per bin (the longest row a packed batch can have).
        window: Consecutive stream positions packed together (best-fit decreasing within a
            window). Larger packs tighter; resuming re-packs one window.
    """

    enabled: bool = False
    seq_length: int = 4096
    window: int = 1000

    def __post_init__(self) -> None:
        if self.seq_length < 1:
            raise ValueError(f"packing.seq_length must be >= 1, got {self.seq_length}")
        if self.window < 1:
            raise ValueError(f"packing.window must be >= 1, got {self.window}")


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


@dataclass
class StreamState:
    """Where the data stream of a run stands; identical on every rank.

    Attributes:
        epoch: Run epoch of the sampler.
        position: Next stream position (packed: start of the current window).
        bins_done: Packed only: bins of the current window already trained.
        step: Global micro-batches trained.
        seen: Samples drawn from each source so far (all ranks).
    """

    epoch: int = 0
    position: int = 0
    bins_done: int = 0
    step: int = 0
    seen: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamState:
        return cls(
            int(d.get("epoch", 0)),
            int(d["position"]),
            int(d.get("bins_done", 0)),
            int(d.get("step", 0)),
            {k: int(v) for k, v in d.get("seen", {}).items()},
        )


@dataclass
class MicroBatch:
    """This rank's rows of one global micro-batch and the stream state after it."""

    rows: list[list[SampleRef]]
    state: StreamState


class MicroBatchStream:
    """Cut the global stream into this rank's micro-batches, resumably.

    Args:
        sampler: The global stream (its rank settings are not used).
        batch_size: Rows per rank per micro-batch (bins when packing, else samples).
        rank: This process's rank.
        world_size: Number of data-parallel ranks.
        packing: Packing settings; ``None`` or disabled for one sample per row.
        lengths: Length provider; required when packing.
    """

    def __init__(
        self,
        sampler: BalancedSampler,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        packing: PackingConfig | None = None,
        lengths: LengthProvider | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.sampler = sampler
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.packing = packing if packing is not None and packing.enabled else None
        if self.packing is not None and lengths is None:
            raise ValueError("packing needs a length provider")
        self.lengths = lengths
        self._num_batches: int | None = None

    @property
    def span(self) -> int:
        """Rows per global micro-batch."""
        return self.batch_size * self.world_size

    # -- planning ----------------------------------------------------------------------
    def window_bins(self, start: int) -> tuple[list[SampleRef], list[list[int]]]:
        """The samples of the window at ``start`` and its bins in dealing order."""
        assert self.packing is not None and self.lengths is not None
        stop = min(start + self.packing.window, self.sampler.total)
        refs = self.sampler.refs(start, stop)
        lengths = list(self.lengths.lengths(refs))
        bins = best_fit_decreasing(lengths, self.packing.seq_length)
        rng = np.random.default_rng(
            stable_seed(self.sampler.seed, self.sampler.epoch, "bins", start)
        )
        return refs, [bins[i] for i in rng.permutation(len(bins))]

    def count_bins(self) -> int:
        """Bins in the whole run (packs every window from lengths alone).

        Bin counts do not depend on the order of samples within a window, so each window is
        read as per-source ranges of draws (vectorised) rather than merged in stream order.
        """
        if self.packing is None:
            return self.sampler.total
        assert self.lengths is not None
        s, total, window = self.sampler, self.sampler.total, self.packing.window
        before = s.counts_before(0)
        n_bins = 0
        for start in range(0, total, window):
            after = s.counts_before(min(start + window, total))
            parts = [
                self.lengths.plan_lengths(name, s.records_of(name, a, b))
                for name, a, b in zip(s.names, before, after)
                if b > a
            ]
            lengths = np.concatenate(parts).tolist() if parts else []
            n_bins += len(best_fit_decreasing(lengths, self.packing.seq_length))
            before = after
        return n_bins

    def num_batches(self) -> int:
        """Global micro-batches in the run (the same on every rank)."""
        if self._num_batches is None:
            self._num_batches = self.count_bins() // self.span
        return self._num_batches

    def set_num_batches(self, n: int) -> None:
        """Use a known (e.g. cached) count instead of packing the whole run again."""
        self._num_batches = int(n)

    # -- iteration ---------------------------------------------------------------------
    def _seen_at(self, position: int) -> dict[str, int]:
        return dict(zip(self.sampler.names, self.sampler.counts_before(position)))

    def batches(
        self, state: StreamState | None = None, shard: tuple[int, int] = (0, 1)
    ) -> Iterator[MicroBatch]:
        """Yield this rank's micro-batches from ``state`` (default: the start).

        Args:
            state: Where to resume; must come from a stream with the same plan and packing.
            shard: ``(worker id, workers)``: yield only the ``g``-th micro-batches from
                ``state`` with ``g % workers == worker id`` (the others are still planned,
                not fetched). DataLoader takes batches from its workers in turn, so the
                order is kept.
        """
        state = state or StreamState(epoch=self.sampler.epoch)
        if state.epoch != self.sampler.epoch:
            raise ValueError(f"state is for epoch {state.epoch}, sampler for {self.sampler.epoch}")
        if self.packing is None:
            yield from self._plain(state, shard)
        else:
            yield from self._packed(state, shard)

    def _plain(self, state: StreamState, shard: tuple[int, int]) -> Iterator[MicroBatch]:
        s, span = self.sampler, self.span
        pos, step = state.position, state.step
        seen = self._seen_at(pos)
        stop = pos + max(s.total - pos, 0) // span * span
        draws = s.draws(pos, stop)
        lo = self.rank * self.batch_size
        while pos < stop:
            mine = (step - state.step) % shard[1] == shard[0]
            rows = []
            for i, (src, k) in enumerate(itertools.islice(draws, span)):
                seen[s.names[src]] += 1
                if mine and lo <= i < lo + self.batch_size:
                    rows.append([s.make_ref(src, k, pos + i)])
            pos += span
            step += 1
            if mine:
                yield MicroBatch(rows, StreamState(s.epoch, pos, 0, step, dict(seen)))

    def _packed(self, state: StreamState, shard: tuple[int, int]) -> Iterator[MicroBatch]:
        assert self.packing is not None
        s, span, window = self.sampler, self.span, self.packing.window
        if state.position % window and state.position != s.total:
            raise ValueError(
                f"stream state points at position {state.position}, not a window start of "
                f"packing.window={window}: the packing settings changed since it was saved"
            )
        step, start, skip = state.step, state.position, state.bins_done
        seen = self._seen_at(start)
        pending: list[tuple[SampleRef, ...]] = []
        lo = self.rank * self.batch_size
        while start < s.total:
            refs, bins = self.window_bins(start)
            if skip > len(bins):
                raise ValueError(f"stream state skips {skip} bins of a window of {len(bins)}")
            for b in bins[:skip]:
                for i in b:
                    seen[refs[i].source] += 1
            nxt = min(start + window, s.total)
            for done, b in enumerate(bins[skip:], start=skip + 1):
                pending.append(tuple(refs[i] for i in b))
                for i in b:
                    seen[refs[i].source] += 1
                if len(pending) == span:
                    mine = (step - state.step) % shard[1] == shard[0]
                    step += 1
                    if done == len(bins):
                        # The window is used up: the next state starts at the next one (and
                        # counts its unrendered samples as drawn, like the sampler does).
                        after = StreamState(s.epoch, nxt, 0, step, self._seen_at(nxt))
                    else:
                        after = StreamState(s.epoch, start, done, step, dict(seen))
                    if mine:
                        yield MicroBatch(
                            [list(r) for r in pending[lo : lo + self.batch_size]], after
                        )
                    pending = []
            skip = 0
            # Samples of the window that were not packed (unrendered) count as drawn.
            seen = self._seen_at(nxt)
            start = nxt
        # A last incomplete global micro-batch is dropped on every rank alike.


__all__ = [
    "LengthProvider",
    "MicroBatch",
    "MicroBatchStream",
    "PackingConfig",
    "StreamState",
    "best_fit_decreasing",
    "packing_efficiency",
]
