"""The balanced sampler: proportions, determinism, ranks, totals, interleaving, seek, resume."""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from fractions import Fraction

import pytest

from xlam.data.sampler import BalancedSampler

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


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_are_disjoint_and_cover_the_stream(world: int) -> None:
    block = 4
    per_rank = []
    for rank in range(world):
        s = BalancedSampler(SIZES, PLAN, seed=2, rank=rank, world_size=world, block=block)
        refs = list(s)
        assert len(refs) == len(s)
        per_rank.append(refs)
    positions = [r.position for refs in per_rank for r in refs]
    assert len(positions) == len(set(positions))  # disjoint
    span = block * world
    assert sorted(positions) == list(range(sum(PLAN.values()) // span * span))
    # Each rank's micro-batch is a contiguous slice of the interleaved stream.
    for rank, refs in enumerate(per_rank):
        first = [r.position for r in refs[:block]]
        assert first == list(range(rank * block, rank * block + block))


def test_random_access_matches_sequential() -> None:
    s = BalancedSampler(SIZES, PLAN, seed=4)
    seq = s.refs(0, s.total)
    for p in (0, 1, 17, 60, s.total - 1):
        assert s.ref(p) == seq[p]
    for p in range(0, s.total + 1, 13):
        assert sum(s.counts_before(p)) == p


@pytest.mark.parametrize("stop_after_blocks", [0, 1, 5, 11])
def test_resume_mid_epoch_gives_exactly_the_rest(stop_after_blocks: int) -> None:
    world, block = 2, 3
    full = {
        r: [x.position for x in BalancedSampler(SIZES, PLAN, 9, r, world, block)]
        for r in range(world)
    }
    for rank in range(world):
        s = BalancedSampler(SIZES, PLAN, 9, rank, world, block)
        it = iter(s)
        head = [next(it).position for _ in range(stop_after_blocks * block)]
        state = s.state_dict()
        assert state["position"] == stop_after_blocks * block * world
        fresh = BalancedSampler(SIZES, PLAN, 9, rank, world, block)
        fresh.load_state_dict(state)
        tail = [x.position for x in fresh]
        assert head + tail == full[rank]  # none skipped, none repeated


def test_resume_with_another_world_size_stays_exact() -> None:
    s = BalancedSampler(SIZES, PLAN, 1, 0, 2, 5)
    it = iter(s)
    for _ in range(5 * 4):  # four micro-batches of two ranks x block 5
        next(it)
    assert s.position == 40
    seen = set(range(40))
    rest = []
    for rank in range(4):
        t = BalancedSampler(SIZES, PLAN, 1, rank, 4, 2)
        t.load_state_dict(s.state_dict())
        rest += [r.position for r in t]
    assert not seen & set(rest)
    assert sorted(rest) == list(range(40, 40 + (s.total - 40) // 8 * 8))


def test_state_rejects_another_plan_or_seed() -> None:
    s = BalancedSampler(SIZES, PLAN, seed=0)
    with pytest.raises(ValueError, match="mixture changed"):
        BalancedSampler(SIZES, {**PLAN, "a": 101}, seed=0).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="seed"):
        BalancedSampler(SIZES, PLAN, seed=1).load_state_dict(s.state_dict())


def test_seek_is_cheap_deep_into_a_large_stream() -> None:
    sizes = {"a": 400_000, "b": 300_000, "c": 500_000, "d": 50_000}
    plan = {"a": 800_000, "b": 300_000, "c": 1_250_000, "d": 25_000}
    t0 = time.perf_counter()
    s = BalancedSampler(sizes, plan, seed=0, rank=1, world_size=8, block=4)
    s.load_state_dict({"position": 1_000_000, "seed": 0, "epoch": 0, "total": s.total})
    refs = list(itertools.islice(iter(s), 64))
    elapsed = time.perf_counter() - t0
    assert refs[0].position == 1_000_000 + 4
    assert elapsed < 2.0, elapsed


def test_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="rank"):
        BalancedSampler(SIZES, PLAN, rank=2, world_size=2)
    with pytest.raises(ValueError, match="no records"):
        BalancedSampler({"a": 0}, {"a": 3})
