"""Generate synthetic trajectories from the registered task templates, with train/test splits.

:func:`generate` is deterministic for ``(n, seed, split)`` (and the set of templates): item
``i`` draws everything (phrasing, initial state, values) from its own
``random.Random(f"{seed}:{split}:{i}")``, so an item does not depend on ``n`` nor on the
items before it. Items are balanced by kind, then by template: item ``i`` is of kind
``kinds[i % K]`` (the ``K`` kinds in a seeded order), and the ``j``-th item of a kind uses
that kind's template ``j`` modulo their number (in a seeded order). So kind counts differ by
at most one for any ``n``, and so do the counts of the templates of one kind (and with them
the domains, as far as each kind's templates spread over domains).

Split rule (:func:`split_of`), over a set of templates:

- **Held-out phrasings**: the last phrasing (index ``phrasings - 1``) of every template is
  test-only. It is a sentence training never holds, written only with words of the
  template's training phrasings (``tests/test_synth_phrasings.py``): it tests recombining
  seen wording, not reading new words, which a model trained from scratch cannot.
- **Held-out combinations**: a template whose ``combo`` (the tools it works with) has two
  tools or more and falls in bucket 0 of 4 (``sha256("+".join(combo))`` mod 4; stable
  across processes and Python versions, unlike ``hash()``) is test-only with all its
  phrasings; every template with that combination is. Exception, so that training sees
  every kind: when the rule would hold out every template of a kind, the combination of
  that kind's template with the largest hash goes back to train (kinds in sorted order).

``train`` draws only train phrasings of templates whose combination is not held out;
``test`` draws the held-out phrasing of every other template and any phrasing of the
held-out combinations, so every test item is new to training in its wording or in its
tools.

Registers (:func:`request_variants`): a ``train`` item's opening request is the template's
sentence as written, or (one in four each, drawn from the item's own
``random.Random(f"{seed}:{split}:{index}:register")`` so values do not move) that sentence
with ``Please`` before an imperative, ``Thanks.`` after it, or ``Hi!`` before it. Without
them a register names a kind: "Please …" opened 4% of training requests, most of them
asking for a missing argument, and 15% of test requests, where a tiny model read
"Please drop P-… from my basket." as a request to ask for the delivery address. ``test``
keeps the templates' sentences as written.

Each trajectory is a unified trajectory dict (:class:`xlam.data.schema.Trajectory`) whose
``metadata["synth"]`` is the ground truth the checks (:mod:`xlam.synth.checks`), the
environments (:mod:`xlam.synth.env`) and the eval read: ``kind``, ``template``,
``phrasing``, ``split``, ``seed``, ``index``, ``domain``, ``initial_state``,
``answer_values`` and ``calls`` (per assistant turn, the calls it makes as
``[{"name", "arguments"}]``; ``[]`` for a text turn).
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Sequence
from typing import Any

from xlam.synth.core import DOMAINS, KINDS, TEMPLATES, EpisodeBuilder, Template

SOURCE = "synth"
SPLITS: tuple[str, ...] = ("train", "test")
# One combination in HELD_OUT_BUCKETS is held out for test.
HELD_OUT_BUCKETS = 4


def load_domains() -> None:
    """Import :mod:`xlam.synth.domains`, which registers every domain and template."""
    import xlam.synth.domains  # noqa: F401


def default_templates() -> list[Template]:
    """Every registered template (domains loaded), by name."""
    load_domains()
    return [TEMPLATES[k] for k in sorted(TEMPLATES)]


def combo_hash(combo: Sequence[str]) -> int:
    """A stable hash of a tool combination (sha256 of the sorted names joined by ``+``)."""
    return int(hashlib.sha256("+".join(sorted(combo)).encode()).hexdigest(), 16)


def held_out_combos(templates: Sequence[Template] | None = None) -> set[tuple[str, ...]]:
    """The tool combinations held out for test among ``templates`` (default: all)."""
    templates = default_templates() if templates is None else list(templates)
    held = {
        t.combo
        for t in templates
        if len(t.combo) >= 2 and combo_hash(t.combo) % HELD_OUT_BUCKETS == 0
    }
    for kind in sorted({t.kind for t in templates}):
        of_kind = [t for t in templates if t.kind == kind]
        if all(t.combo in held for t in of_kind):
            held.discard(max(of_kind, key=lambda t: (combo_hash(t.combo), t.name)).combo)
    return held


def split_of(
    template: Template, phrasing: int, templates: Sequence[Template] | None = None
) -> set[str]:
    """The splits that may draw ``phrasing`` of ``template`` (see the module docstring).

    Args:
        template: The template.
        phrasing: Its phrasing index, ``0 <= phrasing < template.phrasings``.
        templates: The template set the held-out combinations are decided over (default:
            every registered template).

    Raises:
        ValueError: A phrasing index out of range.
    """
    if not 0 <= phrasing < template.phrasings:
        raise ValueError(
            f"template {template.name}: phrasing {phrasing} not in 0..{template.phrasings - 1}"
        )
    if template.combo in held_out_combos(templates):
        return {"test"}
    return {"test"} if phrasing == template.phrasings - 1 else {"train"}


def _phrasings(templates: Sequence[Template], split: str) -> list[tuple[Template, list[int]]]:
    held = held_out_combos(templates)
    out = []
    for t in templates:
        if t.combo in held:
            allowed = list(range(t.phrasings)) if split == "test" else []
        elif split == "test":
            allowed = [t.phrasings - 1]
        else:
            allowed = list(range(t.phrasings - 1))
        if allowed:
            out.append((t, allowed))
    return out


def _schedule(
    eligible: list[tuple[Template, list[int]]], seed: int, split: str
) -> tuple[list[str], dict[str, list[tuple[Template, list[int]]]]]:
    """The kinds in a seeded order, and each kind's templates in a seeded order."""
    rng = random.Random(f"{seed}:{split}:order")
    by_kind: dict[str, list[tuple[Template, list[int]]]] = {}
    for entry in sorted(eligible, key=lambda e: e[0].name):
        by_kind.setdefault(entry[0].kind, []).append(entry)
    kinds = [k for k in KINDS if k in by_kind]
    rng.shuffle(kinds)
    for k in kinds:
        rng.shuffle(by_kind[k])
    return kinds, by_kind


