"""TrajectoryDataModule: sources → rendered samples → balanced resumable stream → batches.

The wiring only: rendering and caching live in :mod:`xlam.data.cache`, samples by stream
position in :mod:`xlam.data.store`, streaming reads in :mod:`xlam.data.sources`, the plan in
:mod:`xlam.data.mixture`, positions in :mod:`xlam.data.sampler`, bins in
:mod:`xlam.data.packing`, micro-batches and resume in :mod:`xlam.data.stream`, tensors in
:mod:`xlam.data.collate`. See ``docs/data_pipeline.md``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, replace
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from xlam.data.cache import (
    CacheInfo,
    files_fingerprint,
    memo,
    render_source,
)
from xlam.data.collate import pad_collate
from xlam.data.losses import MAX_EXAMPLES, DataLossError, SourceLedger
from xlam.data.mixture import (
    DataConfig,
    SourceSpec,
    plan_mixture,
    planned_steps,
    probabilities,
    sources_from_config,
)
from xlam.data.packing import PackingConfig
from xlam.data.preference import PAIRS_FORMAT
from xlam.data.render import RenderError, RenderOptions, truncate_sample
from xlam.data.sampler import BalancedSampler
from xlam.data.sources import StreamingSource, count_records, load_source
from xlam.data.store import (
    STREAM_CHECK_RECORDS,
    MapSource,
    SampleStore,
    StreamRender,
    fit_record,
    truncated,
)
from xlam.data.stream import (
    MicroBatchStream,
    ResumableLoader,
    StreamCursor,
    StreamState,
    TrainStream,
)
from xlam.models.components.loss import StepTokenCounter

log = logging.getLogger(__name__)


class TrajectoryDataModule(L.LightningDataModule):
    """Owns the mixture, the renderer cache and the balanced, packed, resumable stream.

    Args:
        sources: ``{name: {path, format, size?, epochs? | weight?, streaming?,
            shuffle_buffer?, max_drop_fraction?}}``.
        tokenizer_path: Folder of the tokenizer whose chat template renders the data.
        batch_size: Rows per micro-batch per rank: samples, or bins when packing.
        max_length: Longest sample in tokens (default: ``packing.seq_length`` when packing,
            else 1024); longer ones follow ``overlong``.
        overlong: ``drop``, ``truncate`` (a cut turn loses its supervision) or ``error``
            (dropped/truncated samples are counted in :meth:`mixture_report`).
        seed: Seed of the sampler, the bin order and streaming shuffle buffers.
        num_samples: Total stream length for weight-based mixtures.
        val_size: Samples per (non-streaming) source held out for validation.
        render: Options for :class:`RenderOptions`.
        num_workers: DataLoader workers.
        overfit_samples: Keep only the first N samples of each source (debugging).
        packing: ``{enabled, seq_length, window}`` (see :class:`PackingConfig`).
        cache_dir: Rendered-sample cache; ``None`` renders in memory every run.
        num_proc: Rendering processes when building the cache.
        max_drop_fraction: Share of a source that may be lost (render errors, overlong
            samples) before the run stops with :class:`~xlam.data.losses.DataLossError`;
            a source's own ``max_drop_fraction`` overrides it.
        keep_samples: Keep the embedded samples in a mixture that names sources of its own
            (:func:`~xlam.data.mixture.leave_out_samples`).
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
        max_drop_fraction: float = 0.01,
        keep_samples: bool = False,
    ) -> None:
        super().__init__()
        self.specs: list[SourceSpec] = sources_from_config(sources, keep_samples)
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
            max_drop_fraction=max_drop_fraction,
            keep_samples=keep_samples,
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
        self.pairs = self._check_pairs()
        if self.pairs:  # each side's compared turn is its last per-turn sample
            self.render_options = replace(self.render_options, mode="per_turn")
        self.num_workers = num_workers
        self.overfit_samples = overfit_samples
        self.cache_dir = cache_dir
        self.num_proc = num_proc
        self.max_drop_fraction = max_drop_fraction
        self.ledgers: dict[str, SourceLedger] = {}  # losses known before training
        self.tokenizer: Any = None
        self.sources: dict[str, Any] = {}
        self.val_samples: list[dict[str, Any]] = []
        self.stats: dict[str, dict[str, Any]] = {}
        self.cache_info: dict[str, CacheInfo] = {}
        self.plan: dict[str, int] = {}
        self.store: SampleStore | None = None
        self.sampler: BalancedSampler | None = None
        self.stream: MicroBatchStream | None = None
        self._cursor = StreamCursor()
        self._pending_state: dict[str, Any] | None = None
        self._bins: int | None = None
        self._sized_for: tuple[int, int, int] | None = None
        self._epoch_steps: int | None = None  # optimizer steps of a run sized by the plan

    def _check_pairs(self) -> bool:
        """Whether the sources are preference pairs (``format: pairs``); never mixed."""
        kinds = {s.format == PAIRS_FORMAT for s in self.specs if not s.left_out}
        if kinds != {True}:
            if True in kinds:
                raise ValueError(
                    "data.sources mixes preference pairs (format: pairs) with trajectories: "
                    "a run trains on one or the other"
                )
            return False
        if self.overlong == "truncate":
            raise ValueError(
                "data.overlong=truncate would cut a pair's rejected half: use drop or error"
            )
        return True

    # -- preparation -------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Lightning runs this on one process per node first: it builds the caches that the
        # other ranks then only read in setup().
        self.prepare()

    def _load_map(self, spec: SourceSpec) -> MapSource:
        table, info = render_source(
            spec, self.tokenizer, self.render_options, self.cache_dir, self.num_proc
        )
        self.cache_info[spec.name] = info
        ledger = self.ledgers[spec.name] = SourceLedger(spec.name, str(spec.path), info.read)
        for kind, (n, ids) in table.error_summary().items():
            ledger.add(f"render_error:{kind}", ids, n)
        lengths = table.lengths
        valid = np.flatnonzero(lengths > 0)
        ledger.rendered = len(valid)
        long = lengths[valid] > self.max_length
        if long.any():
            if self.overlong == "error":
                row = int(valid[np.flatnonzero(long)[0]])
                raise RenderError(
                    f"source {spec.name!r}: sample {table.id(row)} has "
                    f"{lengths[row]} tokens > data.max_length={self.max_length}"
                )
            keep = ~long
            if self.overlong == "drop":
                rows = valid[long]
                ids = [table.id(int(r)) for r in rows[:MAX_EXAMPLES]]
                ledger.add("dropped_overlong", ids, len(rows))
            for k in np.flatnonzero(long) if self.overlong == "truncate" else []:
                row = int(valid[k])
                # Cut here, once, to count; fetch() cuts the same way while training.
                s = table.get(row)
                t = truncate_sample(s["input_ids"], s["labels"], table.spans(row), self.max_length)
                if t.supervised:
                    keep[k] = True
                    ledger.add("truncated", s["id"])
                    ledger.turns_unsupervised += t.unsupervised_turns
                else:
                    ledger.add("truncated_unsupervised", s["id"])
            valid = valid[keep]
        if ledger.lost:
            log.warning(
                "source %s: lost %s (%d trajectories read; %.2f%% of the source, limit %g), "
                "e.g. %s",
                spec.name,
                dict(ledger.lost),
                ledger.read,
                100 * ledger.lost_fraction(),
                self._limit(spec),
                {r: ids[:2] for r, ids in ledger.examples.items()},
            )
        counts: dict[str, Any] = {"cache": "hit" if info.hit else ("built" if info.key else "off")}
        if info.scores is not None:  # read = kept + removed by data.sources.NAME.min_score
            counts["min_score"] = info.scores
        if self.val_size:
            cut = min(self.val_size, len(valid) // 2)
            for row in valid[len(valid) - cut :]:
                s = table.get(int(row))
                if len(s["input_ids"]) > self.max_length:
                    s = truncated(s, table.spans(int(row)), self.max_length)
                self.val_samples.append({**s, "source": spec.name, "position": -1})
            counts["val"] = cut
            valid = valid[: len(valid) - cut]
        usable = len(valid)
        if self.overfit_samples:
            valid = valid[: self.overfit_samples]
        if spec.size is not None:
            if spec.size > len(valid):
                raise ValueError(
                    f"source {spec.name!r}: size={spec.size} but only "
                    f"{len(valid)} samples are available"
                )
            valid = valid[: spec.size]
        counts["unused"] = usable - len(valid)  # left out by size / overfit_samples
        counts["samples"] = len(valid)
        self.stats[spec.name] = counts
        return MapSource(table, valid)

    def _limit(self, spec: SourceSpec) -> float:
        """The source's ``max_drop_fraction`` (its own, else the data-level default)."""
        if spec.max_drop_fraction is not None:
            return spec.max_drop_fraction
        return self.max_drop_fraction

    def _load_streaming(self, spec: SourceSpec) -> tuple[StreamingSource, float]:
        fp = {"files": files_fingerprint(spec.path), "format": spec.format, "name": spec.name}
        if spec.min_score is not None:  # (absent otherwise: memos of older runs stay valid)
            fp["min_score"] = spec.min_score
        size = spec.size
        if size is None:
            size = int(memo(self.cache_dir, "records", fp, lambda: count_records(spec)))
        if self.overfit_samples:
            size = min(size, self.overfit_samples)
        render = StreamRender(self.tokenizer_path, self.render_options)
        n_probe = min(size, STREAM_CHECK_RECORDS)

        def probe() -> dict[str, Any]:
            # The first records, fitted as training will: their mean length plans the run and
            # their losses are judged before training starts.
            ledger = SourceLedger(spec.name, str(spec.path))
            lens = []
            for _, t in zip(range(n_probe), load_source(spec), strict=False):
                got = fit_record(
                    render(t), render.failure, ledger, self.max_length, self.overlong, group
                )
                if got:
                    lens.append(sum(len(s["input_ids"]) for s in got))
            mean = float(np.mean(lens)) if lens else float(self.max_length)
            return {"mean": mean, "ledger": ledger.to_dict()}

        group = self.packing.seq_length if self.packing.enabled else None
        key = {
            **fp,
            "render": self.render_options.key(),
            "max_length": self.max_length,
            "overlong": self.overlong,
            "group": group,
            "records": n_probe,
            "tokenizer": self.tokenizer_path,
        }
        got = memo(self.cache_dir, "probe", key, probe)
        mean = float(got["mean"])
        self.ledgers[spec.name] = SourceLedger.from_dict(spec.name, str(spec.path), got["ledger"])
        self.stats[spec.name] = {
            "samples": size,
            "streaming": True,
            "shuffle_buffer": spec.shuffle_buffer,
            "mean_length_estimate": round(mean, 1),
            "probe": got["ledger"],
        }
        src = StreamingSource(spec, size, self.seed, 0, render)
        return src, mean

    def _check_losses(self) -> None:
        """Stop before training when a source loses more than it may, or everything.

        A source left without a usable sample would otherwise leave the mixture and the
        others would silently take its share.
        """
        problems = []
        for spec in self.specs:
            if spec.left_out:  # the config gives it no samples: its losses cost nothing
                continue
            limit = self._limit(spec)
            ledger = self.ledgers[spec.name]
            scope = f"counted over its first {ledger.read} records" if spec.streaming else ""
            msg = ledger.problem(limit, scope)
            if msg:
                problems.append(msg)
            elif self.sources[spec.name].size == 0 and not spec.left_out:
                if limit < 1.0:
                    problems.append(
                        f"source {spec.name!r} ({spec.path}) has no usable sample "
                        f"({ledger.read} trajectories read, {ledger.rendered} samples "
                        "rendered): it would leave the mixture and the other sources would "
                        f"take its share. Fix the source, leave it out with "
                        f"data.sources.{spec.name}.epochs=0 (weight=0 in a weighted "
                        f"mixture), or accept it with "
                        f"data.sources.{spec.name}.max_drop_fraction=1.0."
                    )
                else:
                    log.warning(
                        "source %s has no usable samples: it takes no part in the mixture "
                        "(max_drop_fraction=1.0)",
                        spec.name,
                    )
        if problems:
            raise DataLossError("\n".join(problems))

    def prepare(self) -> None:
        """Load (or render and cache) every source, check its losses, plan the mixture.

        Idempotent once it succeeded.

        Raises:
            DataLossError: A source loses more than its ``max_drop_fraction`` (the message
                names the rules, counts and example ids) or has no usable sample.
        """
        if self.plan:
            return
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path, trust_remote_code=False)
        means: dict[str, float] = {}
        self.val_samples = []
        for spec in self.specs:
            if spec.streaming:
                self.sources[spec.name], means[spec.name] = self._load_streaming(spec)
            else:
                self.sources[spec.name] = self._load_map(spec)
        self._check_losses()
        limit = self.packing.seq_length if self.packing.enabled else None
        limits = {s.name: self._limit(s) for s in self.specs if s.streaming}
        self.store = SampleStore(self.sources, self.max_length, self.overlong, means, limit, limits)
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
            if not self.packing.windowed:
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
        if not self.packing.windowed:
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
        trainer = getattr(self, "trainer", None)
        if stage in (None, "fit") and trainer is not None and not trainer.fast_dev_run:
            self._size_for(trainer.max_steps, trainer.world_size, trainer.accumulate_grad_batches)
        rank, world = self._rank_world()
        s = self.stream
        if s is None or (s.rank, s.world_size) != (rank, world):
            self.stream = self._make_stream(rank, world)
            batches = self.total_rows() // self.stream.span
            if self._sized_for is not None:
                # One epoch is the run (whole optimizer steps, as planned_steps counts, or
                # max_steps): it ends where training ends, so end-of-epoch validation runs.
                steps, accum = self._epoch_steps or self._sized_for[0], self._sized_for[2]
                batches = min(batches, steps * accum)
            self.stream.set_num_batches(batches)
            self.sampler = self.stream.sampler
        if self._pending_state is not None:
            self._restore(self._pending_state)
            self._pending_state = None

    def _size_for(self, max_steps: int | None, world: int, accum: int) -> None:
        """Size the plan for the trainer: ``max_steps`` when given, else one pass of the plan.

        Without ``max_steps`` one epoch of the train loader is the run (``max_epochs=1``), so
        the trainer needs no step count written into it.
        """
        key = (max_steps if max_steps and max_steps > 0 else -1, world, accum)
        if self._sized_for == key:
            return
        if key[0] > 0:
            self.plan_for_steps(key[0], world, accum)
            self._epoch_steps = None
            steps = key[0]
        else:
            steps = self._epoch_steps = self.planned_steps(world, accum)
        self._sized_for = key
        self.stream = None
        log.info(
            "plan: %d samples %s -> %d optimizer steps (batch %d x world %d x accum %d)",
            self.total_samples,
            self.plan,
            steps,
            self.batch_size,
            world,
            accum,
        )

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

    def train_dataloader(self) -> StepTokenCounter:
        if self.stream is None or self.store is None:
            self.setup("fit")
        assert self.stream is not None and self.store is not None
        dataset = TrainStream(
            self.stream, self.store, self.pad_id, self._cursor, self.packing.pad_to_multiple_of
        )
        # Each micro-batch carries its optimizer step's supervised-token count: the loss is
        # a token mean over the whole step (xlam/models/components/loss.py).
        trainer = getattr(self, "trainer", None)
        accum = trainer.accumulate_grad_batches if trainer is not None else 1
        count = count_pairs if self.pairs else None  # a preference loss is a mean over pairs
        return StepTokenCounter(ResumableLoader(dataset, self.num_workers), accum, count)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_samples:
            return []
        pad, multiple = self.pad_id, self.packing.pad_to_multiple_of
        return DataLoader(
            self.val_samples,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=lambda b: pad_collate(b, pad, multiple),
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Called for the batch about to reach the model (not for prefetched ones), so the
        # state saved in a checkpoint points exactly past the trained samples.
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training and "stream_state" in batch:
            self._cursor.trainer = trainer
            state = StreamState.from_dict(batch["stream_state"])
            self._cursor.commit(state, keep=trainer.accumulate_grad_batches)
        return batch

    # -- state ---------------------------------------------------------------------------
    @property
    def stream_state(self) -> StreamState:
        """Where the stream stands: past the last micro-batch handed to the model."""
        return self._cursor.state

    def state_dict(self) -> dict[str, Any]:
        if not self.plan:
            return {}
        st = self._cursor.resumable()
        return {
            "stream": {
                **st.to_dict(),
                "consumed": sum(st.seen.values()),
                "seed": self.seed,
                "total": self.total_samples,
                "packing": self._packing_key(),
            },
            "plan": dict(self.plan),
        }

    def _packing_key(self) -> dict[str, Any] | None:
        """How rows are formed, as a resumed stream must find it unchanged."""
        if not self.packing.windowed:
            return None
        key = asdict(self.packing)
        if self.packing.enabled:
            del key["group_by_length"]  # as checkpoints saved before it existed
        else:
            # a grouped window's order depends on the rows of a global micro-batch
            _, world = self._rank_world()
            key["rows_per_micro_batch"] = self.batch_size * world
        return key

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.stream is None:
            self._pending_state = state_dict
        else:
            self._restore(state_dict)

    def _restore(self, state: dict[str, Any]) -> None:
        st = state["stream"] if "stream" in state else state["sampler"]  # before 2026-12
        problems = []
        if st.get("seed", self.seed) != self.seed:
            problems.append(f"seed {st['seed']} -> {self.seed}")
        if state.get("plan", self.plan) != self.plan:
            problems.append(f"plan {state['plan']} -> {self.plan}")
        packing = self._packing_key()
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
        """Per-source counts, losses per rule and the plan, for the run record.

        Non-streaming sources balance exactly: ``rendered == samples + val + unused +
        sum(dropped)`` minus the ``render_error:*`` rules, which count trajectories
        (``read == rendered + render_error`` with one sample per trajectory). Streaming
        sources report what this process read while training (``probe``: the records
        judged before training).
        """
        probs = probabilities(self.plan)
        runtime = self.store.ledgers if self.store is not None else {}
        specs = {s.name: s for s in self.specs}
        out = {}
        for name, src in self.sources.items():
            ledger = runtime.get(name) if src.streaming else self.ledgers.get(name)
            rep = {
                **(ledger.to_dict() if ledger is not None else {}),
                **self.stats.get(name, {}),
                "max_drop_fraction": self._limit(specs[name]),
                "size": src.size,
                "planned": self.plan.get(name, 0),
                "probability": round(probs.get(name, 0.0), 6),
                "epochs": round(self.plan.get(name, 0) / max(src.size, 1), 4),
            }
            out[name] = rep
        return out


def count_pairs(batch: dict[str, Any]) -> int:
    """Preference pairs in a batch (one sample each)."""
    return len(batch["ids"])


def default_sources(data_dir: str) -> dict[str, Any]:
    """The embedded sample mixture (one epoch of each source)."""
    from pathlib import Path

    d = Path(data_dir)
    return {
        n: {"path": str(d / f"{n}.jsonl"), "format": "unified", "epochs": 1.0}
        for n in ("fc_single", "multi_turn", "chat")
    }


__all__ = ["TrajectoryDataModule", "count_pairs", "default_sources"]
