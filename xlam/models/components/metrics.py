"""Per-sample and per-source loss bookkeeping (pure torch, no Lightning).

Batches carry ``sample_index`` (which sample of the batch each token belongs to, -1 on
padding) and one source name per sample, for padded and packed batches alike, so the same
functions split the loss by sample or by source in both layouts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xlam.data.labels import IGNORE_INDEX


def _predicted(
    labels: torch.Tensor, sample_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    # Token t+1 is predicted from position t: losses have shape (batch, seq - 1) and belong
    # to the sample of the *predicted* token.
    tok_sample = sample_index[:, 1:]
    mask = (labels[:, 1:] != IGNORE_INDEX) & (tok_sample >= 0)
    return tok_sample, mask


def per_sample_losses(
    losses: torch.Tensor, labels: torch.Tensor, sample_index: torch.Tensor, num_samples: int
) -> torch.Tensor:
    """Summed token loss and supervised-token count of every sample of a batch.

    Args:
        losses: ``(batch, seq - 1)`` next-token losses (0 where unsupervised).
        labels: ``(batch, seq)`` labels.
        sample_index: ``(batch, seq)`` sample number of each token, -1 on padding.
        num_samples: Samples in the batch.

    Returns:
        A ``(num_samples, 2)`` float tensor: ``[loss sum, supervised tokens]`` per sample.
    """
    tok_sample, mask = _predicted(labels, sample_index)
    vals = torch.stack(
        [losses[mask].float(), torch.ones_like(losses[mask], dtype=torch.float)], dim=1
    )
    out = torch.zeros(num_samples, 2, dtype=torch.float, device=losses.device)
    return out.index_add_(0, tok_sample[mask], vals)


def per_source_losses(
    losses: torch.Tensor,
    labels: torch.Tensor,
    sample_index: torch.Tensor,
    sources: Sequence[str],
) -> dict[str, torch.Tensor]:
    """Summed token loss and supervised-token count per source.

    Args:
        losses: ``(batch, seq - 1)`` next-token losses (0 where unsupervised).
        labels: ``(batch, seq)`` labels.
        sample_index: ``(batch, seq)`` sample number of each token, -1 on padding.
        sources: Source name of each sample (indexed by ``sample_index``).

    Returns:
        ``{source: tensor([loss sum, supervised tokens])}`` for the sources in the batch;
        the source's mean token loss is the ratio. Stays on the device (no host sync).
    """
    if not sources:
        return {}
    per_sample = per_sample_losses(losses, labels, sample_index, len(sources))
    names = sorted(set(sources))
    ids = torch.tensor([names.index(s) for s in sources], device=per_sample.device)
    sums = torch.zeros(len(names), 2, dtype=per_sample.dtype, device=per_sample.device)
    sums.index_add_(0, ids, per_sample)
    return {name: sums[i] for i, name in enumerate(names)}


__all__ = ["per_sample_losses", "per_source_losses"]
