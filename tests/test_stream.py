"""The resumable stream (xlam/data/stream.py): dealing to ranks, resume, the cursor."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest

from xlam.data.packing import PackingConfig
from xlam.data.sampler import BalancedSampler, SampleRef
from xlam.data.stream import MicroBatchStream, StreamCursor, StreamState


class FakeLengths:
    """Deterministic lengths per (source, record); zero marks an unusable sample."""

    def __init__(self, sizes: dict[str, int], cap: int) -> None:
        rng = np.random.default_rng(0)
        self.table = {k: rng.integers(20, cap, size=n) for k, n in sizes.items()}
        self.table["b"][3] = 0

    def lengths(self, refs: Sequence[SampleRef]) -> list[int]:
        return [int(self.table[r.source][r.index]) for r in refs]

    def plan_lengths(self, name: str, records: np.ndarray) -> np.ndarray:
        return self.table[name][records]


SIZES = {"a": 40, "b": 25, "c": 12}
PLAN = {"a": 80, "b": 25, "c": 30}


def _stream(
    rank: int = 0,
    world: int = 1,
    batch: int = 2,
    window: int = 16,
    packed: bool = True,
    grouped: bool = False,
) -> MicroBatchStream:
    cfg = PackingConfig(
        enabled=packed and not grouped, seq_length=300, window=window, group_by_length=grouped
    )
    sampler = BalancedSampler(SIZES, PLAN, seed=3)
    return MicroBatchStream(sampler, batch, rank, world, cfg, FakeLengths(SIZES, 300))


def _positions(mbs) -> list[int]:
    return [r.position for mb in mbs for row in mb.rows for r in row]


def test_packed_stream_uses_every_sample_once() -> None:
    st = _stream()
    mbs = list(st.batches())
    assert len(mbs) == st.num_batches() == st.count_bins() // st.span
    assert mbs[-1].state.step == len(mbs)
    pos = _positions(mbs)
    assert len(pos) == len(set(pos))
    for mb in mbs:
        assert len(mb.rows) == 2
        for row in mb.rows:
            assert sum(st.lengths.lengths(row)) <= 300
    # One bin per micro-batch drops nothing: every usable sample exactly once.
    one = _positions(list(_stream(batch=1).batches()))
    usable = [
        r.position for r in st.sampler.refs(0, st.sampler.total) if st.lengths.lengths([r])[0] > 0
    ]
    assert sorted(one) == usable == sorted(set(one))
    assert set(pos) <= set(one)  # a larger batch only drops the last partial micro-batch


@pytest.mark.parametrize(("packed", "grouped"), [(True, False), (False, False), (False, True)])
@pytest.mark.parametrize("batch", [2, 3])
def test_stream_resumes_exactly_from_every_state(packed: bool, grouped: bool, batch: int) -> None:
    full = list(_stream(batch=batch, packed=packed, grouped=grouped).batches())
    ref = [[r.position for row in mb.rows for r in row] for mb in full]
    for k in range(len(full)):
        state = StreamState.from_dict(full[k].state.to_dict())
        rest = list(_stream(batch=batch, packed=packed, grouped=grouped).batches(state))
        got = [[r.position for row in mb.rows for r in row] for mb in rest]
        assert got == ref[k + 1 :], k  # none skipped, none repeated
        if k + 1 < len(full):
            assert rest[0].state == full[k + 1].state


@pytest.mark.parametrize(("packed", "grouped"), [(True, False), (False, False), (False, True)])
def test_ranks_are_disjoint_in_lockstep(packed: bool, grouped: bool) -> None:
    world = 3
    per_rank = [
        list(_stream(r, world, packed=packed, grouped=grouped).batches()) for r in range(world)
    ]
    assert len({len(x) for x in per_rank}) == 1  # same number of steps on every rank
    for step in zip(*per_rank, strict=True):
        assert len({mb.state.to_dict().__repr__() for mb in step}) == 1  # identical state
    pos = [p for x in per_rank for p in _positions(x)]
    assert len(pos) == len(set(pos))
    single = _positions(
        list(_stream(0, 1, batch=2 * world, packed=packed, grouped=grouped).batches())
    )
    assert sorted(pos) == sorted(single)  # same bins, dealt differently


def _padding_efficiency(st: MicroBatchStream) -> float:
    """Real tokens over padded ones (every row padded to its micro-batch's longest)."""
    real = padded = 0
    for mb in st.batches():
        lengths = [st.lengths.lengths(row)[0] for row in mb.rows]
        real += sum(lengths)
        padded += max(lengths) * len(lengths)
    return real / padded


def test_grouped_stream_uses_every_usable_sample_once_with_less_padding() -> None:
    window, batch = 48, 4
    st = _stream(batch=batch, window=window, grouped=True)
    mbs = list(st.batches())
    assert len(mbs) == st.num_batches() == st.count_bins() // batch
    pos = _positions(mbs)
    usable = [
        r.position for r in st.sampler.refs(0, st.sampler.total) if st.lengths.lengths([r])[0] > 0
    ]
    assert len(pos) == len(set(pos)) and set(pos) <= set(usable)
    assert len(usable) - len(pos) < batch  # only the last partial micro-batch is left
    assert all(len(mb.rows) == batch and all(len(r) == 1 for r in mb.rows) for mb in mbs)
    # the same samples, unpacked in stream order, pad far more
    grouped = _padding_efficiency(st)
    plain = _padding_efficiency(_stream(batch=batch, window=window, packed=False))
    assert grouped > 0.9 > plain
    # and the micro-batches of a window do not come shortest first
    longest = [max(st.lengths.lengths([r])[0] for row in mb.rows for r in row) for mb in mbs]
    assert longest[: window // batch] != sorted(longest[: window // batch])


def test_group_by_length_is_for_unpacked_rows() -> None:
    with pytest.raises(ValueError, match="unpacked"):
        PackingConfig(enabled=True, group_by_length=True)


def test_worker_shards_partition_the_batches() -> None:
    full = list(_stream().batches())
    shards = [list(_stream().batches(shard=(w, 3))) for w in range(3)]
    merged = [shards[g % 3][g // 3] for g in range(len(full))]
    assert [_positions([m]) for m in merged] == [_positions([m]) for m in full]


def test_seen_counts_are_global_and_exact() -> None:
    st = _stream(packed=False)
    last = list(st.batches())[-1].state
    assert sum(last.seen.values()) == last.position
    assert last.seen == dict(zip(st.sampler.names, st.sampler.counts_before(last.position)))
    packed = list(_stream().batches())
    counted = Counter(r.source for mb in packed for row in mb.rows for r in row)
    assert all(packed[-1].state.seen[k] >= counted[k] for k in counted)


def test_state_from_other_packing_is_rejected() -> None:
    with pytest.raises(ValueError, match="window"):
        list(_stream(window=16).batches(StreamState(position=8)))


@pytest.mark.parametrize("packed", [True, False])
def test_resume_with_another_world_size_stays_exact(packed: bool) -> None:
    # Four micro-batches on 2 ranks, then the rest on 3: the same bins, none twice, none lost.
    first = [list(_stream(r, 2, packed=packed).batches()) for r in range(2)]
    done = [p for rank in first for p in _positions(rank[:4])]
    state = StreamState.from_dict(first[0][3].state.to_dict())
    rest = [p for r in range(3) for p in _positions(_stream(r, 3, packed=packed).batches(state))]
    assert not set(done) & set(rest)
    single = _positions(list(_stream(0, 1, batch=1, packed=packed).batches()))
    assert set(done) | set(rest) <= set(single)
    # Only the last partial global micro-batch of 3 ranks may be left out.
    assert len(set(single) - set(done) - set(rest)) < 3 * 2 * (16 if packed else 1)


def test_rejects_an_impossible_rank() -> None:
    with pytest.raises(ValueError, match="rank"):
        _stream(rank=2, world=2)


def test_cursor_remembers_a_window() -> None:
    cursor = StreamCursor()
    states = [StreamState(position=10 * i, step=i) for i in range(1, 7)]
    for st in states:
        cursor.commit(st, keep=4)
    assert cursor.state == states[-1]
    assert cursor.resumable() == states[-1]  # no trainer: nothing to rewind
