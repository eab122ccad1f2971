"""TrajectoryDataModule: sources → rendered samples → balanced resumable stream → batches."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, IterableDataset

from xlam.data.collate import pad_collate
from xlam.data.mixture import SourceSpec, plan_mixture, planned_steps, sources_from_config
from xlam.data.render import Renderer, RenderError, RenderOptions
from xlam.data.sampler import BalancedSampler
from xlam.data.sources import load_source

log = logging.getLogger(__name__)


class _StreamDataset(IterableDataset):
    """Yields this rank's samples from the sampler, starting at its current position."""

    def __init__(self, dm: TrajectoryDataModule) -> None:
        self.dm = dm

    def __iter__(self) -> Iterator[dict[str, Any]]:
        sampler = self.dm.sampler
        # Iterate a copy positioned at the consumed count: the trainer prefetches, so the
        # consumed count is advanced only when a batch reaches the model.
        it = BalancedSampler(sampler.sizes, sampler.planned, sampler.seed, sampler.rank,
                             sampler.world_size)
        it.consumed = sampler.consumed
        it._order = sampler._order
        for ref in it:
            s = self.dm.samples[ref.source][ref.index]
            yield {**s, "position": ref.position}

    def __len__(self) -> int:
        return len(self.dm.sampler) - self.dm.sampler.consumed


