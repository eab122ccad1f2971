"""Batching of rendered samples: padded rows, or packed rows of several samples.

Both collates return the same keys, so the model and the metrics read one layout:

- ``input_ids``, ``labels`` (``IGNORE_INDEX`` where not supervised), ``attention_mask``
  (1 on real tokens; for accounting: a packed batch is *not* given it by the model, see
  below), ``sample_index`` (which sample of the batch a token belongs to, -1 on padding);
- ``sources``, ``ids``, ``positions``: one entry per sample, in ``sample_index`` order.

A packed batch adds ``position_ids`` restarting at 0 for every sample (padding at the end
of a row is its own short sequence), ``cu_seqlens`` (int32 boundaries over the flattened
batch, what varlen attention kernels take) and ``max_seqlen``. Given ``position_ids`` and
*no* attention mask, transformers' masking utils (``find_packed_sequence_indices``) build a
block-diagonal causal mask for SDPA/eager, and flash attention runs varlen on the flattened
batch, so no token attends across samples.

Label boundary: the label of a sample's first token is ``IGNORE_INDEX``, so the loss never
asks the last token of one packed sample to predict the first token of the next.

Preference pairs (:mod:`xlam.data.render.pairs`) are samples with a ``split``: both halves
stay in one row, the rejected half is a sequence of its own (positions restart, its first
label is ignored) and the batch adds ``pair_side`` (0 chosen, 1 rejected, -1 padding). Such
samples are always collated packed, one pair per row when packing is off. A pair with a
``branch`` (rendered with ``shared_history``) holds the history once: its rejected half's
positions start at ``branch``, the tokens of the chosen half it continues, which only
``xlam_segments`` attention reads as a branch (``cu_seqlens`` cannot describe it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from xlam.data.labels import IGNORE_INDEX

Sample = dict[str, Any]


def _meta(samples: Sequence[Sample]) -> dict[str, list[Any]]:
    return {
        "sources": [s["source"] for s in samples],
        "ids": [s["id"] for s in samples],
        "positions": [s.get("position", -1) for s in samples],
    }


def _empty(pad_id: int, packed: bool) -> dict[str, Any]:
    # Every sample of this rank's micro-batch failed to render (streaming sources only):
    # a one-token row with nothing to learn keeps the ranks in step.
    one = torch.full((1, 1), pad_id, dtype=torch.long)
    out: dict[str, Any] = {
        "input_ids": one,
        "labels": torch.full((1, 1), IGNORE_INDEX, dtype=torch.long),
        "attention_mask": torch.zeros((1, 1), dtype=torch.long),
        "sample_index": torch.full((1, 1), -1, dtype=torch.long),
        "sources": [],
        "ids": [],
        "positions": [],
    }
    if packed:
        out["position_ids"] = torch.zeros((1, 1), dtype=torch.long)
        out["cu_seqlens"] = torch.tensor([0, 1], dtype=torch.int32)
        out["max_seqlen"] = 1
    return out


def _width(longest: int, multiple: int | None) -> int:
    return longest if not multiple else -(-longest // multiple) * multiple


def pad_collate(samples: list[Sample], pad_id: int, multiple: int | None = None) -> dict[str, Any]:
    """Right-pad samples (one per row) into a batch.

    Args:
        samples: ``{input_ids, labels, id, source, position?}`` dicts.
        pad_id: Token id of padding.
        multiple: Pad the width up to a multiple of this (``None``: the longest sample).
    """
    if any(s.get("split") for s in samples):
        # The halves of a pair need their own positions: one pair per packed row.
        return packed_collate([[s] for s in samples], pad_id, multiple)
    if not samples:
        return _empty(pad_id, packed=False)
    n = _width(max(len(s["input_ids"]) for s in samples), multiple)
    ids = torch.full((len(samples), n), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), n), IGNORE_INDEX, dtype=torch.long)
    attn = torch.zeros((len(samples), n), dtype=torch.long)
    index = torch.full((len(samples), n), -1, dtype=torch.long)
    for i, s in enumerate(samples):
        k = len(s["input_ids"])
        ids[i, :k] = torch.as_tensor(np.asarray(s["input_ids"], dtype=np.int64))
        labels[i, :k] = torch.as_tensor(np.asarray(s["labels"], dtype=np.int64))
        attn[i, :k] = 1
        index[i, :k] = i
    return {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": attn,
        "sample_index": index,
        **_meta(samples),
    }


def packed_collate(
    rows: list[list[Sample]], pad_id: int, multiple: int | None = None
) -> dict[str, Any]:
    """Concatenate the samples of each row; pad rows to the longest one.

    Args:
        rows: Samples of each row (each row must fit the bin it was packed for).
        pad_id: Token id of padding.
        multiple: Pad the width up to a multiple of this (``None``: the longest row).
    """
    rows = [r for r in rows if r]
    if not rows:
        return _empty(pad_id, packed=True)
    row_len = [sum(len(s["input_ids"]) for s in r) for r in rows]
    width = _width(max(row_len), multiple)
    flat_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    flat_lab = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
    pos = np.zeros((len(rows), width), dtype=np.int64)
    index = np.full((len(rows), width), -1, dtype=np.int64)
    pairs = any(s.get("split") for r in rows for s in r)
    side = np.full((len(rows), width), -1, dtype=np.int64) if pairs else None
    seqlens: list[int] = []
    samples: list[Sample] = []
    for r, row in enumerate(rows):
        at = 0
        for s in row:
            k = len(s["input_ids"])
            flat_ids[r, at : at + k] = s["input_ids"]
            flat_lab[r, at : at + k] = s["labels"]
            flat_lab[r, at] = IGNORE_INDEX
            pos[r, at : at + k] = np.arange(k)
            index[r, at : at + k] = len(samples)
            samples.append(s)
            cut = int(s.get("split", 0))
            if cut:
                # The rejected half never sees the chosen one, nor predicts from its end.
                branch = int(s.get("branch", 0))
                pos[r, at + cut : at + k] = np.arange(branch, branch + k - cut)
                flat_lab[r, at + cut] = IGNORE_INDEX
                side[r, at : at + cut] = 0
                side[r, at + cut : at + k] = 1
                seqlens += [cut, k - cut]
            else:
                seqlens.append(k)
            at += k
        if at < width:
            # Padding restarts its positions too: it is a sequence of its own, so the
            # real tokens before it never see it and it never sees them.
            pos[r, at:] = np.arange(width - at)
            seqlens.append(width - at)
    cu = np.concatenate([[0], np.cumsum(seqlens)]).astype(np.int32)
    ids = torch.from_numpy(flat_ids)
    extra = {"pair_side": torch.from_numpy(side)} if side is not None else {}
    return {
        "input_ids": ids,
        "labels": torch.from_numpy(flat_lab),
        "attention_mask": (torch.from_numpy(index) >= 0).long(),
        "sample_index": torch.from_numpy(index),
        "position_ids": torch.from_numpy(pos),
        "cu_seqlens": torch.from_numpy(cu),
        "max_seqlen": int(max(seqlens)),
        **_meta(samples),
        **extra,
    }


__all__ = ["packed_collate", "pad_collate"]
