"""The resumable data stream: micro-batches dealt to ranks, and where the run stands.

This module is the one resume path. :class:`~xlam.data.sampler.BalancedSampler` maps stream
positions to samples; here the positions become this rank's micro-batches, and the state
that a checkpoint carries (:class:`StreamState`, under the datamodule's ``stream`` key) is
kept.

Dealing. Every rank packs every window (lengths only, which is cheap) and the bins form one
global sequence; global micro-batch ``g`` is the next ``batch_size × world_size`` bins and
rank ``r`` takes the ``r``-th ``batch_size`` of them. So every rank consumes the same number
of rows per step whatever the sample lengths, and the state is global and identical on all
ranks: *(start of the current window, bins of it already trained)*. Resuming re-packs one
window (``O(window)``) after an ``O(S² log N)`` seek; nothing before it is read again, and
the state stays exact when the world size changes (only the dealing of later bins changes).
Without packing a "bin" is one sample and the state is the next global position; grouped by
length (``packing.group_by_length``), a bin is one sample, windows are dealt like packed
ones, and a window's order depends on the global micro-batch size (the state resumes exactly
with the same ``batch_size × world_size``).

Commit. A micro-batch's state is committed when it reaches the model (not when a worker
prefetches it), and a checkpoint saved inside an accumulation window resumes at the
window's start (:mod:`xlam.utils.accumulation`).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from xlam.data.collate import packed_collate, pad_collate
from xlam.data.packing import LengthProvider, PackingConfig, best_fit_decreasing, group_by_length
from xlam.data.sampler import BalancedSampler, SampleRef, stable_seed
from xlam.utils.accumulation import unfinished_micro_batches


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
        packing: Packing settings; ``None`` or disabled for one sample per row (grouped by
            length with ``group_by_length``).
        lengths: Length provider; required when packing or grouping by length.
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
        # set when rows are formed a window at a time (packed, or grouped by length)
        self.packing = packing if packing is not None and packing.windowed else None
        if self.packing is not None and lengths is None:
            raise ValueError("packing and group_by_length need a length provider")
        self.lengths = lengths
        self._num_batches: int | None = None

    @property
    def span(self) -> int:
        """Rows per global micro-batch."""
        return self.batch_size * self.world_size

    # -- planning ----------------------------------------------------------------------
    @property
    def packed(self) -> bool:
        """Whether a row holds a bin of packed samples (else one sample)."""
        return self.packing is not None and self.packing.enabled

    def window_bins(self, start: int, carry: int = 0) -> tuple[list[SampleRef], list[list[int]]]:
        """The samples of the window at ``start`` and its bins in dealing order.

        Args:
            start: First stream position of the window.
            carry: Bins of the current micro-batch taken from earlier windows (grouped by
                length: the window's first micro-batch completes that one).
        """
        assert self.packing is not None and self.lengths is not None
        stop = min(start + self.packing.window, self.sampler.total)
        refs = self.sampler.refs(start, stop)
        lengths = list(self.lengths.lengths(refs))
        rng = np.random.default_rng(
            stable_seed(self.sampler.seed, self.sampler.epoch, "bins", start)
        )
        if not self.packed:
            return refs, group_by_length(lengths, self.span, carry, rng)
        bins = best_fit_decreasing(lengths, self.packing.seq_length)
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
        if not self.packed:  # grouped by length: a bin per usable sample, whatever the window
            after = s.counts_before(total)
            return sum(
                int(np.count_nonzero(self.lengths.plan_lengths(name, s.records_of(name, a, b))))
                for name, a, b in zip(s.names, before, after)
                if b > a
            )
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
        # a resumed state is a micro-batch boundary: ``skip`` bins of this window and the
        # carried ones from before it make whole micro-batches
        carry = -skip % span
        while start < s.total:
            refs, bins = self.window_bins(start, carry)
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
            skip, carry = 0, len(pending)
            # Samples of the window that were not packed (unrendered) count as drawn.
            seen = self._seen_at(nxt)
            start = nxt
        # A last incomplete global micro-batch is dropped on every rank alike.


class SampleSource(Protocol):
    """Where the samples of stream positions come from (the datamodule's sample store)."""

    def fetch(self, ref: SampleRef) -> list[dict[str, Any]]:
        """The samples of one stream position."""
        ...


class StreamCursor:
    """The committed stream state, shared by the datamodule and its train loader.

    It keeps the states after the last few micro-batches too: a checkpoint saved inside an
    accumulation window resumes at the window's start (:mod:`xlam.utils.accumulation`).
    """

    def __init__(self) -> None:
        self._history: deque[StreamState] = deque([StreamState()], maxlen=2)
        self.trainer: Any = None

    @property
    def state(self) -> StreamState:
        """Past the last micro-batch handed to the model."""
        return self._history[-1]

    @state.setter
    def state(self, state: StreamState) -> None:
        self._history = deque([state], maxlen=self._history.maxlen)

    def commit(self, state: StreamState, keep: int) -> None:
        """Advance past one more micro-batch, remembering the last ``keep`` states."""
        if self._history.maxlen != keep + 1:
            self._history = deque(self._history, maxlen=keep + 1)
        self._history.append(state)

    def resumable(self) -> StreamState:
        """Where a checkpoint saved now resumes: the start of an unfinished window."""
        back = unfinished_micro_batches(self.trainer)
        if back == 0:
            return self.state
        if back >= len(self._history):
            raise RuntimeError(
                f"a checkpoint inside an accumulation window must rewind {back} "
                f"micro-batches, but the data cursor only remembers {len(self._history) - 1}"
            )
        state = self._history[-1 - back]
        if state.step != self.state.step - back:
            raise RuntimeError(
                f"data cursor at micro-batch {self.state.step} cannot rewind {back} to the "
                f"window start: it holds micro-batch {state.step} there"
            )
        return state


class TrainStream(IterableDataset):
    """Yields this rank's collated micro-batches from the committed stream state."""

    def __init__(
        self,
        stream: MicroBatchStream,
        store: SampleSource,
        pad_id: int,
        cursor: StreamCursor,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        self.stream = stream
        self.store = store
        self.pad_id = pad_id
        self.cursor = cursor
        self.multiple = pad_to_multiple_of

    def collate(self, mb: MicroBatch) -> dict[str, Any]:
        rows = [[s for ref in row for s in self.store.fetch(ref)] for row in mb.rows]
        if self.stream.packed:
            batch = packed_collate(rows, self.pad_id, self.multiple)
        else:
            batch = pad_collate([s for row in rows for s in row], self.pad_id, self.multiple)
        # Travels with the batch: committed when the batch reaches the model, so a
        # checkpoint never counts batches that were only prefetched.
        batch["stream_state"] = mb.state.to_dict()
        return batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        shard = (info.id, info.num_workers) if info is not None else (0, 1)
        for mb in self.stream.batches(self.cursor.state, shard):
            yield self.collate(mb)

    def __len__(self) -> int:
        # The whole run, not what is left: Lightning compares it with its own (restored)
        # batch counter.
        return self.stream.num_batches()


class ResumableLoader(DataLoader):
    """The train DataLoader; its state is the stream state, so Lightning knows it resumes.

    The datamodule's checkpoint entry is the one that is validated and restored; this copy
    only tells Lightning the truth (and restores the same state if it is loaded last).
    """

    def __init__(self, dataset: TrainStream, num_workers: int) -> None:
        super().__init__(dataset, batch_size=None, num_workers=num_workers)
        self.cursor = dataset.cursor

    def state_dict(self) -> dict[str, Any]:
        return {"stream": self.cursor.resumable().to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and "stream" in state:
            self.cursor.state = StreamState.from_dict(state["stream"])


__all__ = [
    "MicroBatch",
    "MicroBatchStream",
    "ResumableLoader",
    "SampleSource",
    "StreamCursor",
    "StreamState",
    "TrainStream",
]
