"""The token-mean loss over a whole optimizer step (pure torch, no Lightning).

Why this file exists: the natural ``loss.mean()`` per micro-batch weights every micro-batch
equally, so under gradient accumulation or data parallelism a micro-batch with few supervised
tokens counts as much as one with many, and the gradient depends on how the global batch was
split. The loss we want is

    L = (Σ over all micro-batches of the step, all ranks, of token losses) / N

where ``N`` is the number of supervised tokens of the whole optimizer step. Two facts make it
exact with an unmodified trainer:

* :class:`StepTokenCounter` reads one accumulation window of micro-batches ahead and stamps
  every batch with the supervised-token count of *its rank's* window (``step_tokens``); one
  scalar all-reduce per step then gives ``N`` on every rank before any backward runs.
* Each micro-batch returns ``sum_loss * world * accum / N`` (:func:`step_loss_scale`). The
  trainer divides by ``accum`` once and data-parallel reduction averages over ``world``
  ranks, so the accumulated gradient is exactly ``∇ Σ token losses / N``.

Also which targets are *copied* from the context (:func:`copied_targets`), the tokens
``model.copy_weight`` weighs inside that sum (``N`` unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from xlam.data.labels import IGNORE_INDEX

STEP_TOKENS_KEY = "step_tokens"
STEP_MICRO_KEY = "step_micro"
STEP_WINDOW_KEY = "step_window"


def supervised_tokens(labels: torch.Tensor) -> int:
    """Number of tokens a causal LM is trained to predict (labels shifted by one)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def step_loss_scale(
    world_size: int, accumulate: int, step_tokens: float | torch.Tensor
) -> float | torch.Tensor:
    """Factor turning a micro-batch's *summed* token loss into its share of the step loss.

    Args:
        world_size: Data-parallel ranks (their gradients are averaged).
        accumulate: Micro-batches per optimizer step (the trainer divides each by it).
        step_tokens: Supervised tokens of the whole step, all micro-batches and ranks; a
            tensor stays on its device (no host sync per micro-batch).
    """
    if isinstance(step_tokens, torch.Tensor):
        return world_size * accumulate / step_tokens.clamp(min=1.0)
    return world_size * accumulate / max(float(step_tokens), 1.0)


class StepTokenCounter:
    """Wrap a batch iterable and stamp each batch with its accumulation window's token count.

    Windows are consecutive groups of ``accumulate`` micro-batches, aligned with how the
    trainer counts them (a resumed run restarts at a step boundary, so alignment holds). A last,
    shorter window is counted as it is.

    Args:
        loader: Iterable of dict batches holding ``labels``.
        accumulate: Micro-batches per optimizer step.
        count: What a batch counts towards the step's denominator; default its supervised
            tokens (a preference objective counts pairs: its loss is a mean over pairs).
    """

    def __init__(
        self,
        loader: Iterable[dict[str, Any]],
        accumulate: int,
        count: Callable[[dict[str, Any]], int] | None = None,
    ) -> None:
        if accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {accumulate}")
        self.loader = loader
        self.accumulate = accumulate
        self.count = count

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        # Lightning inspects loader attributes (batch_size, sampler, dataset); forward them.
        if name in ("loader", "accumulate", "count"):
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        it = iter(self.loader)
        while True:
            window = []
            for _ in range(self.accumulate):
                try:
                    window.append(next(it))
                except StopIteration:
                    break
            if not window:
                return
            count = self.count or (lambda b: supervised_tokens(b["labels"]))
            total = sum(count(b) for b in window)
            for i, b in enumerate(window):
                b[STEP_TOKENS_KEY] = total
                b[STEP_MICRO_KEY] = i
                b[STEP_WINDOW_KEY] = len(window)
                yield b


def window_end(batch: dict[str, Any], batch_idx: int, accumulate: int) -> bool:
    """Whether ``batch`` is the last micro-batch of its optimizer step."""
    if STEP_WINDOW_KEY in batch:
        return batch[STEP_MICRO_KEY] == batch[STEP_WINDOW_KEY] - 1
    return (batch_idx + 1) % accumulate == 0


# -- copied tokens --------------------------------------------------------------------------
# Why: in agent data most supervised tokens are boilerplate (JSON structure, tags, names the
# format repeats) and are learnt first; the argument values, which must be copied from the
# query or a tool result, are a small share of the token-mean loss and a small model can
# stall on them (docs/synthetic_data.md). Weighting them is the token weighting of
# reasoning-highlighted fine-tuning (Ye et al., 2024) with a rule that needs no classifier.


def copyable_vocab(tokenizer: Any) -> torch.Tensor:
    """Bool ``[len(tokenizer)]``: the ids whose text (spaces stripped) is alphanumeric.

    Punctuation, JSON structure and special tokens also recur between a prompt and a reply,
    but they are format, not values.
    """
    ids = list(range(len(tokenizer)))
    texts = tokenizer.batch_decode([[i] for i in ids])
    return torch.tensor([t.strip().isalnum() for t in texts], dtype=torch.bool)


def copied_targets(
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    sample_index: torch.Tensor | None,
    copyable: torch.Tensor,
) -> torch.Tensor:
    """Bool ``[batch, seq - 1]`` aligned with the shifted targets ``labels[:, 1:]``.

    A target is *copied* when it is supervised, its id is in ``copyable``, and the same id
    occurs earlier in the same sample at a position that is not supervised (the system
    prompt and tools, a user turn, a tool result).

    Args:
        input_ids: ``[batch, seq]`` token ids.
        labels: ``[batch, seq]``; ``IGNORE_INDEX`` where not supervised.
        sample_index: ``[batch, seq]`` sample of the batch each token belongs to (-1 on
            padding), as collated batches carry it; ``None``: one sample per row.
        copyable: :func:`copyable_vocab` of the tokenizer.
    """
    rows, width = labels.shape
    if sample_index is None:
        sample_index = torch.arange(rows, device=labels.device)[:, None].expand(rows, width)
    vocab = copyable.numel()
    ids, labs = input_ids.reshape(-1), labels.reshape(-1)
    samples = sample_index.reshape(-1).long()
    pos = torch.arange(ids.numel(), device=ids.device)
    context = (labs == IGNORE_INDEX) & (samples >= 0)
    keys, inverse = torch.unique(samples[context] * vocab + ids[context], return_inverse=True)
    first = torch.full_like(keys, ids.numel()).scatter_reduce(
        0, inverse, pos[context], reduce="amin", include_self=True
    )
    target = (labs != IGNORE_INDEX) & (samples >= 0)
    target &= copyable.to(labs.device)[labs.clamp(min=0)]
    tkeys = samples * vocab + labs.clamp(min=0)
    at = torch.searchsorted(keys, tkeys).clamp(max=max(keys.numel() - 1, 0))
    if keys.numel():
        target &= (keys[at] == tkeys) & (first[at] < pos)
    else:
        target &= False
    return target.view(rows, width)[:, 1:]


def copy_weights(
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    sample_index: torch.Tensor | None,
    copyable: torch.Tensor,
    weight: float,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-target loss weights ``[batch, seq - 1]``: ``weight`` on :func:`copied_targets`, 1
    elsewhere (``model.copy_weight``)."""
    copied = copied_targets(input_ids, labels, sample_index, copyable)
    return 1.0 + (weight - 1.0) * copied.to(dtype)
