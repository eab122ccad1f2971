"""The held-out phrasing of every template recombines its training phrasings' words.

A model trained from scratch cannot learn what a word it never saw means, so the test
split's phrasing (the last) is a sentence training never saw, built only from words the
template's training phrasings use (same values, same seed; every register a training
request may take, :func:`~xlam.synth.generate.request_variants`): it tests recombination of
seen wording, not new vocabulary. Words are ``[a-z]+`` runs of the lower-cased user turns.
"""

from __future__ import annotations

import re

import pytest

from xlam.synth.core import Template
from xlam.synth.generate import _phrasings, build_one, default_templates, request_variants

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


def _opening_frame(traj: dict) -> tuple[str, tuple[str, ...]] | None:
    """The opening request's tool, call count and frame, if its first answer calls one tool.

    The frame is the request's words with the calls' argument values as one slot: two
    values joined by "and" are one slot, and a word's trailing "s" is dropped, so "account
    X" and "accounts X and Y" have the same frame.
    """
    request, answer = traj["conversation"][:2]
    calls = answer.get("tool_calls") or []
    if request["role"] != "user" or len({c["function"]["name"] for c in calls}) != 1:
        return None
    text = request["content"]
    values = {str(v) for c in calls for v in c["function"]["arguments"].values()}
    for v in sorted(values, key=len, reverse=True):
        text = text.replace(v, "\0")
    text = text.replace("\0 and \0", "\0")
    frame = tuple(w.rstrip("s") for w in re.findall(r"[a-z]+|\0", text.lower()))
    return f"{calls[0]['function']['name']} x{len(calls)}", frame


def test_no_training_frame_names_a_call_count() -> None:
    """A tool asked for once and twice in training shares request frames between the two.

    The model must count the values a request names, not read the number of calls off its
    wording: when one call's frames and two calls' frames were disjoint, a held-out
    two-value request in a one-call frame got one call (docs/synthetic_data.md).
    """
    frames: dict[str, set[tuple[str, ...]]] = {}
    for t, allowed in _phrasings(TEMPLATES, "train"):
        for p in allowed:
            for seed in range(6):
                got = _opening_frame(build_one(t, seed, "train", seed, p, register=False))
                if got:
                    frames.setdefault(got[0], set()).add(got[1])
    both = sorted(k[:-3] for k in frames if k.endswith(" x2") and k[:-3] + " x1" in frames)
    assert both, "no tool is asked for both in one call and in two"
    for tool in both:
        shared = frames[f"{tool} x1"] & frames[f"{tool} x2"]
        assert shared, f"{tool}: no frame asks for it in one call and in two"
