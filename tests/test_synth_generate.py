"""The synthetic task generator: determinism, balance, the train/test split rule, the CLI.

The split rule is recomputed here from its definition (sha256 of the sorted tool names
joined by ``+``, bucket 0 of 4 held out; the last phrasing held out), not read back from
the generator.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pytest
import synth_testdom
from conftest import ENV, entry_point, run_cli

from xlam.synth.core import KINDS, Template
from xlam.synth.generate import (
    _phrasings,
    build_one,
    default_templates,
    generate,
    held_out_combos,
    request_variants,
    split_of,
)

XLAM_DATA = entry_point("xlam-data")


def _hash(combo: tuple[str, ...]) -> int:
    return int(hashlib.sha256("+".join(sorted(combo)).encode()).hexdigest(), 16)


def _bucket0(combo: tuple[str, ...]) -> bool:
    return len(combo) >= 2 and _hash(combo) % 4 == 0


def _dumps(trajs: list[dict]) -> bytes:
    return "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in trajs).encode()


@pytest.fixture(scope="module")
def templates() -> list[Template]:
    return default_templates()


def test_same_seed_same_bytes_and_items_do_not_depend_on_n(templates: list[Template]) -> None:
    for split in ("train", "test"):
        a = generate(60, 11, split)
        assert _dumps(a) == _dumps(generate(60, 11, split))
        assert _dumps(generate(25, 11, split)) == _dumps(a[:25])  # item i is its own draw
        assert _dumps(a) != _dumps(generate(60, 12, split))
        assert len({t["unique_trajectory_id"] for t in a}) == 60
    train, test = generate(40, 11, "train"), generate(40, 11, "test")
    assert not {t["unique_trajectory_id"] for t in train} & {
        t["unique_trajectory_id"] for t in test
    }


def test_ground_truth_is_recorded(templates: list[Template]) -> None:
    by_name = {t.name: t for t in templates}
    for i, traj in enumerate(generate(40, 5, "train")):
        meta = traj["metadata"]["synth"]
        t = by_name[meta["template"]]
        assert (meta["kind"], meta["domain"], meta["split"], meta["seed"], meta["index"]) == (
            t.kind,
            t.domain,
            "train",
            5,
            i,
        )
        assert 0 <= meta["phrasing"] < t.phrasings
        assistant = [m for m in traj["conversation"] if m["role"] == "assistant"]
        assert len(meta["calls"]) == len(assistant)
        for m, calls in zip(assistant, meta["calls"], strict=True):
            assert calls == [
                {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                for c in m.get("tool_calls", [])
            ]
        called = {c["name"] for turn in meta["calls"] for c in turn}
        assert called <= set(t.combo) or not t.combo  # combo: the tools in play


def test_the_split_rule(templates: list[Template]) -> None:
    held = {t.combo for t in templates if _bucket0(t.combo)}
    kinds = {t.kind for t in templates}
    for k in kinds:  # the guard: no kind loses all its templates to the held-out combos
        of_kind = [t for t in templates if t.kind == k]
        if all(t.combo in held for t in of_kind):
            held.discard(max(of_kind, key=lambda t: (_hash(t.combo), t.name)).combo)
    assert held_out_combos(templates) == held
    assert held, "no combination is held out: the test split would only test phrasings"
    for t in templates:
        for p in range(t.phrasings):
            want = {"test"} if t.combo in held or p == t.phrasings - 1 else {"train"}
            assert split_of(t, p) == want, (t.name, p)
    with pytest.raises(ValueError, match="phrasing"):
        split_of(templates[0], templates[0].phrasings)
    train_kinds = {t.kind for t in templates if t.combo not in held}
    assert train_kinds == kinds


def test_the_guard_keeps_every_kind_in_train() -> None:
    # Combos in bucket 0, found by the definition; a kind whose templates all fall there
    # gets one of them back.
    rng = random.Random(0)
    names = [f"tool_{i}" for i in range(40)]
    zero = []
    while len(zero) < 3:
        combo = tuple(sorted(rng.sample(names, 2)))
        if _bucket0(combo) and combo not in zero:
            zero.append(combo)
    other = next(c for c in (("tool_1", "tool_2"), ("tool_1", "tool_3")) if not _bucket0(c))
    ts = [
        Template(f"x.{i}", "x", "parallel", 3, lambda b, r, p: None, c) for i, c in enumerate(zero)
    ] + [Template("y.0", "x", "single", 3, lambda b, r, p: None, other)]
    held = held_out_combos(ts)
    assert len(held) == 2 and held < set(zero)
    assert other not in held
    assert [split_of(t, 0, ts) for t in ts].count({"train"}) == 2  # one parallel, the single


def test_train_never_sees_held_out_phrasings_or_combos(templates: list[Template]) -> None:
    by_name = {t.name: t for t in templates}
    held = held_out_combos(templates)
    train, test = generate(300, 3, "train"), generate(300, 3, "test")
    for traj in train:
        meta = traj["metadata"]["synth"]
        t = by_name[meta["template"]]
        assert t.combo not in held and meta["phrasing"] < t.phrasings - 1
    seen_test = set()
    for traj in test:
        meta = traj["metadata"]["synth"]
        t = by_name[meta["template"]]
        assert t.combo in held or meta["phrasing"] == t.phrasings - 1
        seen_test.add(t.name)
    assert seen_test == set(by_name)  # every template appears in test (300 >= templates)
    assert {by_name[t["metadata"]["synth"]["template"]].combo for t in test} & held
    # the phrasings differ lexically: train's user texts never equal a test one
    first_user = {
        s: {next(m["content"] for m in t["conversation"] if m["role"] == "user") for t in ts}
        for s, ts in (("train", train), ("test", test))
    }
    assert not first_user["train"] & first_user["test"]


def _first_user(traj: dict) -> str:
    return next(m["content"] for m in traj["conversation"] if m["role"] == "user")


def _plain(templates: list[Template], t: Template, seed: int, split: str, i: int) -> dict:
    """Item ``i`` as :func:`generate` builds it, without the register."""
    allowed = next(a for x, a in _phrasings(templates, split) if x is t)
    rng = random.Random(f"{seed}:{split}:{i}")
    # generate draws the phrasing from the item's generator before building
    phrasing = rng.choice(allowed)
    return build_one(t, seed, split, i, phrasing, rng, register=False)


def test_training_requests_take_registers_that_change_nothing_else(
    templates: list[Template],
) -> None:
    by_name = {t.name: t for t in templates}
    train = generate(400, 4, "train")
    registers: Counter = Counter()
    for i, traj in enumerate(train):
        meta = traj["metadata"]["synth"]
        t = by_name[meta["template"]]
        plain = _plain(templates, t, 4, "train", i)
        conv, plain_conv = traj["conversation"], plain["conversation"]
        first = next(j for j, m in enumerate(conv) if m["role"] == "user")
        text, written = conv[first]["content"], plain_conv[first]["content"]
        # the opening request is one of its registers; values, calls, every other turn and
        # the ground truth are the plain build's
        assert text in request_variants(written)
        assert conv[:first] + conv[first + 1 :] == plain_conv[:first] + plain_conv[first + 1 :]
        assert {k: v for k, v in traj.items() if k != "conversation"} == {
            k: v for k, v in plain.items() if k != "conversation"
        }
        registers[
            "as written"
            if text == written
            else "Thanks"
            if text.endswith(" Thanks.")
            else "Hi"
            if text.startswith("Hi! ")
            else "Please"
        ] += 1
    # every register is drawn ("Please": one imperative in four, 39 of these 400)
    assert set(registers) == {"as written", "Please", "Thanks", "Hi"}
    assert registers["Please"] > len(train) / 20
    # the test split keeps the templates' sentences as written
    for i, traj in enumerate(generate(100, 4, "test")):
        meta = traj["metadata"]["synth"]
        t = by_name[meta["template"]]
        assert traj == _plain(templates, t, 4, "test", i)


def test_request_variants() -> None:
    assert request_variants("Delete /a/b.txt.") == [
        "Delete /a/b.txt.",
        "Please delete /a/b.txt.",
        "Delete /a/b.txt. Thanks.",
        "Hi! Delete /a/b.txt.",
    ]
    # not before a question, a name or a sentence that already says please
    for text in ("What is 2 + 2?", "Yuki Tanaka needs a flight.", "Take P-1 out, please."):
        assert request_variants(text) == [text, text + " Thanks.", "Hi! " + text]


def test_kinds_then_templates_are_balanced(templates: list[Template]) -> None:
    held = held_out_combos(templates)
    eligible = [t for t in templates if t.combo not in held]
    for n in (len(KINDS), 101, 400):
        trajs = generate(n, 8, "train")
        kinds = Counter(t["metadata"]["synth"]["kind"] for t in trajs)
        assert set(kinds) == set(KINDS)
        assert max(kinds.values()) - min(kinds.values()) <= 1, kinds
        per_template = Counter(t["metadata"]["synth"]["template"] for t in trajs)
        for k in KINDS:
            counts = [per_template[t.name] for t in eligible if t.kind == k]
            assert max(counts) - min(counts) <= 1, (k, counts)


def test_the_test_domain_holds_out_its_bucket0_combination() -> None:
    with synth_testdom.registered() as ts:
        zero = {t.combo for t in ts if _bucket0(t.combo)}
        # multi_step has one template, in bucket 0: the guard gives it back to train
        assert zero == {("td_convert", "td_sub"), ("td_balance", "td_find")}
        assert held_out_combos(ts) == {("td_convert", "td_sub")}
        test = generate(50, 1, "test", ts)
        train = generate(50, 1, "train", ts)
    assert "testdom.convert_sub" in {t["metadata"]["synth"]["template"] for t in test}
    assert "testdom.convert_sub" not in {t["metadata"]["synth"]["template"] for t in train}
    assert "testdom.multi" in {t["metadata"]["synth"]["template"] for t in train}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="split"):
        generate(1, 0, "dev")
    with pytest.raises(ValueError, match="n must be"):
        generate(-1, 0)


def test_cli_writes_the_same_bytes_for_the_same_seed(tmp_path: Path) -> None:
    args = ["synth", "--n", "60", "--seed", "4", "--test-n", "30"]
    # two processes with different string hashing: nothing may depend on set order
    first = run_cli(
        [*args, "--out", str(tmp_path / "a")],
        tmp_path,
        exe=XLAM_DATA,
        env={**ENV, "PYTHONHASHSEED": "1"},
    )
    run_cli(
        [*args, "--out", str(tmp_path / "b")],
        tmp_path,
        exe=XLAM_DATA,
        env={**ENV, "PYTHONHASHSEED": "2"},
    )
    assert "generated 90" in first.stdout
    for name in ("train.jsonl", "test.jsonl", "rejects.jsonl", "report.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    lines = {
        n: (tmp_path / "a" / f"{n}.jsonl").read_text().splitlines()
        for n in ("train", "test", "rejects")
    }
    rejected = report["rejected"]
    assert report["generated"] == 90 == report["passed"] + rejected["total"]
    assert rejected["total"] == sum(rejected[s] for s in ("format", "execution", "semantic"))
    assert len(lines["rejects"]) == rejected["total"]
    for split, n in (("train", 60), ("test", 30)):
        row = report["by_split"][split]
        assert row["generated"] == n == row["passed"] + sum(row["rejected"].values())
        assert len(lines[split]) == row["passed"]
        assert {json.loads(x)["metadata"]["synth"]["split"] for x in lines[split]} <= {split}
    for table in ("by_kind", "by_domain"):
        assert sum(r["generated"] for r in report[table].values()) == 90
        assert sum(r["passed"] for r in report[table].values()) == report["passed"]
    for r in map(json.loads, lines["rejects"]):
        assert r["stage"] in ("format", "execution", "semantic") and r["problems"]
    proc = run_cli(
        ["synth", "--n", "-1", "--seed", "1", "--out", str(tmp_path / "c")],
        tmp_path,
        exe=XLAM_DATA,
        check=False,
    )
    assert proc.returncode == 2 and "must be >= 0" in proc.stderr


def test_rejects_are_counted_per_stage_split_kind_and_domain(tmp_path: Path) -> None:
    # In-process, with templates that fail on purpose: in == out + rejected everywhere.
    from xlam.data.commands.synth import synthesize

    with synth_testdom.registered(bad=True) as ts:
        report = synthesize(len(default_templates()) * 2, 6, tmp_path, test_n=40)
        bad = {t.name for t in ts if "bad" in t.name}
    rejects = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    by_template = Counter(
        (r["record"]["metadata"]["synth"]["template"], r["stage"]) for r in rejects
    )
    assert {t for t, _ in by_template} == bad
    assert {s for (t, s) in by_template if t.endswith("format")} == {"format"}
    assert {s for (t, s) in by_template if t.endswith("semantic")} == {"semantic"}
    rejected = report["rejected"]
    assert rejected["format"] == by_template[("testdom.bad_format", "format")] > 0
    assert rejected["semantic"] == by_template[("testdom.bad_semantic", "semantic")] > 0
    assert report["rules"]["semantic"] == {"answer_ungrounded": rejected["semantic"]}
    assert (
        report["generated"]
        == report["passed"] + rejected["total"]
        == len(rejects)
        + sum(len((tmp_path / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "test"))
    )
    for table in ("by_split", "by_kind", "by_domain"):
        for row in report[table].values():
            assert row["generated"] == row["passed"] + sum(row["rejected"].values())
    dom = report["by_domain"]["testdom"]
    assert sum(dom["rejected"].values()) == rejected["total"]
