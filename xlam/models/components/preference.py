"""Preference losses on sequence log-probabilities: sigmoid DPO, IPO, SimPO (pure torch).

A pair's score is the log-probability the model gives its compared assistant turn: the sum
of its supervised token log-probs (the mean for SimPO, which normalises by length). With
``z = (log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected))``:

* ``sigmoid`` (DPO, Rafailov et al. 2023): ``−(1−ε)·log σ(βz) − ε·log σ(−βz)`` (``ε`` the
  label smoothing, conservative DPO);
* ``ipo`` (Azar et al. 2023): ``(z − 1/(2β))²``;
* ``simpo`` (Meng et al. 2024), reference-free: ``−(1−ε)·log σ(β·(ā_c − ā_r) − γ) − ε·log
  σ(−(β·(ā_c − ā_r) − γ))`` with ``ā`` the mean token log-prob.

Rewards are ``β·(log π − log π_ref)`` (``β·ā`` for SimPO); the accuracy counts pairs whose
chosen reward is the higher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from xlam.data.labels import IGNORE_INDEX

LOSSES = ("sigmoid", "ipo", "simpo")
REFERENCES = ("auto", "lora_disabled", "frozen_copy", "precomputed")


@dataclass
class PreferenceConfig:
    """``objective`` of a preference run (``conf/objective/dpo.yaml``).

    Attributes:
        loss: ``sigmoid`` (DPO), ``ipo`` or ``simpo`` (reference-free, length-normalised).
        beta: Inverse temperature of the implicit reward.
        label_smoothing: ``ε`` of conservative DPO / SimPO (0: none); not for IPO.
        gamma: SimPO's target reward margin.
        reference: ``lora_disabled`` (the policy with its adapters switched off),
            ``frozen_copy`` (a frozen copy of the initial policy), ``precomputed``
            (log-probs of the initial policy computed once before training, kept in
            ``reference_cache``), or ``auto`` (``lora_disabled`` with LoRA, else
            ``frozen_copy``). SimPO uses none.
        reference_cache: The file of precomputed reference log-probs (by pair).
    """

    loss: str = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    gamma: float = 0.5
    reference: str = "auto"
    reference_cache: str | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"objective.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.reference not in REFERENCES:
            raise ValueError(
                f"objective.reference must be one of {REFERENCES}, got {self.reference!r}"
            )
        if self.beta <= 0:
            raise ValueError(f"objective.beta must be > 0, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(
                f"objective.label_smoothing must be in [0, 0.5), got {self.label_smoothing}"
            )
        if self.loss == "ipo" and self.label_smoothing:
            raise ValueError("objective.label_smoothing does not apply to loss=ipo")

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> PreferenceConfig:
        return cls(**{k: v for k, v in (cfg or {}).items() if k != "name"})

    @property
    def uses_reference(self) -> bool:
        return self.loss != "simpo"


def sequence_logps(
    token_logps: torch.Tensor,
    labels: torch.Tensor,
    sample_index: torch.Tensor,
    pair_side: torch.Tensor,
    n_pairs: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count of the supervised token log-probs of each pair's two sides.

    Args:
        token_logps: ``(batch, seq - 1)`` log-prob of each next token (the layout of
            :func:`~xlam.models.causal_lm.token_losses`, negated).
        labels: ``(batch, seq)``; ``IGNORE_INDEX`` where not supervised.
        sample_index: ``(batch, seq)`` pair of each token (:mod:`xlam.data.collate`).
        pair_side: ``(batch, seq)`` 0 chosen, 1 rejected.
        n_pairs: Pairs in the batch.

    Returns:
        ``(sums, counts)``, each ``(n_pairs, 2)`` (column 0 chosen, 1 rejected).
    """
    mask = labels[:, 1:] != IGNORE_INDEX
    slot = (sample_index[:, 1:] * 2 + pair_side[:, 1:])[mask]
    values = token_logps[mask].double()  # long turns: fp32 sums would lose digits
    sums = torch.zeros(2 * n_pairs, dtype=values.dtype, device=values.device)
    sums = sums.index_add(0, slot, values)
    counts = torch.zeros_like(sums).index_add(0, slot, torch.ones_like(values))
    return sums.view(n_pairs, 2), counts.view(n_pairs, 2)


def preference_loss(
    policy: torch.Tensor, reference: torch.Tensor | None, cfg: PreferenceConfig
) -> dict[str, torch.Tensor]:
    """Per-pair losses and rewards.

    Args:
        policy: ``(n, 2)`` policy scores (chosen, rejected): summed log-probs, or mean
            token log-probs for SimPO.
        reference: ``(n, 2)`` reference summed log-probs; ``None`` for SimPO.
        cfg: The objective.

    Returns:
        ``losses`` ``(n,)`` and ``rewards`` ``(n, 2)`` (detached).
    """
    beta, eps = cfg.beta, cfg.label_smoothing
    if cfg.loss == "simpo":
        rewards = beta * policy
        z = rewards[:, 0] - rewards[:, 1] - cfg.gamma
        losses = -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)
        return {"losses": losses, "rewards": rewards.detach()}
    if reference is None:
        raise ValueError(f"loss={cfg.loss} needs reference log-probs")
    ratios = policy - reference.to(policy.dtype)
    h = ratios[:, 0] - ratios[:, 1]
    if cfg.loss == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        losses = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    return {"losses": losses, "rewards": (beta * ratios).detach()}


__all__ = ["LOSSES", "REFERENCES", "PreferenceConfig", "preference_loss", "sequence_logps"]
