"""``model.copy_weight``: the loss weight of supervised tokens copied from the context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_QWEN2, first_step_grads
from torch.utils.data import DataLoader

from xlam.data.collate import packed_collate
from xlam.data.labels import IGNORE_INDEX
from xlam.data.render import Renderer
from xlam.data.schema import Trajectory
from xlam.models.causal_lm import CausalLMModule
from xlam.models.components.build import build_causal_lm
from xlam.models.components.loss import StepTokenCounter, copied_targets, copyable_vocab
from xlam.synth.generate import generate

TINY = {**TINY_QWEN2, "max_position_embeddings": 2048, "tie_word_embeddings": True}


def _reference(ids: list[int], labels: list[int], copyable: set[int]) -> list[bool]:
    """Per label position: supervised, copyable, and seen earlier unsupervised (plain loops)."""
    out = []
    for j, lab in enumerate(labels):
        earlier = {ids[k] for k in range(j) if labels[k] == IGNORE_INDEX}
        out.append(lab != IGNORE_INDEX and lab in copyable and lab in earlier)
    return out


def _packed_synth(tokenizer: Any, n: int, per_row: int) -> tuple[dict[str, Any], list[Any]]:
    renderer = Renderer(tokenizer)
    samples = []
    for d in generate(n, 5, "train"):
        s = renderer.render(Trajectory.from_dict(d))[0]
        samples.append({"input_ids": s.input_ids, "labels": s.labels, "source": "s", "id": s.id})
    rows = [samples[i : i + per_row] for i in range(0, len(samples), per_row)]
    return packed_collate(rows, tokenizer.pad_token_id or 0), samples


def test_copied_targets_match_a_per_sample_reference_on_packed_rows(shared_fixtures: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shared_fixtures / "tokenizers" / "qwen2_5")
    copyable = copyable_vocab(tok)
    assert copyable[tok.convert_tokens_to_ids("hello")] and not copyable[tok.encode('"}')[0]]
    batch, samples = _packed_synth(tok, 12, per_row=3)
    got = copied_targets(batch["input_ids"], batch["labels"], batch["sample_index"], copyable)
    assert got.shape == (batch["labels"].shape[0], batch["labels"].shape[1] - 1)
    allowed = set(torch.nonzero(copyable).flatten().tolist())
    values = 0
    for i, s in enumerate(samples):
        row, start = divmod(i, 3)
        at = sum(len(x["input_ids"]) for x in samples[row * 3 : row * 3 + start])
        want = _reference(s["input_ids"], s["labels"], allowed)
        # got[:, j - 1] is the target at position j of the row
        mine = [j > 0 and bool(got[row, j - 1]) for j in range(at, at + len(want))]
        assert mine == want, s["id"]
        values += sum(want)
    assert values > 0
    # Padding and targets never marked outside supervised positions.
    assert not (got & (batch["labels"][:, 1:] == IGNORE_INDEX)).any()


def test_copied_needs_the_same_sample_and_an_earlier_position() -> None:
    copyable = torch.ones(10, dtype=torch.bool)
    copyable[9] = False
    x = IGNORE_INDEX
    # one row, two packed samples: [5 6 | 6 7 5] then [7 | 5 9 9 ...]
    ids = torch.tensor([[5, 6, 6, 7, 5, 7, 5, 9, 9, 8]])
    labels = torch.tensor([[x, x, 6, 7, 5, x, 5, 9, 9, x]])
    index = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1, 1, 1]])
    got = copied_targets(ids, labels, index, copyable)[0].tolist()
    # 6 and 5 were seen unsupervised before; 7 only in the other sample; 9 is not copyable;
    # sample 1's 5 was seen only in sample 0; the trailing 8 is unsupervised.
    assert got == [False, True, False, True, False, False, False, False, False]
    # 8 is supervised but its only unsupervised occurrence comes after it.
    later = copied_targets(torch.tensor([[1, 8, 8]]), torch.tensor([[x, 8, x]]), None, copyable)
    assert later.tolist() == [[False, False]]


def _module_grads(batch: dict[str, Any], copy_weight: float, tmp: Path) -> dict[str, Any]:
    loader = StepTokenCounter(DataLoader([batch], batch_size=None), 1)
    grads = first_step_grads(loader, tmp, 1, TINY, packing_check=False, copy_weight=copy_weight)
    return {n.removeprefix("model."): g for n, g in grads.items()}


@pytest.mark.parametrize("weight", [1.0, 4.0])
def test_training_gradient_is_the_weighted_token_mean(tmp_path: Path, weight: float) -> None:
    from transformers import AutoTokenizer

    from xlam import TINY_TOKENIZER_DIR

    tok = AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR)
    batch, samples = _packed_synth(tok, 6, per_row=2)
    got = _module_grads(dict(batch), weight, tmp_path)

    # Reference: each sample alone through the same model, weights from the plain loops.
    model = build_causal_lm(None, len(tok), TINY, "float32", "eager", seed=3)
    allowed = set(torch.nonzero(copyable_vocab(tok)).flatten().tolist())
    total, n_sup = torch.zeros(()), 0
    for s in samples:
        ids = torch.tensor([s["input_ids"]])
        logits = model(input_ids=ids).logits[0, :-1]
        targets = torch.tensor(s["labels"][1:])
        ce = F.cross_entropy(logits, targets, reduction="none", ignore_index=IGNORE_INDEX)
        copied = torch.tensor(_reference(s["input_ids"], s["labels"], allowed)[1:])
        total = total + (ce * (1 + (weight - 1) * copied.float())).sum()
        n_sup += int((targets != IGNORE_INDEX).sum())
    (total / n_sup).backward()
    want = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == want.keys()
    assert max(float((got[k] - want[k]).abs().max()) for k in want) < 1e-5
    if weight != 1.0:  # the weight changes the gradient
        plain = _module_grads(dict(batch), 1.0, tmp_path / "plain")
        assert max(float((got[k] - plain[k]).abs().max()) for k in want) > 1e-4


def test_copy_weight_must_be_positive() -> None:
    from xlam import TINY_TOKENIZER_DIR

    with pytest.raises(ValueError, match="copy_weight"):
        CausalLMModule(tokenizer_path=str(TINY_TOKENIZER_DIR), from_config=TINY, copy_weight=0)
