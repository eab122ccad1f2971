"""Embeddings of the forms of one word tied together (``model.embed_tie=space|word``).

A byte-level tokenizer has ``Ġbook`` (``book`` after a space) and ``book`` as two unrelated
rows, so a model trained from scratch must learn every such pair from the contexts that use
each. Tied, the row of ``Ġbook`` is ``book``'s row plus one learned space vector plus its own
residual (which starts at zero): what trains one form trains the other, and "a space
before" is one direction for every word. The tie is a ``torch.nn.utils.parametrize``
parametrization of the embedding matrix and of the LM head (the same one when the head
shares the matrix); :func:`merge_embed_tie` folds it into plain matrices, which is what an
export saves.

``word`` ties every form of a word the same way: ``book``, ``Book``, ``Ġbook`` and ``ĠBook``
are one root row (the first of them the vocabulary holds, in that order) plus a learned
space vector for each leading space and a learned capital vector for each capital first
letter the form has and the root has not (minus where the root has it and the form not).
A word moved from the start of a sentence (``What``) into one (``Ġwhat``) is then the word
it was, with a space and without its capital.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.utils import parametrize

EMBED_TIES = (None, "space", "word")
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


def _case(form: str) -> tuple[str, int] | None:
    """``(key, capital)`` of a letter form: lower case (0) or capitalized (1); else None.

    ASCII only: a byte-level vocabulary writes every other byte as a letter (``Ã`` is the
    byte 0xC3, not a capital ``ã``).
    """
    if not form.isascii():
        return None
    if form == form.lower():
        return form, 0
    if form[0].isupper() and form[1:] == form[1:].lower():
        return form.lower(), 1
    return None


def word_groups(tokenizer: Any) -> tuple[list[int], list[int], list[int], list[int]]:
    """The ``word`` tie's rows: ids of the tied tokens, of their roots, and each one's space
    and capital coefficients (its leading space and capital, less its root's: -1, 0 or 1).

    Tokens are grouped by their form without a leading space, lower-cased when it is ASCII
    and lower case or capitalized (any other form, ``AEST``, groups only with its spaced
    form). A group's root is its first form of: bare lower case, bare capitalized, spaced
    lower case, spaced capitalized.
    """
    groups: dict[str, list[tuple[int, int, int]]] = {}
    for token, i in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        spaced = int(len(token) > 1 and token[0] in SPACE_MARKS)
        form = token[spaced:]
        key, capital = _case(form) or (form, 0)
        groups.setdefault(key, []).append((spaced, capital, i))
    rows = []
    for members in groups.values():
        members.sort()
        s0, c0, root = members[0]
        # a second token of the root's own form (a duplicate spelling) is left untied
        rows += [(i, root, s - s0, c - c0) for s, c, i in members[1:] if (s, c) != (s0, c0)]
    rows.sort()
    return tuple(list(col) for col in zip(*rows)) if rows else ([], [], [], [])  # type: ignore[return-value]


class RowTie(torch.nn.Module):
    """The parametrization ``W[tied] <- W[tied] + W[roots] + sum_k coef[:, k] * direction_k``.

    ``space`` has one direction (``space``, coefficient 1 on every row); ``word`` two
    (``space`` and ``capital``, coefficients -1, 0 or 1). Other rows stay as they are.

    Args:
        tied: Ids of the tied tokens.
        roots: Ids of their roots (never tied themselves).
        coefs: Each direction's name and its coefficient on every tied row.
        dim: Embedding width.
    """

    def __init__(
        self, tied: list[int], roots: list[int], coefs: dict[str, list[int]], dim: int
    ) -> None:
        super().__init__()
        # rebuilt from the tokenizer with the model: not part of a checkpoint
        self.register_buffer("tied", torch.tensor(tied, dtype=torch.long), persistent=False)
        self.register_buffer("roots", torch.tensor(roots, dtype=torch.long), persistent=False)
        coef = torch.tensor(list(coefs.values()), dtype=torch.float32).T
        self.register_buffer("coef", coef, persistent=False)
        self.directions = tuple(coefs)
        for name in self.directions:
            # plain attributes, so checkpoints name them ``...weight.0.space``
            setattr(self, name, torch.nn.Parameter(torch.zeros(dim)))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        directions = torch.stack([getattr(self, n) for n in self.directions]).to(weight.dtype)
        shift = self.coef.to(weight.dtype) @ directions
        return weight.index_add(0, self.tied, weight[self.roots] + shift)


def apply_embed_tie(
    model: torch.nn.Module, tokenizer: Any, seed: int = 0, mode: str = "space"
) -> RowTie:
    """Tie ``model``'s embeddings in place: ``space`` or ``word`` (see the module docstring).

    The residual rows of the tied tokens start at zero and the space (and capital) vectors
    at the scale of the other rows, so a tied token starts as its root plus shared
    directions. An LM head that shares the embedding matrix computes the same tied matrix; a
    head of its own gets its own tie (its own vectors). Returns the embedding's tie.

    Raises:
        ValueError: An unknown ``mode``, or a vocabulary with nothing to tie.
    """
    if mode == "space":
        tied, roots = space_pairs(tokenizer)
        coefs = {"space": [1] * len(tied)}
    elif mode == "word":
        tied, roots, space, capital = word_groups(tokenizer)
        coefs = {"space": space, "capital": capital}
    else:
        raise ValueError(f"model.embed_tie must be one of {EMBED_TIES[1:]}, got {mode!r}")
    if not tied:
        raise ValueError(
            f"model.embed_tie={mode}: the tokenizer has no token that is a space plus another "
            f"of its tokens (token strings starting with one of {SPACE_MARKS})"
            + (" nor two cases of one word" if mode == "word" else "")
        )
    embed = model.get_input_embeddings()
    head = model.get_output_embeddings()
    shared = head is not None and head.weight is embed.weight
    ties = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in (embed,) if shared or head is None else (embed, head):
            weight = module.weight
            tie = RowTie(tied, roots, coefs, weight.shape[1]).to(weight.device)
            with torch.no_grad():
                std = weight.std().item()
                weight[tied] = 0.0
                for name in tie.directions:
                    getattr(tie, name).normal_(0.0, std)
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
