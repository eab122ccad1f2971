"""The training signal end to end: a reduced ``scripts/bench_learn.py``.

The tiny model trained on verifiable synthetic tasks with xlam's labels (the bench's default
``copy`` recipe) must pick the right tools, call exactly when a call is needed and take
whole right next actions on the held-out test split far more often than the same run with
the labels shifted by one token (which fits its own targets: its training loss falls far
lower). Ratios between two runs of the same length, not absolute times.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_script

pytestmark = pytest.mark.slow


def _bench():
    return load_script("bench_learn")


def test_correct_signal_learns_far_more_than_a_shifted_one(tmp_path: Path) -> None:
    results = _bench().run(tmp_path, n_train=1500, n_test=60, steps=400)
    correct, broken = results["correct"], results["broken"]
    print(json.dumps(results))  # the figures, with -s or on failure
    assert results["synth_report"]["passed"] == results["synth_report"]["generated"]
    # the broken run learned what it was taught (to repeat its input), not nothing
    assert broken["final_train_loss"] < 0.1 * correct["final_train_loss"]
    assert correct["tool_name_accuracy"] >= 0.15
    assert correct["tool_name_accuracy"] >= 10 * broken["tool_name_accuracy"]
    assert correct["relevance_accuracy"] >= 1.3 * broken["relevance_accuracy"]
    # whole next actions (the call with its arguments, or the answer): the shifted run has none
    assert correct["next_action"] >= max(0.03, 10 * broken["next_action"])
