"""Batching of rendered samples: right padding and the tensors a causal LM needs."""

from __future__ import annotations

from typing import Any

import torch

from xlam.data.render import IGNORE_INDEX


def pad_collate(samples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-pad a list of ``{input_ids, labels, ...}`` into a batch.

    Returns:
        ``input_ids``, ``labels``, ``attention_mask`` tensors, plus ``sources``, ``ids`` and
        ``positions`` lists for metrics and exact resume.
    """
    n = max(len(s["input_ids"]) for s in samples)
    ids = torch.full((len(samples), n), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), n), IGNORE_INDEX, dtype=torch.long)
    attn = torch.zeros((len(samples), n), dtype=torch.long)
    for i, s in enumerate(samples):
        k = len(s["input_ids"])
        ids[i, :k] = torch.as_tensor(s["input_ids"])
        labels[i, :k] = torch.as_tensor(s["labels"])
        attn[i, :k] = 1
    return {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": attn,
        "sources": [s["source"] for s in samples],
        "ids": [s["id"] for s in samples],
        "positions": [s["position"] for s in samples],
    }