# First words an opening request may start with that take "Please " before them (lower-cased):
# the imperatives the templates use. A sentence starting with anything else (a question, a
# name, a value, "My …", "If …") gets only the registers that leave its first word alone.
_IMPERATIVE_WORDS = (
    "add append apply book calculate cancel cash change check compare complete compress "
    "convert count credit delete deposit divide drop email empty erase express fetch find "
    "flip get give go help list locate look make move multiply open order pay print pull "
    "put read remind remove rent replace reserve reverse search send set show slugify split "
    "subtract swap sweep take tell transfer translate turn withdraw work write"
)
IMPERATIVES = frozenset(_IMPERATIVE_WORDS.split())


def request_variants(text: str) -> list[str]:
    """The registers an opening request may take in ``train`` (the first is ``text``).

    ``text`` as written, ``Please`` + ``text`` lower-cased at its first letter (only when it
    starts with one of :data:`IMPERATIVES` and not already with "Please"), ``text`` +
    ``" Thanks."``, ``"Hi! "`` + ``text``.
    """
    out = [text]
    first = text.split(" ", 1)[0]
    if first.lower() in IMPERATIVES and first[:1].isupper() and "please" not in text.lower():
        out.append("Please " + text[0].lower() + text[1:])
    return [*out, text + " Thanks.", "Hi! " + text]


def _register(conversation: list[dict[str, Any]], rng: random.Random) -> None:
    """Puts the first user turn in a register of :func:`request_variants`, drawn by ``rng``
    (each with probability 1/4, the sentence as written taking the share of a register it
    cannot take)."""
    first = next(m for m in conversation if m.get("role") == "user")
    variants = request_variants(first["content"])
    weights = [5 - len(variants)] + [1] * (len(variants) - 1)
    first["content"] = rng.choices(variants, weights)[0]


