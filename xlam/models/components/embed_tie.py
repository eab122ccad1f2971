"""A space-prefixed token's embedding tied to its bare form's (``model.embed_tie=space``).

A byte-level tokenizer has ``Ġbook`` (``book`` after a space) and ``book`` as two unrelated
rows, so a model trained from scratch must learn every such pair from the contexts that use
each. Tied, the row of ``Ġbook`` is ``book``'s row plus one learned space vector plus its own
residual (which starts at zero): what trains one form trains the other, and "a space
before" is one direction for every word. The tie is a ``torch.nn.utils.parametrize``
parametrization of the embedding matrix and of the LM head (the same one when the head
shares the matrix); :func:`merge_embed_tie` folds it into plain matrices, which is what an
export saves.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.utils import parametrize

EMBED_TIES = (None, "space")
# How a leading space is written in a vocabulary's token strings: byte-level BPE (GPT-2,
# Qwen, Llama 3) and SentencePiece.
SPACE_MARKS = ("Ġ", "▁")


def check_embed_tie(embed_tie: str | None, path: str | None) -> None:
    """Refuse an unknown ``model.embed_tie``, or one asked of a model loaded from ``path``."""
    if embed_tie not in EMBED_TIES:
        raise ValueError(f"model.embed_tie must be one of {EMBED_TIES}, got {embed_tie!r}")
    if path and embed_tie:
        raise ValueError(
            "model.embed_tie ties the embeddings of a model built from model.from_config; "
            f"{path} holds trained embeddings: leave model.embed_tie=null"
        )


def space_pairs(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Ids of the tokens that are a space plus another token of the vocabulary, and those of
    their bare forms (``Ġbook`` and ``book``), in the same order."""
    vocab = tokenizer.get_vocab()
    spaced, roots = [], []
    for token, i in sorted(vocab.items(), key=lambda kv: kv[1]):
        if len(token) > 1 and token[0] in SPACE_MARKS and token[1:] in vocab:
            spaced.append(i)
            roots.append(vocab[token[1:]])
    return spaced, roots


class SpaceTie(torch.nn.Module):
    """The parametrization ``W[spaced] <- W[spaced] + W[roots] + space``; other rows as they are.

    Args:
        spaced: Ids of the space-prefixed tokens.
        roots: Ids of their bare forms.
        dim: Embedding width.
    """

    def __init__(self, spaced: list[int], roots: list[int], dim: int) -> None:
        super().__init__()
        # rebuilt from the tokenizer with the model: not part of a checkpoint
        self.register_buffer("spaced", torch.tensor(spaced, dtype=torch.long), persistent=False)
        self.register_buffer("roots", torch.tensor(roots, dtype=torch.long), persistent=False)
        self.space = torch.nn.Parameter(torch.zeros(dim))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.index_add(0, self.spaced, weight[self.roots] + self.space)


def apply_embed_tie(model: torch.nn.Module, tokenizer: Any, seed: int = 0) -> SpaceTie:
    """Tie ``model``'s space-prefixed embeddings to their bare forms, in place.

    The residual rows of the spaced tokens start at zero and the space vector at the scale
    of the other rows, so a spaced token starts as its bare form plus one shared direction.
    An LM head that shares the embedding matrix computes the same tied matrix; a head of its
    own gets its own tie (its own space vector). Returns the embedding's tie.

    Raises:
        ValueError: The vocabulary has no space-prefixed token whose bare form it also holds.
    """
    spaced, roots = space_pairs(tokenizer)
    if not spaced:
        raise ValueError(
            "model.embed_tie=space: the tokenizer has no token that is a space plus another "
            f"of its tokens (token strings starting with one of {SPACE_MARKS})"
        )
    embed = model.get_input_embeddings()
    head = model.get_output_embeddings()
    shared = head is not None and head.weight is embed.weight
    ties = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in (embed,) if shared or head is None else (embed, head):
            weight = module.weight
            tie = SpaceTie(spaced, roots, weight.shape[1]).to(weight.device)
            with torch.no_grad():
                std = weight.std().item()
                weight[tie.spaced] = 0.0
                tie.space.normal_(0.0, std)
            parametrize.register_parametrization(module, "weight", tie)
            ties.append(tie)
    if shared:
        # the same Parameter, now the tie's ``original``: the head computes the same matrix
        parametrize.register_parametrization(head, "weight", ties[0])
    return ties[0]


def merge_embed_tie(model: torch.nn.Module) -> bool:
    """Fold an :func:`apply_embed_tie` parametrization into plain weights, in place.

    A head that shared the embedding matrix shares the merged one again. Returns whether
    ``model`` had the tie.
    """
    embed = model.get_input_embeddings()
    if not parametrize.is_parametrized(embed, "weight"):
        return False
    head = model.get_output_embeddings()
    if head is not None and parametrize.is_parametrized(head, "weight"):
        original = head.parametrizations.weight.original
        # a shared matrix: back to the raw Parameter first; merging the embedding below
        # writes the tied values into that Parameter in place, which the head then holds
        shared = original is embed.parametrizations.weight.original
        parametrize.remove_parametrizations(head, "weight", leave_parametrized=not shared)
    parametrize.remove_parametrizations(embed, "weight", leave_parametrized=True)
    return True
