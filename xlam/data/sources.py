"""Reading the sources of a mixture: format dispatch, record counts, streaming reads.

A streaming source is read sequentially while training, never whole. Pass ``e`` over it
reads the file in order through a bounded shuffle buffer whose random generator is seeded
by ``(seed, epoch, source, e)``, so the order of a pass is a pure function of those and of
the file. Resume: the sampler says which pass and which rank ``j`` within it comes next; the
reader re-opens the file and skips ``j`` records (it decodes them but does not render them).
That skip is the one place where resuming costs time proportional to the data, bounded by
one pass over one source; it is logged with its count.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from xlam.data.mixture import SourceSpec
from xlam.data.preference import PAIRS_FORMAT, read_pairs
from xlam.data.sampler import stable_seed
from xlam.data.schema import Trajectory, read_trajectories
from xlam.data.scores import RULES, ScoreCounts, score_rule

log = logging.getLogger(__name__)
T = TypeVar("T")


class MinScoreError(ValueError):
    """A source with a ``min_score`` holds a trajectory the critic did not judge."""


def load_source(spec: SourceSpec) -> Iterator[Trajectory]:
    """Stream the trajectories of a source, whatever its native format.

    With ``spec.min_score`` only the trajectories the critic scored at least that pass
    (:func:`filter_min_score`).

    Raises:
        FileNotFoundError: When the source path does not exist.
        MinScoreError: ``min_score`` is set and a trajectory was never judged.
    """
    if spec.min_score is not None:
        yield from filter_min_score(read_source(spec), spec)
    else:
        yield from read_source(spec)


def filter_min_score(
    trajs: Iterable[Trajectory], spec: SourceSpec, counts: ScoreCounts | None = None
) -> Iterator[Trajectory]:
    """The trajectories scored ``>= spec.min_score``; what is removed is counted and logged.

    Below the minimum and ``unparseable`` (the judge never gave a valid score) are removed,
    as ``xlam-data filter`` removes them. A trajectory without a verdict, or whose
    judgement ``failed``, stops the read: a drop would silently lose data that may be good.

    Args:
        trajs: The source's trajectories, in file order.
        spec: The source (``min_score`` set).
        counts: Filled as the pass goes (a fresh one when ``None``).

    Raises:
        MinScoreError: Naming the file, the record (index and id) and the fix.
    """
    assert spec.min_score is not None
    counts = ScoreCounts(spec.min_score) if counts is None else counts
    for index, t in enumerate(trajs):
        rule = score_rule(t, spec.min_score)
        if rule in ("no_critic", "failed"):
            raise MinScoreError(
                f"source {spec.name!r}: {spec.path}: record {index} (id {t.id!r}) has no "
                f"critic score ({RULES[rule]}) but data.sources.{spec.name}.min_score="
                f"{spec.min_score} keeps only scored trajectories: run `xlam-data critique` "
                f"on the file (again, for failed judgements) or remove min_score"
            )
        counts.add(spec.name, rule)
        if rule is None:
            yield t
    log.info(
        "source %s: min_score=%d kept %d of %d trajectories (removed: %s)",
        spec.name,
        spec.min_score,
        counts.kept,
        counts.read,
        dict(counts.removed) or "none",
    )


def read_source(spec: SourceSpec) -> Iterator[Trajectory]:
    """Stream the source's records, whatever their format, ``min_score`` not applied."""
    path = Path(spec.path)
    if not path.exists():
        raise FileNotFoundError(f"source {spec.name!r}: {path} does not exist")
    if spec.format == PAIRS_FORMAT:  # preference pairs (DPO): their own JSONL reader
        for p in read_pairs(path):
            if not p.source:
                p.source = spec.name
            yield p  # type: ignore[misc]  # renders like a trajectory (cache.render_rows)
        return
    if spec.format == "unified" and path.suffix == ".jsonl":
        for t in read_trajectories(path):
            if not t.source:
                t.source = spec.name
            yield t
        return
    from xlam.data.formats import import_records

    rejected = 0
    for result, _, _ in import_records(path, spec.format, source=spec.name):
        if isinstance(result, Trajectory):
            yield result
        else:
            rejected += 1
    if rejected:
        log.warning(
            "source %s: %d records rejected by the %s importer (see xlam-data convert)",
            spec.name,
            rejected,
            spec.format,
        )


def count_records(spec: SourceSpec) -> int:
    """Number of trajectories a source yields (reads it once, renders nothing)."""
    return sum(1 for _ in load_source(spec))


def buffered_shuffle(items: Iterable[T], buffer: int, rng: random.Random) -> Iterator[T]:
    """Shuffle a stream with a bounded buffer (each output is a random buffered item).

    Deterministic for a given ``rng`` state and input order; holds at most ``buffer`` items.
    """
    buf: list[T] = []
    for item in items:
        if len(buf) < buffer:
            buf.append(item)
            continue
        i = rng.randrange(buffer)
        out, buf[i] = buf[i], item
        yield out
    rng.shuffle(buf)
    yield from buf


class StreamingSource:
    """Sequential, resumable reader of one streaming source.

    Args:
        spec: The source (``streaming: true``).
        size: Records per pass (the first ``size`` of the file).
        seed: Base seed.
        epoch: Run epoch.
        render: ``Trajectory -> samples`` (none when it cannot be used, several for
            ``per_turn``); the samples of one record always travel together.
    """

    streaming = True

    def __init__(
        self,
        spec: SourceSpec,
        size: int,
        seed: int,
        epoch: int,
        render: Callable[[Trajectory], list[dict[str, Any]]],
    ) -> None:
        self.spec = spec
        self.size = size
        self.seed = seed
        self.epoch = epoch
        self.render = render
        self.skipped = 0  # records decoded only to reach a resume point
        self._it: Iterator[Trajectory] | None = None
        self._cycle = -1
        self._next = 0

    def __getstate__(self) -> dict[str, Any]:
        # Open readers do not cross process boundaries (DataLoader workers re-open).
        state = dict(self.__dict__)
        state.update(_it=None, _cycle=-1, _next=0)
        return state

    def _open(self, cycle: int) -> None:
        rng = random.Random(stable_seed(self.seed, self.epoch, self.spec.name, cycle))
        head = itertools.islice(load_source(self.spec), self.size)
        self._it = buffered_shuffle(head, self.spec.shuffle_buffer, rng)
        self._cycle, self._next = cycle, 0

    def trajectory(self, cycle: int, j: int) -> Trajectory:
        """The ``j``-th trajectory of pass ``cycle`` (reads forward; re-opens to go back)."""
        if not 0 <= j < self.size:
            raise IndexError(f"source {self.spec.name!r}: record {j} of a pass of {self.size}")
        if cycle != self._cycle or j < self._next:
            self._open(cycle)
        assert self._it is not None
        skip = j - self._next
        if skip > 1000:
            log.info(
                "streaming source %s: skipping %d records of pass %d to resume",
                self.spec.name,
                skip,
                cycle,
            )
        try:
            for _ in range(skip):
                next(self._it)
            self.skipped += skip
            self._next = j + 1
            return next(self._it)
        except StopIteration:
            raise ValueError(
                f"source {self.spec.name!r}: the file has fewer than size={self.size} records"
            ) from None

    def get(self, cycle: int, j: int) -> list[dict[str, Any]]:
        """The rendered samples of record ``j`` of pass ``cycle`` (empty: unusable)."""
        return self.render(self.trajectory(cycle, j))


__all__ = [
    "MinScoreError",
    "StreamingSource",
    "buffered_shuffle",
    "count_records",
    "filter_min_score",
    "load_source",
    "read_source",
]
