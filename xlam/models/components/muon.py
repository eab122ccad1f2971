"""Muon for the hidden weight matrices, AdamW for the rest, as one optimizer.

Muon (``torch.optim.Muon``) orthogonalises each 2-D weight's momentum update with a few
Newton-Schulz steps; it is meant for the hidden matrices only, so embeddings, the LM head
(tied or not), biases and norm weights keep AdamW. Lightning, the LR schedulers and
checkpoints see one :class:`torch.optim.Optimizer`: the two inner optimizers share its
parameter groups (the scheduler's learning rates reach both) and its state.

Muon needs each matrix's whole gradient, so it is refused where gradients are sharded
(DeepSpeed ZeRO, FSDP); DDP and single-process runs are fine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

# Parameters that stay with AdamW even when they are matrices (name fragments, lower case).
ADAMW_ONLY = ("embed", "lm_head", "wte", "wpe", "shared")


def is_hidden_matrix(name: str, param: torch.Tensor) -> bool:
    """Whether Muon updates ``param``: a 2-D weight that is not an embedding or the head."""
    return param.ndim == 2 and not any(k in name.lower() for k in ADAMW_ONLY)


class MuonAdamW(torch.optim.Optimizer):
    """``torch.optim.Muon`` on hidden matrices, ``torch.optim.AdamW`` on everything else.

    Args:
        params: Parameter groups whose ``params`` are ``(name, tensor)`` pairs (names say
            which parameters are embeddings or the head); a group's other keys (e.g.
            ``weight_decay``) apply to both of its parts.
        lr: AdamW's peak learning rate.
        muon_lr: Muon's peak learning rate (scaled per matrix by ``adjust_lr_fn``).
        betas: AdamW's betas.
        eps: AdamW's epsilon.
        weight_decay: Default decoupled weight decay of both.
        momentum: Muon's momentum.
        nesterov: Muon's Nesterov momentum.
        ns_steps: Muon's Newton-Schulz iterations.
        adjust_lr_fn: Muon's per-shape scaling: ``original`` (``None``) or
            ``match_rms_adamw`` (updates of AdamW's RMS: ``muon_lr`` near AdamW's ``lr``).
    """

    named_params = True  # configure_optimizers passes (name, tensor) pairs

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        lr: float = 1e-3,
        muon_lr: float = 0.02,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
    ) -> None:
        muon_groups, adam_groups = [], []
        for group in params:
            extra = {k: v for k, v in group.items() if k != "params"}
            named = list(group["params"])
            if any(not isinstance(p, tuple) for p in named):
                raise TypeError("MuonAdamW needs (name, parameter) pairs in each group")
            hidden = [p for n, p in named if is_hidden_matrix(n, p)]
            rest = [p for n, p in named if not is_hidden_matrix(n, p)]
            if hidden:
                muon_groups.append({**extra, "params": hidden})
            if rest:
                adam_groups.append({**extra, "params": rest})
        self._muon = (
            torch.optim.Muon(
                muon_groups,
                lr=muon_lr,
                weight_decay=weight_decay,
                momentum=momentum,
                nesterov=nesterov,
                ns_steps=ns_steps,
                adjust_lr_fn=adjust_lr_fn,
            )
            if muon_groups
            else None
        )
        self._adam = (
            torch.optim.AdamW(adam_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
            if adam_groups
            else None
        )
        self._n_muon = len(muon_groups)
        inner = [o for o in (self._muon, self._adam) if o is not None]
        # The inner optimizers' group dicts, complete with their defaults: ours are them.
        super().__init__([g for o in inner for g in o.param_groups], {})
        self._share()

    def _share(self) -> None:
        """Point the inner optimizers at our groups and state (again after a load)."""
        if self._muon is not None:
            self._muon.param_groups = self.param_groups[: self._n_muon]
            self._muon.state = self.state
        if self._adam is not None:
            self._adam.param_groups = self.param_groups[self._n_muon :]
            self._adam.state = self.state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._share()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in (self._muon, self._adam):
            if opt is not None:
                opt.step()
        return loss


__all__ = ["ADAMW_ONLY", "MuonAdamW", "is_hidden_matrix"]
