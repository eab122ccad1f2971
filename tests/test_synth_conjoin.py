"""Two values in a one-call sentence (``xlam.synth.conjoin``): what a conjoined item is.

Each conjoined training item is compared with the plain build of the same item (the same
seed, split, index and phrasing, ``conjoin=False``): the request names the plain value and
a second one where the plain request named one, the first call is the plain call, the
second the same call with that one argument changed, both run against the domain, and the
answer is the plain answer followed by the second call's.
"""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from xlam.synth.checks import check_all
from xlam.synth.conjoin import conjoin
from xlam.synth.core import DOMAINS, Domain, EpisodeBuilder, Template, format_value
from xlam.synth.generate import CONJOIN_RATE, _phrasings, build_one, default_templates, generate


@pytest.fixture(scope="module")
def templates() -> list[Template]:
    return default_templates()


def _plain(template: Template, seed: int, index: int) -> dict:
    rng = random.Random(f"{seed}:train:{index}")
    allowed = dict((t.name, a) for t, a in _phrasings(default_templates(), "train"))
    return build_one(
        template, seed, "train", index, rng.choice(allowed[template.name]), rng, conjoin=False
    )


def test_conjoined_items_are_the_plain_item_with_a_second_value(
    templates: list[Template],
) -> None:
    by_name = {t.name: t for t in templates}
    trajs = generate(800, 3, "train")
    singles: Counter = Counter()
    conjoined: Counter = Counter()
    for i, traj in enumerate(trajs):
        meta = traj["metadata"]["synth"]
        t = by_name[meta["template"]]
        if t.kind != "single":
            assert "conjoined" not in meta
            continue
        singles[t.name] += 1
        if not meta.get("conjoined"):
            assert meta["kind"] == "single"
            continue
        conjoined[t.name] += 1
        assert meta["kind"] == "parallel"
        assert check_all(traj) == (None, [])
        plain = _plain(t, 3, i)
        (c1,), _ = plain["metadata"]["synth"]["calls"]
        (a, b), final = meta["calls"]
        assert final == [] and a == c1 and b["name"] == a["name"]
        changed = [k for k in a["arguments"] if a["arguments"][k] != b["arguments"][k]]
        assert len(changed) == 1 and b["arguments"].keys() == a["arguments"].keys()
        v1, v2 = (format_value(c["arguments"][changed[0]]) for c in (a, b))
        # the request: the plain one (in its register) with "v1 and v2" where v1 was
        plain_request = plain["conversation"][0]["content"]
        request = traj["conversation"][0]["content"]
        q = "'" if f"'{v1}'" in plain_request else ""
        joined = plain_request.replace(f"{q}{v1}{q}", f"{q}{v1}{q} and {q}{v2}{q}", 1)
        assert request == joined or joined in request, (request, joined)
        # the answer: the plain one, then the second call's, which quotes the second value
        # where the plain one quoted the first
        answer, plain_answer = (
            traj["conversation"][-1]["content"],
            plain["conversation"][-1]["content"],
        )
        assert answer.startswith(plain_answer + " ")
        second = answer[len(plain_answer) + 1 :]
        assert second != plain_answer
        if re.search(re.escape(v1), plain_answer):
            assert v2 in second and v1 not in second.replace(v2, "")
    # every single template of these domains has a value to conjoin, about a third of the time
    assert set(conjoined) == set(singles), set(singles) - set(conjoined)
    share = sum(conjoined.values()) / sum(singles.values())
    assert CONJOIN_RATE * 0.6 < share < CONJOIN_RATE * 1.2, share


def test_only_train_and_only_singles_are_conjoined() -> None:
    assert not any(t["metadata"]["synth"].get("conjoined") for t in generate(400, 3, "test"))
    # conjoin=False gives the plain items; the rest of the stream does not move
    t = next(t for t in default_templates() if t.kind == "single")
    on = build_one(t, 1, "train", 0, 0, conjoin=True)
    off = build_one(t, 1, "train", 0, 0, conjoin=False)
    assert on["unique_trajectory_id"] == off["unique_trajectory_id"]
    assert on["metadata"]["synth"]["initial_state"] == off["metadata"]["synth"]["initial_state"]


def test_an_episode_of_another_shape_is_left_alone(templates: list[Template]) -> None:
    for t in templates:
        if t.kind in ("single", "answer_from_obs", "similar_choice"):
            continue  # these may be one call and an answer too
        domain = DOMAINS[t.domain]
        state = domain.initial_state(random.Random(0))
        b = EpisodeBuilder(domain, state)
        t.build(b, random.Random(1), 0)

        def rebuild(
            r: random.Random, t: Template = t, d: Domain = domain, s: dict = state
        ) -> EpisodeBuilder:
            other = EpisodeBuilder(d, s)
            t.build(other, r, 0)
            return other

        assert conjoin(b, rebuild, state, random.Random(2)) is None, t.name
