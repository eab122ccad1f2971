"""CausalLMModule: a Hugging Face causal LM trained on rendered trajectories."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from xlam.data.render import IGNORE_INDEX
from xlam.models.components.build import build_causal_lm
from xlam.models.components.schedules import build_scheduler, param_groups


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token cross entropy of next-token prediction; 0 where unsupervised.

    Returns:
        A ``(batch, seq - 1)`` tensor.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    loss = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return loss.view(shift_labels.shape)


class CausalLMModule(L.LightningModule):
    """Wraps a causal LM; the model is built in :meth:`configure_model`.

    Args:
        path: Local folder of a pretrained model, or ``None`` to build from ``tiny_config``.
        tokenizer_path: Folder of the tokenizer (its size sets a config-built vocabulary).
        tiny_config: Config fields of a random-initialised model.
        dtype: Parameter dtype when loading.
        attn_implementation: Attention kernel for transformers.
        optimizer: Partial of a torch optimizer (called with parameter groups).
        weight_decay: Decay for weight matrices (never for biases and norms).
        scheduler: ``{name, warmup_steps | warmup_ratio, min_lr_ratio}``.
        gradient_checkpointing: Trade compute for activation memory.
        seed: Seed of a config-built model's initialisation.
    """

    def __init__(
        self,
        path: str | None = None,
        tokenizer_path: str | None = None,
        tiny_config: dict[str, Any] | None = None,
        dtype: str = "float32",
        attn_implementation: str | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        weight_decay: float = 0.0,
        scheduler: dict[str, Any] | None = None,
        gradient_checkpointing: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimizer_factory = optimizer
        self.scheduler_cfg = dict(scheduler or {"name": "cosine", "warmup_ratio": 0.05})
        self.model: torch.nn.Module | None = None
        self._t_last: float | None = None

    def configure_model(self) -> None:
        # Idempotent: Lightning may call it more than once (and ZeRO-3 needs it lazy).
        if self.model is not None:
            return
        from transformers import AutoTokenizer

        hp = self.hparams
        tok = AutoTokenizer.from_pretrained(hp.tokenizer_path or hp.path)
        self.model = build_causal_lm(
            hp.path, len(tok), hp.tiny_config, hp.dtype, hp.attn_implementation, hp.seed
        )
        if hp.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
            self.model.config.use_cache = False

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def model_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = self(batch["input_ids"], batch["attention_mask"])
        losses = token_losses(logits, batch["labels"])
        mask = (batch["labels"][:, 1:] != IGNORE_INDEX).float()
        n_sup = mask.sum()
        loss = losses.sum() / n_sup.clamp(min=1)
        return {"loss": loss, "losses": losses, "mask": mask, "n_sup": n_sup}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.model_step(batch)
        now = time.perf_counter()
        n_tok = batch["attention_mask"].sum()
        bs = batch["input_ids"].size(0)
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=bs)
        if self._t_last is not None:
            dt = max(now - self._t_last, 1e-9)
            self.log("train/tokens_per_s", n_tok.float() / dt, prog_bar=True, batch_size=bs)
            self.log("train/supervised_tokens_per_s", out["n_sup"] / dt, batch_size=bs)
        self._t_last = now
        numel = batch["attention_mask"].numel()
        self.log("train/padding_ratio", 1.0 - n_tok.float() / numel, batch_size=bs)
        self.log("train/supervised_ratio", out["n_sup"] / n_tok.clamp(min=1), batch_size=bs)
        sched = self.lr_schedulers()
        if sched is not None:
            self.log("train/lr", sched.get_last_lr()[0], prog_bar=True, batch_size=bs)
        return out["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.model_step(batch)
        self.log("val/loss", out["loss"], prog_bar=True, batch_size=batch["input_ids"].size(0),
                 sync_dist=True)
        return out["loss"]

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError("model.optimizer is not set")
        groups = param_groups(self.model, self.hparams.weight_decay)
        opt = self.optimizer_factory(groups)
        total = int(self.trainer.estimated_stepping_batches)
        cfg = self.scheduler_cfg
        warmup = cfg.get("warmup_steps")
        if warmup is None:
            warmup = int(round(cfg.get("warmup_ratio", 0.0) * total))
        sched = build_scheduler(opt, cfg.get("name", "cosine"), int(warmup), total,
                                cfg.get("min_lr_ratio", 0.0))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
