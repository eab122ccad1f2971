"""TrajectoryDataModule: sources → rendered samples → balanced resumable stream → batches.

The wiring only: rendering and caching live in :mod:`xlam.data.cache`, streaming reads in
:mod:`xlam.data.sources`, the plan in :mod:`xlam.data.mixture`, positions in
:mod:`xlam.data.sampler`, bins and micro-batches in :mod:`xlam.data.packing`, tensors in
:mod:`xlam.data.collate`. See ``docs/data_pipeline.md``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from xlam.data.cache import (
    CacheInfo,
    RenderedTable,
    files_fingerprint,
    memo,
    render_source,
)
from xlam.data.collate import packed_collate, pad_collate
from xlam.data.mixture import (
    DataConfig,
    SourceSpec,
    plan_mixture,
    planned_steps,
    probabilities,
    sources_from_config,
)
from xlam.data.packing import MicroBatch, MicroBatchStream, PackingConfig, StreamState
from xlam.data.render import RenderError, RenderOptions
from xlam.data.sampler import BalancedSampler, SampleRef
from xlam.data.sources import StreamingSource, count_records, load_source

log = logging.getLogger(__name__)

_PROBE_RECORDS = 64  # records rendered to estimate a streaming source's sample length


class _MapSource:
    """A rendered source with random access: record ``i`` is table row ``rows[i]``."""

    streaming = False

    def __init__(self, table: RenderedTable, rows: np.ndarray) -> None:
        self.table = table
        self.rows = rows
        self.lengths = table.lengths[rows]

    @property
    def size(self) -> int:
        return len(self.rows)


class _StreamRender:
    """Picklable ``Trajectory -> samples`` for streaming sources (renderer built lazily)."""

    def __init__(self, tokenizer_path: str, options: RenderOptions) -> None:
        self.tokenizer_path = tokenizer_path
        self.options = asdict(options)

    def __call__(self, traj: Any) -> list[dict[str, Any]]:
        from xlam.data.cache import get_renderer

        try:
            samples = get_renderer(self.tokenizer_path, self.options).render(traj)
        except RenderError as e:
            log.warning("streaming: skipping %s: %s", traj.id, e)
            return []
        return [
            {
                "id": s.id,
                "input_ids": np.asarray(s.input_ids, dtype=np.int64),
                "labels": np.asarray(s.labels, dtype=np.int64),
            }
            for s in samples
        ]


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
    """

    def __init__(
        self,
        sources: dict[str, Any],
        max_length: int,
        overlong: str,
        mean_lengths: dict[str, float] | None = None,
        group_limit: int | None = None,
    ) -> None:
        self.sources = sources
        self.max_length = max_length
        self.overlong = overlong
        self.mean_lengths = mean_lengths or {}
        self.group_limit = group_limit
        self.counts: Counter[str] = Counter()  # runtime counts of streaming sources
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
            if not raw:
                self.counts[f"{ref.source}/render_error"] += 1
            got, used = [], 0
            for s in raw:
                s = self._fit(s, ref.source)
                if s is None:
                    continue
                if self.group_limit and used + len(s["input_ids"]) > self.group_limit:
                    self.counts[f"{ref.source}/dropped_overlong"] += 1
                    continue
                used += len(s["input_ids"])
                got.append(s)
        if keep:
            self._memo[key] = got
        return got

    def _fit(self, s: dict[str, Any], source: str) -> dict[str, Any] | None:
        n = len(s["input_ids"])
        if n <= self.max_length:
            return s
        if self.overlong == "error":
            raise RenderError(f"{s['id']}: {n} tokens > data.max_length={self.max_length}")
        if self.overlong == "drop":
            self.counts[f"{source}/dropped_overlong"] += 1
            return None
        self.counts[f"{source}/truncated"] += 1
        return {
            **s,
            "input_ids": s["input_ids"][: self.max_length],
            "labels": s["labels"][: self.max_length],
        }

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
            s = src.table.get(int(src.rows[ref.index]))
            samples = (
                [s]
                if len(s["input_ids"]) <= self.max_length
                else [
                    {
                        **s,
                        "input_ids": s["input_ids"][: self.max_length],
                        "labels": s["labels"][: self.max_length],
                    }
                ]
            )
        return [{**s, "source": ref.source, "position": ref.position} for s in samples]


