"""The held-out phrasing of every template recombines its training phrasings' words.

A model trained from scratch cannot learn what a word it never saw means, so the test
split's phrasing (the last) is a sentence training never saw, built only from words the
template's training phrasings use (same values, same seed; every register a training
request may take, :func:`~xlam.synth.generate.request_variants`): it tests recombination of
seen wording, not new vocabulary. Words are ``[a-z]+`` runs of the lower-cased user turns.
"""

from __future__ import annotations

import random
import re

import pytest

from xlam.synth.core import DOMAINS, EpisodeBuilder, Template
from xlam.synth.generate import build_one, default_templates, request_variants

TEMPLATES = default_templates()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _user_turns(traj: dict) -> list[str]:
    return [m["content"] for m in traj["conversation"] if m["role"] == "user"]


@pytest.mark.parametrize("t", TEMPLATES, ids=lambda t: t.name)
def test_held_out_phrasing_uses_only_training_words(t: Template) -> None:
    held = t.phrasings - 1
    for seed in range(12):
        seen: set[str] = set()
        train_seqs = []
        for p in range(held):
            first, *rest = _user_turns(build_one(t, seed, "train", seed, p, register=False))
            for variant in request_variants(first):
                words = _words(" ".join([variant, *rest]))
                seen.update(words)
                train_seqs.append(words)
        test_words = _words(
            " ".join(_user_turns(build_one(t, seed, "train", seed, held, register=False)))
        )
        new = sorted(set(test_words) - seen)
        assert not new, f"{t.name} seed {seed}: held-out phrasing has unseen words {new}"
        assert test_words not in train_seqs, f"{t.name} seed {seed}: a training sentence"


@pytest.mark.parametrize("t", TEMPLATES, ids=lambda t: t.name)
def test_phrasing_count_is_the_number_of_sentences(t: Template) -> None:
    # A template's count is written by hand beside its sentences: one too small silently
    # leaves the last sentences unused and makes a training sentence the held-out one.
    rng = random.Random(0)
    domain = DOMAINS[t.domain]
    b = EpisodeBuilder(domain, domain.initial_state(rng))
    with pytest.raises(IndexError):
        t.build(b, rng, t.phrasings)
