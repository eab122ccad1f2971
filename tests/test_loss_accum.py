"""The loss is the token mean over the whole optimizer step, however the step is split.

Micro-batches hold different numbers of supervised tokens on purpose: a per-micro-batch mean
would then weight tokens unequally, and these tests would fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY_QWEN2, first_step_grads
from torch.utils.data import DataLoader

from xlam.models.components.loss import (
    STEP_MICRO_KEY,
    STEP_TOKENS_KEY,
    STEP_WINDOW_KEY,
    StepTokenCounter,
    step_loss_scale,
    supervised_tokens,
)

TINY = {**TINY_QWEN2, "max_position_embeddings": 128, "tie_word_embeddings": True}


def _samples(vocab: int) -> list[dict[str, torch.Tensor]]:
    # Four samples of different lengths and supervised spans (3, 9, 1 and 14 tokens).
    g = torch.Generator().manual_seed(0)
    out = []
    for length, start in ((6, 2), (12, 2), (5, 3), (20, 5)):
        ids = torch.randint(0, vocab, (length,), generator=g)
        labels = ids.clone()
        labels[:start] = -100
        out.append({"input_ids": ids, "labels": labels})
    return out


def _pad(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    n = max(len(s["input_ids"]) for s in samples)
    ids = torch.zeros(len(samples), n, dtype=torch.long)
    labels = torch.full((len(samples), n), -100, dtype=torch.long)
    attn = torch.zeros(len(samples), n, dtype=torch.long)
    for i, s in enumerate(samples):
        k = len(s["input_ids"])
        ids[i, :k], labels[i, :k], attn[i, :k] = s["input_ids"], s["labels"], 1
    return {"input_ids": ids, "labels": labels, "attention_mask": attn}


def _grads(
    batches: list[dict[str, Any]], accumulate: int, counter: bool, tmp: Path
) -> dict[str, torch.Tensor]:
    loader: Any = DataLoader(batches, batch_size=None)
    if counter:
        loader = StepTokenCounter(loader, accumulate)
    return first_step_grads(loader, tmp, accumulate, TINY)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_four_micro_batches_equal_one_batch_of_four(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from xlam import TINY_TOKENIZER_DIR

    vocab = len(AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR))
    samples = _samples(vocab)
    whole = _grads([_pad(samples)], accumulate=1, counter=True, tmp=tmp_path / "a")
    split = _grads([_pad([s]) for s in samples], accumulate=4, counter=True, tmp=tmp_path / "b")
    assert _max_diff(whole, split) < 1e-6
    # Negative control: the mean of per-micro-batch means weights tokens unequally.
    naive = _grads([_pad([s]) for s in samples], accumulate=4, counter=False, tmp=tmp_path / "c")
    assert _max_diff(whole, naive) > 1e-4


def test_step_token_counter_windows() -> None:
    def batch(n_sup: int) -> dict[str, torch.Tensor]:
        labels = torch.full((1, 10), -100)
        labels[0, 10 - n_sup :] = 1
        return {"labels": labels}

    counted = list(StepTokenCounter([batch(k) for k in (2, 3, 4, 5, 6)], accumulate=2))
    assert [b[STEP_TOKENS_KEY] for b in counted] == [5, 5, 9, 9, 6]
    assert [b[STEP_MICRO_KEY] for b in counted] == [0, 1, 0, 1, 0]
    assert [b[STEP_WINDOW_KEY] for b in counted] == [2, 2, 2, 2, 1]
    assert len(StepTokenCounter([batch(1)] * 3, accumulate=2)) == 3
    with pytest.raises(ValueError, match="accumulate"):
        StepTokenCounter([], accumulate=0)


def test_supervised_tokens_and_scale() -> None:
    labels = torch.tensor([[-100, 5, 6, -100], [-100, -100, 7, 8]])
    # Shifted by one: the first position is never predicted.
    assert supervised_tokens(labels) == 4
    # Lightning's 1/accum and DDP's 1/world cancel against world * accum.
    assert step_loss_scale(world_size=2, accumulate=4, step_tokens=16) == 0.5
    assert step_loss_scale(1, 1, 0) == 1.0
