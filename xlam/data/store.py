"""Samples by stream position: rendered sources, the overlong policy and loss counting.

:class:`SampleStore` is the :class:`~xlam.data.packing.LengthProvider` the packer needs and
the :class:`~xlam.data.stream.SampleSource` the train stream fetches from.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from xlam.data.cache import (
    RenderedTable,
)
from xlam.data.losses import DataLossError, SourceLedger
from xlam.data.preference import PreferencePair
from xlam.data.render import RenderError, RenderOptions, truncate_sample
from xlam.data.render.pairs import render_pair
from xlam.data.sampler import SampleRef

log = logging.getLogger(__name__)

# Records of a streaming source rendered before training (to estimate its sample length and
# losses), and read before its loss limit is enforced while training.
STREAM_CHECK_RECORDS = 100


class MapSource:
    """A rendered source with random access: record ``i`` is table row ``rows[i]``."""

    streaming = False

    def __init__(self, table: RenderedTable, rows: np.ndarray) -> None:
        self.table = table
        self.rows = rows
        self.lengths = table.lengths[rows]

    @property
    def size(self) -> int:
        return len(self.rows)


class StreamRender:
    """Picklable ``Trajectory -> samples`` for streaming sources (renderer built lazily).

    A :class:`~xlam.data.preference.PreferencePair` (a ``format: pairs`` source) becomes one
    sample of both halves, with its ``split`` and ``branch``, as the render cache stores it
    (:func:`~xlam.data.render.pairs.render_pair`).
    """

    def __init__(self, tokenizer_path: str, options: RenderOptions) -> None:
        self.tokenizer_path = tokenizer_path
        self.options = asdict(options)
        self.failure: tuple[str, str] | None = None  # (problem kind, id) of the last refusal

    def __call__(self, traj: Any) -> list[dict[str, Any]]:
        from xlam.data.cache import get_renderer

        renderer = get_renderer(self.tokenizer_path, self.options)
        before = Counter(renderer.report.errors)
        self.failure = None
        pair = isinstance(traj, PreferencePair)
        try:
            if pair:
                one = render_pair(renderer, traj)
                samples = [one] if one is not None else []
            else:
                samples = renderer.render(traj)
        except RenderError as e:
            self.failure = (e.kind, traj.id)
            return []
        if not samples:
            kinds = sorted(renderer.report.errors - before)
            self.failure = (kinds[0] if kinds else "skipped", traj.id)
        return [
            {
                "id": s.id,
                "input_ids": np.asarray(s.input_ids, dtype=np.int64),
                "labels": np.asarray(s.labels, dtype=np.int64),
                "spans": np.asarray(s.spans, dtype=np.int64).reshape(-1, 2),
                **({"split": s.split, "branch": s.branch} if pair else {}),
            }
            for s in samples
        ]


def truncated(s: dict[str, Any], spans: Any, max_length: int) -> dict[str, Any]:
    t = truncate_sample(s["input_ids"], s["labels"], spans, max_length)
    return {**s, "input_ids": t.input_ids, "labels": t.labels}


def fit_record(
    raw: list[dict[str, Any]],
    failure: tuple[str, str] | None,
    ledger: SourceLedger,
    max_length: int,
    overlong: str,
    group_limit: int | None = None,
) -> list[dict[str, Any]]:
    """The trainable samples of one streaming record; every loss is counted in ``ledger``.

    Args:
        raw: The record's rendered samples (``{id, input_ids, labels, spans}``; none when
            the renderer refused it).
        failure: ``(problem kind, id)`` of the refusal when ``raw`` is empty.
        ledger: The source's counts.
        max_length: Longest sample kept.
        overlong: ``drop``, ``truncate`` (through :func:`truncate_sample`: a cut turn is
            never supervised) or ``error``.
        group_limit: Packing: the record's samples must fit one bin together.
    """
    ledger.read += 1
    if not raw:
        kind, tid = failure or ("skipped", "?")
        ledger.add(f"render_error:{kind}", tid)
        return []
    ledger.rendered += len(raw)
    out, used = [], 0
    for s in raw:
        n = len(s["input_ids"])
        if n > max_length:
            if overlong == "error":
                raise RenderError(f"{s['id']}: {n} tokens > data.max_length={max_length}")
            if overlong == "drop":
                ledger.add("dropped_overlong", s["id"])
                continue
            t = truncate_sample(s["input_ids"], s["labels"], s["spans"], max_length)
            if not t.supervised:
                ledger.add("truncated_unsupervised", s["id"])
                continue
            ledger.add("truncated", s["id"])
            ledger.turns_unsupervised += t.unsupervised_turns
            s = {**s, "input_ids": t.input_ids, "labels": t.labels}
        if group_limit and used + len(s["input_ids"]) > group_limit:
            ledger.add("dropped_overlong", s["id"])
            continue
        used += len(s["input_ids"])
        out.append(s)
    return out


class SampleStore:
    """Samples by :class:`SampleRef`, with the overlong policy applied.

    Implements the :class:`~xlam.data.packing.LengthProvider` the packer needs. Picklable,
    so DataLoader workers get their own copy (streaming readers re-open in each).

    Args:
        sources: Loaded sources by name.
        max_length: Longest sample kept.
        overlong: ``drop``, ``truncate`` or ``error``.
        mean_lengths: Estimated sample length of streaming sources (for planning).
        group_limit: Packing only: the samples of one streaming record (``per_turn``) are
            packed together, so together they must fit one bin of this many tokens.
        limits: ``max_drop_fraction`` of the streaming sources, enforced as they are read
            (once ``min(100, size)`` records were read; the error stops training).
    """

    def __init__(
        self,
        sources: dict[str, Any],
        max_length: int,
        overlong: str,
        mean_lengths: dict[str, float] | None = None,
        group_limit: int | None = None,
        limits: dict[str, float] | None = None,
    ) -> None:
        self.sources = sources
        self.max_length = max_length
        self.overlong = overlong
        self.mean_lengths = mean_lengths or {}
        self.group_limit = group_limit
        self.limits = limits or {}
        # Runtime counts of streaming sources (this process: a DataLoader worker has its own).
        self.ledgers: dict[str, SourceLedger] = {}
        self._memo: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
        self._old: dict[tuple[str, int, int], list[dict[str, Any]]] = {}

    def _stream_samples(self, ref: SampleRef, keep: bool) -> list[dict[str, Any]]:
        # Packing renders a window's samples to learn their lengths and keeps them for the
        # fetch (``keep``); a fetch takes them out, so nothing piles up.
        key = (ref.source, ref.cycle, ref.index)
        got = self._memo.pop(key, None)
        if got is None:
            got = self._old.pop(key, None)
        if got is None:
            src = self.sources[ref.source]
            raw = src.get(ref.cycle, ref.index)
            ledger = self.ledgers.get(ref.source)
            if ledger is None:
                ledger = self.ledgers[ref.source] = SourceLedger(ref.source, str(src.spec.path))
            got = fit_record(
                raw, src.render.failure, ledger, self.max_length, self.overlong, self.group_limit
            )
            self._enforce(ref.source, ledger, src.size)
        if keep:
            self._memo[key] = got
        return got

    def _enforce(self, name: str, ledger: SourceLedger, size: int) -> None:
        # A streaming source's losses are known only as it is read: judged once enough
        # records were read for the fraction to mean something.
        if ledger.lost and ledger.read >= min(STREAM_CHECK_RECORDS, size):
            msg = ledger.problem(self.limits.get(name, 1.0), "streaming, counted while training")
            if msg:
                raise DataLossError(msg)

    def lengths(self, refs: Sequence[SampleRef]) -> list[int]:
        """Tokens of each sample (0: nothing to train on); renders streaming samples."""
        # A new window: keep the previous one's samples for a micro-batch that spans both.
        self._old, self._memo = self._memo, {}
        out = []
        for ref in refs:
            src = self.sources[ref.source]
            if src.streaming:
                out.append(sum(len(s["input_ids"]) for s in self._stream_samples(ref, True)))
            else:
                out.append(min(int(src.lengths[ref.index]), self.max_length))
        return out

    def plan_lengths(self, name: str, records: np.ndarray) -> np.ndarray:
        """Lengths for planning; streaming sources use their estimated mean length."""
        src = self.sources[name]
        if src.streaming:
            est = min(round(self.mean_lengths.get(name, self.max_length)), self.max_length)
            return np.full(len(records), max(est, 1), dtype=np.int64)
        return np.minimum(src.lengths[records], self.max_length)

    def fetch(self, ref: SampleRef) -> list[dict[str, Any]]:
        """The samples of one stream position (one, or none/several for streaming)."""
        src = self.sources[ref.source]
        if src.streaming:
            samples = self._stream_samples(ref, False)
        else:
            row = int(src.rows[ref.index])
            s = src.table.get(row)
            if len(s["input_ids"]) > self.max_length:  # overlong=truncate, counted in prepare
                s = truncated(s, src.table.spans(row), self.max_length)
            samples = [s]
        return [{**s, "source": ref.source, "position": ref.position} for s in samples]


__all__ = [
    "STREAM_CHECK_RECORDS",
    "MapSource",
    "SampleStore",
    "StreamRender",
    "fit_record",
    "truncated",
]