class _Cursor:
    """The committed stream state, shared by the datamodule and its train dataset."""

    def __init__(self) -> None:
        self.state = StreamState()


class _TrainStream(IterableDataset):
    """Yields this rank's collated micro-batches from the committed stream state."""

    def __init__(
        self, stream: MicroBatchStream, store: SampleStore, pad_id: int, cursor: _Cursor
    ) -> None:
        self.stream = stream
        self.store = store
        self.pad_id = pad_id
        self.cursor = cursor

    def collate(self, mb: MicroBatch) -> dict[str, Any]:
        rows = [[s for ref in row for s in self.store.fetch(ref)] for row in mb.rows]
        if self.stream.packing is not None:
            batch = packed_collate(rows, self.pad_id)
        else:
            batch = pad_collate([s for row in rows for s in row], self.pad_id)
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


class _ResumableLoader(DataLoader):
    """The train DataLoader; its state is the stream state, so Lightning knows it resumes.

    The datamodule's checkpoint entry is the one that is validated and restored; this copy
    only tells Lightning the truth (and restores the same state if it is loaded last).
    """

    def __init__(self, dataset: _TrainStream, num_workers: int) -> None:
        super().__init__(dataset, batch_size=None, num_workers=num_workers)
        self.cursor = dataset.cursor

    def state_dict(self) -> dict[str, Any]:
        return {"stream": self.cursor.state.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and "stream" in state:
            self.cursor.state = StreamState.from_dict(state["stream"])


class TrajectoryDataModule(L.LightningDataModule):
    """Owns the mixture, the renderer cache and the balanced, packed, resumable stream.

    Args:
        sources: ``{name: {path, format, size?, epochs? | weight?, streaming?,
            shuffle_buffer?}}``.
        tokenizer_path: Folder of the tokenizer whose chat template renders the data.
        batch_size: Rows per micro-batch per rank: samples, or bins when packing.
        max_length: Longest sample in tokens (default: ``packing.seq_length`` when packing,
            else 1024); longer ones follow ``overlong``.
        overlong: ``drop``, ``truncate`` or ``error`` (dropped/truncated samples are counted
            in :meth:`mixture_report`).
        seed: Seed of the sampler, the bin order and streaming shuffle buffers.
        num_samples: Total stream length for weight-based mixtures.
        val_size: Samples per (non-streaming) source held out for validation.
        render: Options for :class:`RenderOptions`.
        num_workers: DataLoader workers.
        overfit_samples: Keep only the first N samples of each source (debugging).
        packing: ``{enabled, seq_length, window}`` (see :class:`PackingConfig`).
        cache_dir: Rendered-sample cache; ``None`` renders in memory every run.
        num_proc: Rendering processes when building the cache.
    """

    def __init__(
        self,
        sources: dict[str, Any],
        tokenizer_path: str,
        batch_size: int = 8,
        max_length: int | None = None,
        overlong: str = "drop",
        seed: int = 0,
        num_samples: int | None = None,
        val_size: int = 0,
        render: dict[str, Any] | None = None,
        num_workers: int = 0,
        overfit_samples: int | None = None,
        packing: dict[str, Any] | PackingConfig | None = None,
        cache_dir: str | None = None,
        num_proc: int | None = None,
    ) -> None:
        super().__init__()
        self.specs: list[SourceSpec] = sources_from_config(sources)
        pk = packing if isinstance(packing, PackingConfig) else PackingConfig(**(packing or {}))
        self.config = DataConfig(
            sources={s.name: s for s in self.specs},
            tokenizer_path=str(tokenizer_path),
            batch_size=batch_size,
            max_length=max_length,
            overlong=overlong,
            seed=seed,
            num_samples=num_samples,
            val_size=val_size,
            render=dict(render or {}),
            num_workers=num_workers,
            overfit_samples=overfit_samples,
            packing=pk,
            cache_dir=None if cache_dir is None else str(cache_dir),
            num_proc=num_proc,
        )
        self.tokenizer_path = str(tokenizer_path)
        self.batch_size = batch_size
        self.packing = pk
        self.max_length = max_length or (pk.seq_length if pk.enabled else 1024)
        self.overlong = overlong
        self.seed = seed
        self.num_samples = num_samples
        self.val_size = val_size
        self.render_options = RenderOptions(**(render or {}))
        self.num_workers = num_workers
        self.overfit_samples = overfit_samples
        self.cache_dir = cache_dir
        self.num_proc = num_proc
        self.tokenizer: Any = None
        self.sources: dict[str, Any] = {}
        self.val_samples: list[dict[str, Any]] = []
        self.stats: dict[str, dict[str, Any]] = {}
        self.cache_info: dict[str, CacheInfo] = {}
        self.plan: dict[str, int] = {}
        self.store: SampleStore | None = None
        self.sampler: BalancedSampler | None = None
        self.stream: MicroBatchStream | None = None
        self._cursor = _Cursor()
        self._pending_state: dict[str, Any] | None = None
        self._bins: int | None = None

    # -- preparation -------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Lightning runs this on one process per node first: it builds the caches that the
        # other ranks then only read in setup().
        self.prepare()

    def _load_map(self, spec: SourceSpec) -> _MapSource:
        table, info = render_source(
            spec, self.tokenizer, self.render_options, self.cache_dir, self.num_proc
        )
        self.cache_info[spec.name] = info
        lengths = table.lengths
        valid = np.flatnonzero(lengths > 0)
        counts: dict[str, Any] = {
            "read": info.read,
            "render_error": table.error_count(),
            "cache": "hit" if info.hit else ("built" if info.key else "off"),
        }
        if counts["render_error"]:
            log.warning(
                "source %s: %d trajectories not rendered, e.g. %s",
                spec.name,
                counts["render_error"],
                table.first_errors(),
            )
        long = lengths[valid] > self.max_length
        if long.any():
            if self.overlong == "error":
                row = int(valid[np.flatnonzero(long)[0]])
                raise RenderError(
                    f"source {spec.name!r}: sample {table.get(row)['id']} has "
                    f"{lengths[row]} tokens > data.max_length={self.max_length}"
                )
            key = "dropped_overlong" if self.overlong == "drop" else "truncated"
            counts[key] = int(long.sum())
            log.warning(
                "source %s: %d samples longer than %d tokens %s",
                spec.name,
                counts[key],
                self.max_length,
                key.replace("_", " "),
            )
            if self.overlong == "drop":
                valid = valid[~long]
        if self.val_size:
            cut = min(self.val_size, len(valid) // 2)
            for row in valid[len(valid) - cut :]:
                s = table.get(int(row))
                if len(s["input_ids"]) > self.max_length:
                    s = {
                        **s,
                        "input_ids": s["input_ids"][: self.max_length],
                        "labels": s["labels"][: self.max_length],
                    }
                self.val_samples.append({**s, "source": spec.name, "position": -1})
            counts["val"] = cut
            valid = valid[: len(valid) - cut]
        if self.overfit_samples:
            valid = valid[: self.overfit_samples]
        if spec.size is not None:
            if spec.size > len(valid):
                raise ValueError(
                    f"source {spec.name!r}: size={spec.size} but only "
                    f"{len(valid)} samples are available"
                )
            valid = valid[: spec.size]
        counts["samples"] = len(valid)
        self.stats[spec.name] = counts
        return _MapSource(table, valid)

    def _load_streaming(self, spec: SourceSpec) -> tuple[StreamingSource, float]:
        fp = {"files": files_fingerprint(spec.path), "format": spec.format, "name": spec.name}
        size = spec.size
        if size is None:
            size = int(memo(self.cache_dir, "records", fp, lambda: count_records(spec)))
        if self.overfit_samples:
            size = min(size, self.overfit_samples)
        render = _StreamRender(self.tokenizer_path, self.render_options)

        def probe() -> float:
            lens = [
                min(sum(len(s["input_ids"]) for s in render(t)), self.max_length)
                for _, t in zip(range(_PROBE_RECORDS), load_source(spec), strict=False)
            ]
            lens = [n for n in lens if n > 0]
            return float(np.mean(lens)) if lens else float(self.max_length)

        key = {
            **fp,
            "render": self.render_options.key(),
            "max_length": self.max_length,
            "tokenizer": self.tokenizer_path,
        }
        mean = float(memo(self.cache_dir, "mean_length", key, probe))
        self.stats[spec.name] = {
            "samples": size,
            "streaming": True,
            "shuffle_buffer": spec.shuffle_buffer,
            "mean_length_estimate": round(mean, 1),
        }
        src = StreamingSource(spec, size, self.seed, 0, render)
        return src, mean

    def prepare(self) -> None:
        """Load (or render and cache) every source and plan the mixture (idempotent)."""
        if self.plan:
            return
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
        means: dict[str, float] = {}
        for spec in self.specs:
            if spec.streaming:
                self.sources[spec.name], means[spec.name] = self._load_streaming(spec)
            else:
                self.sources[spec.name] = self._load_map(spec)
        for name, src in self.sources.items():
            if src.size == 0:
                log.warning(
                    "source %s has no usable samples: it takes no part in the mixture", name
                )
        limit = self.packing.seq_length if self.packing.enabled else None
        self.store = SampleStore(self.sources, self.max_length, self.overlong, means, limit)
        self._replan(self.num_samples)

    def _replan(self, num_samples: int | None) -> None:
        sizes = {k: v.size for k, v in self.sources.items()}
        self.plan = plan_mixture(self.specs, sizes, num_samples)
        self._bins = None
        self.sampler = None
        self.stream = None
        log.info("mixture plan (samples per source): %s", self.plan)

    def _global_sampler(self) -> BalancedSampler:
        sizes = {k: v.size for k, v in self.sources.items()}
        streaming = {k for k, v in self.sources.items() if v.streaming}
        return BalancedSampler(sizes, self.plan, self.seed, streaming=streaming)

    def _make_stream(self, rank: int = 0, world: int = 1) -> MicroBatchStream:
        return MicroBatchStream(
            self._global_sampler(), self.batch_size, rank, world, self.packing, self.store
        )

    def total_rows(self) -> int:
        """Rows in the planned stream: samples, or bins when packing (memoised on disk)."""
        self.prepare()
        if self._bins is None:
            if not self.packing.enabled:
                self._bins = self.total_samples
            else:
                key = {
                    "plan": self.plan,
                    "seed": self.seed,
                    "packing": asdict(self.packing),
                    "max_length": self.max_length,
                    "overlong": self.overlong,
                    "val": self.val_size,
                    "overfit": self.overfit_samples,
                    "sources": {
                        k: (self.cache_info[k].key if k in self.cache_info else self.stats[k])
                        for k in self.sources
                    },
                    "sizes": {k: v.size for k, v in self.sources.items()},
                }
                stream = self._make_stream()
                self._bins = int(memo(self.cache_dir, "bins", key, stream.count_bins))
        return self._bins

    def set_num_samples(self, num_rows: int) -> None:
        """Size the plan to a number of rows (used by ``train`` when ``max_steps`` is given).

        Args:
            num_rows: Rows the run needs (``max_steps × batch_size × world × accumulate``):
                samples, or bins when packing. A packed plan is grown until it holds that
                many bins; the run stops at ``max_steps`` and the unused tail of a smoothly
                interleaved stream does not change the mixture's proportions.
        """
        self.prepare()
        if not self.packing.enabled:
            self.num_samples = num_rows
            self._replan(num_rows)
            return
        per_bin = max(self.total_samples / max(self.total_rows(), 1), 1e-6)
        margin = math.ceil(2 * per_bin)  # the last bin of each window is partly empty
        want = math.ceil(num_rows * per_bin * 1.02) + margin
        for _ in range(8):
            self.num_samples = want
            self._replan(want)
            have = self.total_rows()
            if have >= num_rows:
                return
            want = math.ceil(want * num_rows / max(have, 1) * 1.02) + margin
        raise RuntimeError(f"could not plan {num_rows} bins from the mixture")

    def plan_for_steps(self, max_steps: int, world_size: int = 1, accumulate: int = 1) -> None:
        """Size the plan so that ``max_steps`` optimizer steps have data."""
        self.set_num_samples(max_steps * self.batch_size * world_size * accumulate)

    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        rank, world = self._rank_world()
        s = self.stream
        if s is None or (s.rank, s.world_size) != (rank, world):
            self.stream = self._make_stream(rank, world)
            self.stream.set_num_batches(self.total_rows() // self.stream.span)
            self.sampler = self.stream.sampler
        if self._pending_state is not None:
            self._restore(self._pending_state)
            self._pending_state = None

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        return 0, 1

    @property
    def total_samples(self) -> int:
        return sum(self.plan.values())

    def planned_steps(self, world_size: int = 1, accumulate: int = 1) -> int:
        """Optimizer steps that consume the planned stream once."""
        return planned_steps(self.total_rows(), self.batch_size, world_size, accumulate)

    # -- loaders -----------------------------------------------------------------------
    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        pid = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return int(pid or 0)

    def train_dataloader(self) -> DataLoader:
        if self.stream is None or self.store is None:
            self.setup("fit")
        assert self.stream is not None and self.store is not None
        dataset = _TrainStream(self.stream, self.store, self.pad_id, self._cursor)
        return _ResumableLoader(dataset, self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_samples:
            return []
        pad = self.pad_id
        return DataLoader(
            self.val_samples,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=lambda b: pad_collate(b, pad),
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Called for the batch about to reach the model (not for prefetched ones), so the
        # state saved in a checkpoint points exactly past the trained samples.
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training and "stream_state" in batch:
            self._cursor.state = StreamState.from_dict(batch["stream_state"])
        return batch

    # -- state ---------------------------------------------------------------------------
    @property
    def stream_state(self) -> StreamState:
        """Where the stream stands: past the last micro-batch handed to the model."""
        return self._cursor.state

    def state_dict(self) -> dict[str, Any]:
        if not self.plan:
            return {}
        st = self._cursor.state
        return {
            "sampler": {
                **st.to_dict(),
                "consumed": sum(st.seen.values()),
                "seed": self.seed,
                "total": self.total_samples,
                "packing": asdict(self.packing) if self.packing.enabled else None,
            },
            "plan": dict(self.plan),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.stream is None:
            self._pending_state = state_dict
        else:
            self._restore(state_dict)

    def _restore(self, state: dict[str, Any]) -> None:
        st = state["sampler"]
        problems = []
        if st.get("seed", self.seed) != self.seed:
            problems.append(f"seed {st['seed']} -> {self.seed}")
        if state.get("plan", self.plan) != self.plan:
            problems.append(f"plan {state['plan']} -> {self.plan}")
        packing = asdict(self.packing) if self.packing.enabled else None
        if st.get("packing", packing) != packing:
            problems.append(f"packing {st['packing']} -> {packing}")
        if problems:
            raise ValueError(
                "the data stream cannot resume exactly, the data config changed "
                "since the checkpoint: " + "; ".join(problems)
            )
        self._cursor.state = StreamState.from_dict(st)
        log.info(
            "data stream resumes at position %d (bins done %d, step %d)",
            self._cursor.state.position,
            self._cursor.state.bins_done,
            self._cursor.state.step,
        )

    def mixture_report(self) -> dict[str, Any]:
        """Per-source counts and the plan, for the run record."""
        probs = probabilities(self.plan)
        runtime = self.store.counts if self.store is not None else Counter()
        out = {}
        for name, src in self.sources.items():
            rep = {
                **self.stats.get(name, {}),
                "size": src.size,
                "planned": self.plan.get(name, 0),
                "probability": round(probs.get(name, 0.0), 6),
                "epochs": round(self.plan.get(name, 0) / max(src.size, 1), 4),
            }
            for key in ("render_error", "dropped_overlong", "truncated"):
                if runtime.get(f"{name}/{key}"):
                    rep[key] = rep.get(key, 0) + runtime[f"{name}/{key}"]
            out[name] = rep
        return out


def default_sources(data_dir: str) -> dict[str, Any]:
    """The embedded sample mixture (one epoch of each source)."""
    from pathlib import Path

    d = Path(data_dir)
    return {
        n: {"path": str(d / f"{n}.jsonl"), "format": "unified", "epochs": 1.0}
        for n in ("fc_single", "multi_turn", "chat")
    }


__all__ = ["SampleStore", "TrajectoryDataModule", "default_sources"]