def turn_calls(conversation: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Per assistant turn, its calls as ``[{"name", "arguments"}]`` (``[]``: a text turn)."""
    return [
        [
            {"name": c["function"]["name"], "arguments": copy.deepcopy(c["function"]["arguments"])}
            for c in m.get("tool_calls") or []
        ]
        for m in conversation
        if m.get("role") == "assistant"
    ]


def build_one(
    template: Template,
    seed: int,
    split: str,
    index: int,
    phrasing: int,
    rng: random.Random | None = None,
    register: bool | None = None,
) -> dict[str, Any]:
    """One trajectory of ``template`` in ``phrasing`` (item ``index`` of a run).

    Args:
        template: The template.
        seed: The run's seed (recorded, part of the id).
        split: ``train`` or ``test`` (recorded, part of the id).
        index: The item's index (recorded, part of the id).
        phrasing: The phrasing index.
        rng: The item's generator (default: ``random.Random(f"{seed}:{split}:{index}")``).
        register: Whether the opening request takes a register of :func:`request_variants`
            (default: for ``train`` only).

    Raises:
        RuntimeError: The template failed to build (naming the template, seed and index).
    """
    rng = rng or random.Random(f"{seed}:{split}:{index}")
    domain = DOMAINS.get(template.domain)
    if domain is None:
        raise RuntimeError(f"template {template.name}: domain {template.domain!r} not registered")
    tid = f"{SOURCE}-{split}-{seed}-{index:06d}"
    try:
        b = EpisodeBuilder(domain, domain.initial_state(rng))
        template.build(b, rng, phrasing)
    except Exception as e:
        raise RuntimeError(
            f"template {template.name} (phrasing {phrasing}) failed to build item {index} of "
            f"split {split}, seed {seed}: {type(e).__name__}: {e}"
        ) from e
    if split == "train" if register is None else register:
        _register(b.conversation, random.Random(f"{seed}:{split}:{index}:register"))
    meta = {
        "kind": template.kind,
        "template": template.name,
        "phrasing": phrasing,
        "split": split,
        "seed": seed,
        "index": index,
        "calls": turn_calls(b.conversation),
    }
    return b.trajectory(tid, SOURCE, meta)


def generate(
    n: int, seed: int, split: str = "train", templates: Sequence[Template] | None = None
) -> list[dict[str, Any]]:
    """``n`` trajectories of ``split``, deterministic for ``(n, seed, split, templates)``.

    Args:
        n: How many (>= 0).
        seed: The seed.
        split: ``train`` or ``test`` (see the module docstring for what each draws).
        templates: The templates to draw from (default: every registered template; the
            held-out combinations are decided over this set).

    Returns:
        Unified trajectory dicts with ``metadata["synth"]`` (the ground truth).

    Raises:
        ValueError: An unknown split, ``n < 0``, or no template eligible for the split.
        RuntimeError: A template failed to build.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    templates = (
        default_templates() if templates is None else sorted(templates, key=lambda t: t.name)
    )
    eligible = _phrasings(templates, split)
    if n and not eligible:
        raise ValueError(f"no template has a phrasing for split {split!r}")
    kinds, by_kind = _schedule(eligible, seed, split) if eligible else ([], {})
    out = []
    for i in range(n):
        of_kind = by_kind[kinds[i % len(kinds)]]
        template, allowed = of_kind[(i // len(kinds)) % len(of_kind)]
        rng = random.Random(f"{seed}:{split}:{i}")
        out.append(build_one(template, seed, split, i, rng.choice(allowed), rng))
    return out


__all__ = [
    "HELD_OUT_BUCKETS",
    "IMPERATIVES",
    "SOURCE",
    "SPLITS",
    "build_one",
    "combo_hash",
    "default_templates",
    "generate",
    "held_out_combos",
    "load_domains",
    "request_variants",
    "split_of",
    "turn_calls",
]
