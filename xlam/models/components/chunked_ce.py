"""Cross-entropy through the LM head in chunks of tokens, without the full logits.

With a 150k-token vocabulary the ``[tokens, vocab]`` logits (and their fp32 copy for the
softmax) are most of a step's activation memory. :func:`chunked_cross_entropy` computes the
per-token losses chunk by chunk and, in backward, recomputes each chunk's logits to form its
gradient: at most ``chunk × vocab`` logits exist at a time. Loss and gradients are those of
``F.cross_entropy(F.linear(hidden, weight, bias).float(), targets)`` (the logits are
computed in the hidden states' dtype, then upcast, as the plain path does).

:class:`LossHead` puts it inside the model's own forward: the LM head (an ``nn.Linear``)
gets this class, so with ``targets`` set its forward returns per-token losses in place of
logits. Parameters, names and weight tying are unchanged, and the head still runs inside the
model's forward, where FSDP and DeepSpeed ZeRO-3 have its weight gathered.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class _ChunkedCE(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk: int,
    ) -> torch.Tensor:
        losses = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk):
            logits = F.linear(hidden[s : s + chunk], weight, bias).float()
            t = targets[s : s + chunk]
            losses[s : s + chunk] = logits.logsumexp(-1) - logits.gather(1, t[:, None])[:, 0]
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.chunk = chunk
        return losses

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        hidden, weight, bias, targets = ctx.saved_tensors
        chunk = ctx.chunk
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(hidden) if need_h else None
        # fp32 accumulators across chunks (a frozen head, e.g. under LoRA, needs none)
        f32 = {"dtype": torch.float32, "device": weight.device}
        grad_w = torch.zeros(weight.shape, **f32) if need_w else None
        grad_b = torch.zeros(weight.shape[0], **f32) if need_b else None
        for s in range(0, hidden.shape[0], chunk):
            h = hidden[s : s + chunk]
            d = F.linear(h, weight, bias).float().softmax(-1)
            rows = torch.arange(d.shape[0], device=d.device)
            d[rows, targets[s : s + chunk]] -= 1.0
            d *= grad[s : s + chunk, None]
            if need_b:
                grad_b += d.sum(0)
            d = d.to(hidden.dtype)
            if need_h:
                grad_h[s : s + chunk] = d @ weight
            if need_w:
                grad_w += (d.t() @ h).float()
        return (
            grad_h,
            grad_w.to(weight.dtype) if grad_w is not None else None,
            grad_b.to(bias.dtype) if grad_b is not None else None,
            None,
            None,
        )


def chunked_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    chunk: int = 512,
) -> torch.Tensor:
    """Per-token ``CE(hidden @ weight.T + bias, targets)`` computed ``chunk`` tokens at a time.

    Args:
        hidden: ``(tokens, hidden)``.
        weight: ``(vocab, hidden)``, the LM head.
        bias: ``(vocab,)`` or ``None``.
        targets: ``(tokens,)`` token ids (every one supervised).
        chunk: Tokens per chunk (peak extra memory about ``chunk × vocab`` fp32 values).

    Returns:
        ``(tokens,)`` fp32 losses.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return _ChunkedCE.apply(hidden, weight, bias, targets, chunk)


class LossHead(torch.nn.Linear):
    """An LM head that returns per-token losses (shape ``(tokens, 1)``) when ``targets`` is set.

    Made from the model's head by :func:`install_loss_head` (class swap, same parameters).
    """

    targets: torch.Tensor | None = None
    chunk: int = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.targets is None:
            return super().forward(x)
        if x.dim() != 2 or x.shape[0] != self.targets.shape[0]:
            raise RuntimeError(
                f"LossHead: hidden states {tuple(x.shape)} do not match {self.targets.shape[0]} "
                "targets (the model must be called with a boolean logits_to_keep)"
            )
        return chunked_cross_entropy(x, self.weight, self.bias, self.targets, self.chunk)[:, None]


def install_loss_head(model: torch.nn.Module, chunk: int) -> LossHead | None:
    """Give ``model``'s output embedding the :class:`LossHead` class; ``None`` if it cannot.

    Only a plain ``nn.Linear`` head whose logits the model returns unchanged qualifies (no
    PEFT wrapper on the head, no logit soft-capping or scaling in the config).
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    config = getattr(model, "config", None)
    changes_logits = any(
        getattr(config, k, None) not in (None, 1.0)
        for k in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier")
    )
    if type(head) is not torch.nn.Linear and not isinstance(head, LossHead):
        return None
    if changes_logits:
        return None
    head.__class__ = LossHead
    head.chunk = chunk
    return head


__all__ = ["LossHead", "chunked_cross_entropy", "install_loss_head"]
