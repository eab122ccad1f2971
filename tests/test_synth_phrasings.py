"""The held-out phrasing of every template recombines its training phrasings' words.

A model trained from scratch cannot learn what a word it never saw means, so the test
split's phrasing (the last) is a sentence training never saw, built only from words the
template's training phrasings use (same values, same seed): it tests recombination of
seen wording, not new vocabulary. Words are ``[a-z]+`` runs of the lower-cased user turns.
"""

from __future__ import annotations

import re

import pytest

from xlam.synth.core import Template
from xlam.synth.generate import build_one, default_templates

TEMPLATES = default_templates()


def _user_words(traj: dict) -> list[str]:
    text = " ".join(m["content"] for m in traj["conversation"] if m["role"] == "user")
    return re.findall(r"[a-z]+", text.lower())


@pytest.mark.parametrize("t", TEMPLATES, ids=lambda t: t.name)
def test_held_out_phrasing_uses_only_training_words(t: Template) -> None:
    held = t.phrasings - 1
    for seed in range(12):
        seen: set[str] = set()
        train_seqs = []
        for p in range(held):
            words = _user_words(build_one(t, seed, "train", seed, p))
            seen.update(words)
            train_seqs.append(words)
        test_words = _user_words(build_one(t, seed, "train", seed, held))
        new = sorted(set(test_words) - seen)
        assert not new, f"{t.name} seed {seed}: held-out phrasing has unseen words {new}"
        assert test_words not in train_seqs, f"{t.name} seed {seed}: a training sentence"
