"""DPOModule: preference optimisation (DPO, IPO, SimPO) of the causal LM on rendered pairs.

The module is :class:`~xlam.models.causal_lm.CausalLMModule` (model building, LoRA, packing
check, strategies, checkpoints, export) with another step: a batch holds preference pairs
(:mod:`xlam.data.render.pairs`, both halves in one packed row), the policy's summed
log-probs of each side's compared turn come from the same per-token losses SFT computes,
and the loss is the mean over the optimizer step's pairs, whatever the split into
micro-batches and ranks (the stream counts pairs: ``datamodule.count_pairs``). The math is
in :mod:`xlam.models.components.preference`.

References (``objective.reference``): ``lora_disabled`` runs the same model with its
adapters switched off (no second model in memory), ``frozen_copy`` keeps a frozen copy of
the initial policy (under ZeRO-3 partitioned like the policy, in an engine of its own; not
under FSDP), and
``precomputed`` computes the initial policy's log-probs of every pair once before training
into ``objective.reference_cache`` (read back on resume).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from xlam.data.collate import packed_collate
from xlam.data.packing import best_fit_decreasing
from xlam.models.causal_lm import CausalLMModule
from xlam.models.components.chunked_ce import LossHead
from xlam.models.components.loss import step_loss_scale
from xlam.models.components.preference import (
    PreferenceConfig,
    preference_loss,
    sequence_logps,
)
from xlam.utils.strategy import strategy_kind

log = logging.getLogger(__name__)

# _win_stats of a preference step: summed over the step's pairs, then divided by the count.
STATS = ("loss", "pairs", "rewards/chosen", "rewards/rejected", "rewards/accuracy")
STATS += ("logps/chosen", "logps/rejected")


def pair_key(source: str, pair_id: str) -> str:
    """Key of a pair in the precomputed reference (ids are unique within a source)."""
    return f"{source}/{pair_id}"


class DPOModule(CausalLMModule):
    """A causal LM trained on preference pairs.

    Args:
        *args: Those of :class:`CausalLMModule`.
        objective: The ``objective`` node (:class:`PreferenceConfig`).
        **kwargs: Those of :class:`CausalLMModule`.
    """

    def __init__(self, *args: Any, objective: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.hparams.get("copy_weight", 1.0) != 1.0:
            raise ValueError(
                "model.copy_weight weighs the supervised-token loss of SFT; the preference "
                "objective has none: leave model.copy_weight=1"
            )
        self.objective = PreferenceConfig.from_config(objective)
        ref = self.objective.reference
        if ref == "auto":
            ref = "lora_disabled" if self.lora.enabled else "frozen_copy"
        if not self.objective.uses_reference:
            ref = "none"
        if ref == "lora_disabled" and not self.lora.enabled:
            raise ValueError(
                "objective.reference=lora_disabled needs model.lora.enabled=true (the "
                "reference is the model with its adapters off); use frozen_copy or precomputed"
            )
        if ref == "precomputed" and not self.objective.reference_cache:
            raise ValueError("objective.reference=precomputed needs objective.reference_cache")
        self.reference = ref
        self._ref_model: torch.nn.Module | None = None  # frozen_copy; not a submodule
        self._ref_engine: Any = None  # ZeRO-3: the DeepSpeed engine that shards _ref_model
        self._ref_head: LossHead | None = None
        self._ref_table: dict[str, torch.Tensor] | None = None  # precomputed

    # -- the reference -----------------------------------------------------------------
    def configure_model(self) -> None:
        if self.model is not None:
            return
        super().configure_model()
        if self.reference != "frozen_copy":
            return
        strategy = self._trainer.strategy if self._trainer is not None else None
        if strategy_kind(strategy) == "fsdp":
            raise ValueError(
                "objective.reference=frozen_copy cannot copy a sharded model (FSDP): use "
                "objective.reference=precomputed, or LoRA with objective.reference=lora_disabled"
            )
        if any(hasattr(p, "ds_id") for p in self.model.parameters()):
            # ZeRO-3 loaded the weights into partitions (a copy would copy empty tensors):
            # the same build again, in the same sharded context, is the initial policy.
            policy, head = self.model, self.loss_head
            self.model = None
            with torch.random.fork_rng():  # LoRA's init: the run's random stream unchanged
                super().configure_model()
            ref = self.model
            self.model = policy
            object.__setattr__(self, "loss_head", head)
        else:
            ref = copy.deepcopy(self.model)
        ref.eval().requires_grad_(False)
        # Held outside the module tree: not in state dicts, the optimizer or the export.
        object.__setattr__(self, "_ref_model", ref)
        head = next((m for m in ref.modules() if isinstance(m, LossHead)), None)
        object.__setattr__(self, "_ref_head", head)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self._check_data(getattr(self.trainer, "datamodule", None))
        if self._ref_model is not None:
            if getattr(self.trainer.strategy, "zero_stage_3", False):
                # partitioned across the ranks as the policy is; its hooks gather each layer
                engine = self.trainer.strategy.inference_engine(self._ref_model)
                object.__setattr__(self, "_ref_engine", engine)
                held = sum(p.ds_tensor.numel() for p in self._ref_model.parameters())
                total = sum(p.ds_numel for p in self._ref_model.parameters())
                log.info("frozen reference: ZeRO-3 partitions, %d of %d on this rank", held, total)
            else:
                self._ref_model.to(self.device)
        if self.reference == "precomputed":  # before the sanity validation needs it
            self._load_reference()

    def _check_data(self, dm: Any) -> None:
        """Refuse data settings this objective cannot train on (before any forward)."""
        if dm is None:
            return
        shared = getattr(getattr(dm, "render_options", None), "shared_history", False)
        if shared and self.hparams.attn_implementation != "xlam_segments":
            # Other kernels read a branch's positions as a new sequence: it would not see
            # the history it continues.
            raise ValueError(
                "data.render.shared_history=true needs model.attn_implementation=xlam_segments "
                f"(got {self.hparams.attn_implementation!r}): only it attends from a pair's "
                "rejected side to the history both sides share"
            )
        streaming = [s.name for s in getattr(dm, "specs", []) if s.streaming and not s.left_out]
        if streaming and self.reference == "precomputed":
            # It would read every pair of a source meant never to be held whole.
            raise ValueError(
                f"objective.reference=precomputed scores every pair before training, but "
                f"{streaming} stream (streaming: true): use objective.reference=frozen_copy, "
                "or LoRA with objective.reference=lora_disabled"
            )

    @contextlib.contextmanager
    def _as_reference(self) -> Iterator[None]:
        """Within: ``self.model`` (and the loss head) compute the reference, without grad."""
        with torch.no_grad():
            if self.reference == "lora_disabled":
                with self.model.disable_adapter():
                    yield
                return
            policy, head = self._modules["model"], self.loss_head
            self._modules["model"] = self._ref_model
            object.__setattr__(self, "loss_head", self._ref_head)
            try:
                yield
            finally:
                self._modules["model"] = policy
                object.__setattr__(self, "loss_head", head)

    def reference_logps(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """``(pairs, 2)`` summed reference log-probs of the batch; ``None`` for SimPO."""
        if self.reference == "none":
            return None
        if self.reference == "precomputed":
            if self._ref_table is None:
                raise RuntimeError("the precomputed reference is not loaded (on_fit_start)")
            keys = [pair_key(s, i) for s, i in zip(batch["sources"], batch["ids"], strict=True)]
            rows = [self._ref_table[k] for k in keys]
            if not rows:
                return torch.zeros(0, 2, device=self.device)
            return torch.stack(rows).to(self.device)
        with self._as_reference():
            return self._pair_logps(batch)[0]

    def _pair_logps(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        if "pair_side" not in batch:
            raise ValueError(
                "objective=dpo trains on preference pairs: give data sources with "
                "format: pairs (docs/training.md#dpo)"
            )
        out = self.model_step(batch)
        sums, counts = sequence_logps(
            -out["losses"],
            batch["labels"],
            batch["sample_index"],
            batch["pair_side"],
            len(batch["ids"]),
        )
        return sums, counts, out

    # -- the step ------------------------------------------------------------------------
    def pair_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Losses, rewards and log-probs of a batch of pairs.

        Returns:
            ``losses`` ``(n,)``, ``rewards`` and ``logps`` ``(n, 2)``, the per-token
            ``token_losses`` and ``stats`` (the :data:`STATS` sums of the batch).
        """
        ref = self.reference_logps(batch)
        sums, counts, out = self._pair_logps(batch)
        policy = sums / counts.clamp(min=1) if self.objective.loss == "simpo" else sums
        res = preference_loss(policy, ref, self.objective)
        rewards = res["rewards"]
        logps = sums.detach()
        stats = torch.stack(
            [
                res["losses"].detach().sum(),
                torch.tensor(float(len(sums)), device=sums.device),
                rewards[:, 0].sum(),
                rewards[:, 1].sum(),
                (rewards[:, 0] > rewards[:, 1]).float().sum(),
                logps[:, 0].sum(),
                logps[:, 1].sum(),
            ]
        ).double()
        return {**res, "logps": logps, "token_losses": out["losses"], "stats": stats}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        self._check_packing_once(batch)
        out = self.pair_step(batch)
        world, accum = self._world_accum()
        n_step = self._step_tokens(batch, out["stats"][1])  # pairs of the step (count_pairs)
        loss_sum = out["losses"].sum()
        loss = loss_sum * step_loss_scale(world, accum, n_step).to(loss_sum.dtype)
        self._add_to_window(batch, batch_idx, out["stats"], out["token_losses"])
        return {"loss": loss}

    def _log_window(self, stats: list[float]) -> None:
        n = max(stats[1], 1.0)
        bar = {"prog_bar": True, "on_step": True, "on_epoch": False}
        self.log("train/loss", stats[0] / n, **bar)
        for name, value in zip(STATS[2:], stats[2:], strict=True):
            self.log(f"train/{name}", value / n, on_step=True, on_epoch=False)
        margin = (stats[2] - stats[3]) / n
        self.log("train/rewards/margins", margin, on_step=True, on_epoch=False)
        self.log("train/pairs", stats[1], on_step=True, on_epoch=False)  # of the step

    def _check_packing_once(self, batch: dict[str, Any]) -> None:
        # Each half of a pair is a sequence of its own: the check compares halves.
        if self._packing_check_pending and "pair_side" in batch:
            halves = batch["sample_index"] * 2 + batch["pair_side"]
            batch = {**batch, "sample_index": torch.where(batch["pair_side"] >= 0, halves, -1)}
        super()._check_packing_once(batch)

    # -- validation --------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val = torch.zeros(len(STATS), dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.pair_step(batch)
        self._val += out["stats"]
        return out["losses"].mean()

    def on_validation_epoch_end(self) -> None:
        total = self._all_sum(self._val).tolist()
        n = total[1]
        if n > 0:
            self.log("val/loss", total[0] / n, prog_bar=True, sync_dist=True)
            self.log("val/rewards/accuracy", total[4] / n, sync_dist=True)
            self.log("val/rewards/margins", (total[2] - total[3]) / n, sync_dist=True)

    # -- precomputed reference ---------------------------------------------------------
    def _load_reference(self) -> None:
        """Read the precomputed reference, computing it first on a fresh run."""
        path = Path(self.objective.reference_cache)
        if not path.is_file():
            if getattr(self.trainer, "ckpt_path", None):
                raise FileNotFoundError(
                    f"resuming a run with objective.reference=precomputed, but {path} is gone: "
                    "its log-probs were those of the initial model, which is no longer here"
                )
            self._precompute(path)
        self.trainer.strategy.barrier()
        table = torch.load(path, map_location="cpu", weights_only=True)
        self._ref_table = dict(zip(table["keys"], table["logps"], strict=True))
        log.info("reference log-probs of %d pairs from %s", len(self._ref_table), path)

    def _precompute(self, path: Path) -> None:
        """One pass of the initial policy over every pair (train and validation), sharded
        over ranks, gathered and written by rank 0."""
        dm = self.trainer.datamodule
        samples = []
        for name, src in dm.sources.items():
            samples += [{**src.table.get(int(r)), "source": name} for r in src.rows]
        samples += list(dm.val_samples)
        world, rank = self.trainer.world_size, self.trainer.global_rank
        per_batch = max(dm.batch_size, 1)
        # Rows as full as training's (fewer, longer forwards), dealt to ranks.
        width = dm.packing.seq_length if dm.packing.enabled else dm.max_length
        rows = best_fit_decreasing([len(s["input_ids"]) for s in samples], width)
        mine = rows[rank::world]
        # Every rank runs the same number of forwards (ZeRO-3 gathers weights in each).
        steps = -(-len(rows) // (world * per_batch))
        keys: list[str] = []
        logps: list[torch.Tensor] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self.trainer.precision_plugin.forward_context():
                for k in range(steps):
                    chunk = mine[k * per_batch : (k + 1) * per_batch] or rows[:1]
                    real = k * per_batch < len(mine)
                    chunk = [[samples[i] for i in row] for row in chunk]
                    batch = packed_collate(chunk, dm.pad_id)
                    batch = {
                        key: v.to(self.device) if isinstance(v, torch.Tensor) else v
                        for key, v in batch.items()
                    }
                    sums = self._pair_logps(batch)[0].float().cpu()
                    if real:  # sums are in the collate's order: rows, then samples
                        keys += [pair_key(s["source"], s["id"]) for row in chunk for s in row]
                        logps += list(sums)
        finally:
            self.model.train(was_training)
        got = [(keys, logps)]
        if world > 1:
            got = [None] * world
            torch.distributed.all_gather_object(got, (keys, logps))
        if self.trainer.is_global_zero:
            all_keys = [k for ks, _ in got for k in ks]
            all_logps = torch.stack([v for _, vs in got for v in vs])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            torch.save({"keys": all_keys, "logps": all_logps}, tmp)
            tmp.replace(path)
            log.info("precomputed reference log-probs of %d pairs -> %s", len(all_keys), path)


__all__ = ["DPOModule", "pair_key"]
