"""The balanced sampler: proportions, determinism, totals, interleaving, seek.

Ranks and resume are the stream's (tests/test_stream.py).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from fractions import Fraction

import pytest

from xlam.data.sampler import BalancedSampler
from xlam.data.stream import MicroBatchStream, StreamState

SIZES = {"a": 50, "b": 20, "c": 7}
PLAN = {"a": 100, "b": 30, "c": 21}  # 2, 1.5 and 3 epochs


def _stream(s: BalancedSampler) -> list[tuple[str, int]]:
    return [(r.source, r.index) for r in s.refs(0, s.total)]


def test_order_is_stride_scheduling_exactly() -> None:
    # Reference: sort every draw by its rational key (k + phase) / c, ties by source name.
    s = BalancedSampler(SIZES, PLAN, seed=3)
    ref = []
    for si, name in enumerate(s.names):
        c, a = s.planned[name], s._a[si]
        ref += [(Fraction(2**20 * k + a, 2**20 * c), si, k) for k in range(c)]
    ref.sort()
    assert [(s.names[si], k) for _, si, k in ref] == [
        (s.names[si], k) for si, k in s.draws(0, s.total)
    ]


def test_per_source_totals_exact_and_fractional_epochs_do_not_repeat() -> None:
    s = BalancedSampler(SIZES, PLAN, seed=1)
    stream = _stream(s)
    assert len(stream) == s.total == sum(PLAN.values())
    assert Counter(src for src, _ in stream) == PLAN
    for name, size in SIZES.items():
        idx = [i for src, i in stream if src == name]
        full, rest = divmod(PLAN[name], size)
        passes = [idx[p * size : (p + 1) * size] for p in range(full)]
        for p in passes:  # every full pass visits every record once
            assert sorted(p) == list(range(size))
        tail = idx[full * size :]
        assert len(tail) == rest and len(set(tail)) == rest  # partial pass: no repeats
        if full >= 2:  # each pass draws a fresh permutation
            assert passes[0] != passes[1]


def test_proportions_hold_in_every_prefix() -> None:
    plan = {"x": 60_000, "y": 30_000, "z": 9_000, "w": 1_000}
    s = BalancedSampler(dict(plan), plan, seed=7)
    counts: Counter[int] = Counter()
    for n, (si, _) in enumerate(s.draws(0, s.total), start=1):
        counts[si] += 1
        if n % 997 == 0:
            for t, name in enumerate(s.names):
                # The documented bound (xlam/data/sampler.py): 1 + (S - 2) * share.
                share = plan[name] / s.total
                assert abs(counts[t] - n * share) < 1 + (len(plan) - 2) * share, (n, name)


def test_interleaving_runs_are_short() -> None:
    plan = {"big": 700, "mid": 200, "small": 100}
    s = BalancedSampler(dict(plan), plan, seed=0)
    runs: dict[str, int] = {}
    for name, grp in itertools.groupby(r.source for r in s.refs(0, s.total)):
        runs[name] = max(runs.get(name, 0), len(list(grp)))
    n = s.total
    for name, c in plan.items():
        bound = math.ceil(c / (n - c)) + 1
        assert runs.get(name, 1) <= bound, (name, runs, bound)
    assert runs["small"] == 1 and runs["mid"] == 1


def test_deterministic_and_seed_sensitive() -> None:
    a = _stream(BalancedSampler(SIZES, PLAN, seed=5))
    b = _stream(BalancedSampler(SIZES, PLAN, seed=5))
    c = _stream(BalancedSampler(SIZES, PLAN, seed=6))
    d = BalancedSampler(SIZES, PLAN, seed=5)
    d.set_epoch(1)
    assert a == b
    assert a != c
    assert a != _stream(d)


def test_random_access_matches_sequential() -> None:
    s = BalancedSampler(SIZES, PLAN, seed=4)
    seq = s.refs(0, s.total)
    for p in (0, 1, 17, 60, s.total - 1):
        assert s.ref(p) == seq[p]
    for p in range(0, s.total + 1, 13):
        assert sum(s.counts_before(p)) == p


class _CountingSampler(BalancedSampler):
    """Counts the key computations and comparisons: the sampler's whole integer work."""

    ops = 0

    def _key(self, s: int, k: int) -> int:
        self.ops += 1
        return super()._key(s, k)

    def _count_lt(self, t: int, key: int) -> int:
        self.ops += 1
        return super()._count_lt(t, key)

    def _count_le(self, t: int, key: int) -> int:
        self.ops += 1
        return super()._count_le(t, key)


def test_seek_computes_the_position_instead_of_replaying() -> None:
    # The documented cost (xlam/data/sampler.py): a seek is O(S² log N) integer operations
    # wherever it lands, then O(1) keys per sample merged. Wall time is scripts/bench_data.py's.
    sizes = {"a": 400_000, "b": 300_000, "c": 500_000, "d": 50_000}
    plan = {"a": 800_000, "b": 300_000, "c": 1_250_000, "d": 25_000}
    world, block, take = 8, 4, 64

    def work(position: int) -> int:
        s = _CountingSampler(sizes, plan, seed=0)
        # The real path: rank 1 of `world` resumes the stream at `position` (xlam/data/stream.py).
        stream = MicroBatchStream(s, block, rank=1, world_size=world)
        mbs = itertools.islice(stream.batches(StreamState(position=position)), take // block)
        refs = [r for mb in mbs for row in mb.rows for r in row]
        assert [r.position for r in refs[:2]] == [position + block, position + block + 1]
        return s.ops

    n_sources, total = len(plan), sum(plan.values())
    seek = n_sources * n_sources * (total.bit_length() + 1)  # S binary searches of S ops
    merged = take // block * block * world + n_sources  # every rank's share of the blocks
    near, deep = work(1_000), work(1_000_000)
    # The stream seeks twice: the per-source counts before the position, then the draws.
    assert deep <= 2 * seek + merged, (deep, seek, merged)
    assert abs(deep - near) <= n_sources * n_sources, (near, deep)  # depth costs nothing


def test_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="no records"):
        BalancedSampler({"a": 0}, {"a": 3})