class TrajectoryDataModule(L.LightningDataModule):
    """Owns the mixture, the renderer and the balanced multi-source sampler.

    Args:
        sources: ``{name: {path, format, size?, epochs? | weight?}}``.
        tokenizer_path: Folder of the tokenizer whose chat template renders the data.
        batch_size: Samples per micro-batch per rank.
        max_length: Longest sample in tokens; longer ones follow ``overlong``.
        overlong: ``drop`` or ``error`` for samples longer than ``max_length``.
        seed: Seed of the sampler.
        num_samples: Total stream length for weight-based mixtures.
        val_size: Samples per source held out for validation (taken before sampling).
        render: Options for :class:`RenderOptions`.
        num_workers: DataLoader workers.
        overfit_samples: Keep only the first N samples of each source (debugging).
    """

    def __init__(
        self,
        sources: dict[str, Any],
        tokenizer_path: str,
        batch_size: int = 8,
        max_length: int = 1024,
        overlong: str = "drop",
        seed: int = 0,
        num_samples: int | None = None,
        val_size: int = 0,
        render: dict[str, Any] | None = None,
        num_workers: int = 0,
        overfit_samples: int | None = None,
    ) -> None:
        super().__init__()
        if overlong not in ("drop", "error"):
            raise ValueError(f"overlong must be 'drop' or 'error', got {overlong!r}")
        self.specs: list[SourceSpec] = sources_from_config(sources)
        if not self.specs:
            raise ValueError("data.sources is empty: give at least one source")
        self.tokenizer_path = str(tokenizer_path)
        self.batch_size = batch_size
        self.max_length = max_length
        self.overlong = overlong
        self.seed = seed
        self.num_samples = num_samples
        self.val_size = val_size
        self.render_options = RenderOptions(**(render or {}))
        self.num_workers = num_workers
        self.overfit_samples = overfit_samples
        self.samples: dict[str, list[dict[str, Any]]] = {}
        self.val_samples: list[dict[str, Any]] = []
        self.stats: dict[str, dict[str, int]] = {}
        self.plan: dict[str, int] = {}
        self.sampler: BalancedSampler | None = None
        self.tokenizer: Any = None
        self._pending_state: dict[str, Any] | None = None

    # -- preparation -------------------------------------------------------------------
    def _render_source(self, spec: SourceSpec, renderer: Renderer) -> list[dict[str, Any]]:
        counts: Counter[str] = Counter()
        out: list[dict[str, Any]] = []
        for traj in load_source(spec):
            counts["read"] += 1
            try:
                rendered = renderer.render(traj)
            except RenderError as e:
                counts["render_error"] += 1
                log.warning("source %s: %s", spec.name, e)
                continue
            for s in rendered:
                if len(s) > self.max_length:
                    if self.overlong == "error":
                        raise RenderError(
                            f"{s.id}: {len(s)} tokens > data.max_length={self.max_length}"
                        )
                    counts["dropped_overlong"] += 1
                    continue
                out.append(
                    {"id": s.id, "source": spec.name, "input_ids": s.input_ids,
                     "labels": s.labels}
                )
        counts["samples"] = len(out)
        self.stats[spec.name] = dict(counts)
        if counts["render_error"] or counts["dropped_overlong"]:
            log.warning("source %s: %s", spec.name, dict(counts))
        return out

    def prepare(self) -> None:
        """Load, render and plan every source (idempotent; rank independent)."""
        if self.plan:
            return
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
        renderer = Renderer(self.tokenizer, self.render_options)
        for spec in self.specs:
            samples = self._render_source(spec, renderer)
            if self.val_size:
                cut = min(self.val_size, len(samples) // 2)
                self.val_samples.extend({**s, "position": -1} for s in samples[-cut:])
                samples = samples[: len(samples) - cut]
            if self.overfit_samples:
                samples = samples[: self.overfit_samples]
            if spec.size is not None:
                if spec.size > len(samples):
                    raise ValueError(
                        f"source {spec.name!r}: size={spec.size} but only {len(samples)} "
                        "samples are available"
                    )
                samples = samples[: spec.size]
            self.samples[spec.name] = samples
        sizes = {k: len(v) for k, v in self.samples.items()}
        self.plan = plan_mixture(self.specs, sizes, self.num_samples)
        log.info("mixture plan (samples per source): %s", self.plan)

    def set_num_samples(self, num_samples: int) -> None:
        """Rescale the plan to a total stream length (used when ``max_steps`` is given)."""
        self.num_samples = num_samples
        sizes = {k: len(v) for k, v in self.samples.items()}
        self.plan = plan_mixture(self.specs, sizes, num_samples)

    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        rank, world = self._rank_world()
        s = self.sampler
        if s is not None and (s.rank, s.world_size, s.planned) == (rank, world, self.plan):
            return
        sizes = {k: len(v) for k, v in self.samples.items()}
        self.sampler = BalancedSampler(sizes, self.plan, self.seed, rank, world)
        if self._pending_state is not None:
            self.sampler.load_state_dict(self._pending_state)
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
        self.prepare()
        return planned_steps(self.total_samples, self.batch_size, world_size, accumulate)

    # -- loaders -----------------------------------------------------------------------
    def _collate(self) -> Any:
        return partial(pad_collate, pad_id=self.tokenizer.pad_token_id or 0)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            _StreamDataset(self),
            batch_size=self.batch_size,
            collate_fn=self._collate(),
            num_workers=self.num_workers,
            drop_last=True,
        )

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_samples:
            return []
        return DataLoader(
            self.val_samples,
            batch_size=self.batch_size,
            collate_fn=self._collate(),
            shuffle=False,
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Called for the batch about to reach the model (not for prefetched ones), so the
        # sampler state saved in a checkpoint points exactly past the trained samples.
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training and self.sampler is not None:
            positions = [p for p in batch.get("positions", []) if p >= 0]
            if positions:
                self.sampler.consumed = max(positions) // self.sampler.world_size + 1
        return batch

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.sampler is None:
            return {}
        return {"sampler": self.sampler.state_dict(), "plan": self.plan}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.sampler is None:
            self._pending_state = state_dict["sampler"]
        else:
            self.sampler.load_state_dict(state_dict["sampler"])

    def mixture_report(self) -> dict[str, Any]:
        """Per-source counts for the run record."""
        return {
            name: {**self.stats.get(name, {}), "planned": self.plan.get(name, 0),
                   "size": len(self.samples.get(name, []))}
            for name in self.samples
        }


def default_sources(data_dir: str | Path) -> dict[str, Any]:
    """The embedded sample mixture (one epoch of each source)."""
    d = Path(data_dir)
    return {n: {"path": str(d / f"{n}.jsonl"), "format": "unified", "epochs": 1.0}
            for n in ("fc_single", "multi_turn", "chat")}


__all__ = ["TrajectoryDataModule", "default_sources"]
