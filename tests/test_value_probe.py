"""The value probe's pieces (``scripts/value_accuracy.py``, ``scripts/bench_values.py``)."""

from __future__ import annotations

import pytest
import torch
from conftest import load_script

from xlam.data.labels import IGNORE_INDEX
from xlam.data.schema import Trajectory
from xlam.synth.generate import generate


@pytest.fixture(scope="module")
def scripts():
    value_accuracy = load_script("value_accuracy")  # bench_values imports it by name
    return value_accuracy, load_script("bench_values")


@pytest.fixture(scope="module")
def trajectories() -> list[Trajectory]:
    return [Trajectory.from_dict(d) for d in generate(40, 3, "train")]


def test_value_tokens_are_copied_text_and_continuations_follow_a_first(
    scripts, trajectories, tiny_tokenizer
) -> None:
    value_accuracy, _ = scripts
    samples = value_accuracy.render_classes(tiny_tokenizer, trajectories)
    assert samples and all(len(ids) == len(lab) == len(c) for ids, lab, c in samples)
    seen_value = 0
    for traj, (_, labels, kinds) in zip(trajectories, samples, strict=True):
        heard = " ".join(m.content or "" for m in traj.conversation if m.role in ("user", "tool"))
        for i, (label, kind) in enumerate(zip(labels, kinds, strict=True)):
            assert (kind is None) == (label == IGNORE_INDEX)
            if kind in ("first", "continuation"):
                seen_value += 1
                assert tiny_tokenizer.decode([label]).strip() in heard
            if kind == "continuation":
                assert kinds[i - 1] in ("first", "continuation")
    assert seen_value > 50


def test_values_only_batches_supervise_value_tokens_alone(scripts, trajectories, tiny_tokenizer):
    value_accuracy, bench = scripts
    samples = value_accuracy.render_classes(tiny_tokenizer, trajectories[:6])
    ids, every = bench.make_batch(samples, 0, values_only=False)
    _, values = bench.make_batch(samples, 0, values_only=True)
    for row, (x, labels, kinds) in enumerate(samples):
        assert ids[row, : len(x)].tolist() == x
        assert (ids[row, len(x) :] == 0).all()
        for j, kind in enumerate(kinds):
            assert every[row, j].item() == (IGNORE_INDEX if kind is None else labels[j])
            want = labels[j] if kind in ("first", "continuation") else IGNORE_INDEX
            assert values[row, j].item() == want
    assert (values != IGNORE_INDEX).sum() < (every != IGNORE_INDEX).sum()


def test_first_turn_keeps_the_first_exchange_without_tools(scripts, trajectories) -> None:
    _, bench = scripts
    cut = list(bench.first_turn(iter(trajectories)))
    assert len(cut) == len(trajectories)
    for whole, short in zip(trajectories, cut, strict=True):
        roles = [m.role for m in short.conversation]
        assert short.tools == [] and roles[-1] == "assistant" and roles.count("assistant") == 1
        assert short.conversation == whole.conversation[: len(roles)]


def test_teacher_forced_counts_every_value_token(scripts, trajectories, tiny_tokenizer) -> None:
    value_accuracy, bench = scripts
    samples = value_accuracy.render_classes(tiny_tokenizer, trajectories[:4])
    torch.manual_seed(0)
    model = bench.build_model(len(tiny_tokenizer), "qwen2", sliding_window=16)
    assert model.config.sliding_window == 16
    result = value_accuracy.teacher_forced(model, samples)
    # the reference: one padded batch, labels shifted against the logits
    ids, labels = bench.make_batch(samples, 0, values_only=False)
    with torch.no_grad():
        hit = model(input_ids=ids).logits[:, :-1].argmax(-1) == labels[:, 1:]
    for kind in ("first", "continuation", "other"):
        where = torch.zeros_like(hit)
        for row, (_, _, kinds) in enumerate(samples):
            for j, k in enumerate(kinds[1:]):
                where[row, j] = k == kind
        assert result[kind]["tokens"] == int(where.sum()) > 0
        assert result[kind]["accuracy"] == round(hit[where].float().mean().item(), 3)
    assert model.training  # restored
