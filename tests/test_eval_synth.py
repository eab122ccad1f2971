"""The ``synth`` eval suite: next action per turn and live episodes in the environments.

The oracle must score 100% on every view and metric; a backend that never calls scores 0
wherever a call is needed and succeeds only where the task is a refusal (or, per turn, a
text turn without values: a question). The real ``hf`` backend (a random tiny model) runs
episodes through the real prompt builder; its scores are whatever they are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_QWEN2

from xlam.data.schema import SchemaError
from xlam.eval.backends.oracle import ConstantBackend, OracleBackend
from xlam.eval.core import Backend, Completion, Request
from xlam.eval.suites.synth import METRICS, SynthSuite
from xlam.synth.generate import generate

QUIET_EVAL = ["eval.progress=false", "eval.charts=false"]


def _run(suite: SynthSuite, backend: Backend, skip: set[str] | None = None) -> list[dict]:
    out: list[dict] = []
    suite.run(backend, skip or set(), lambda v: out.append(v.to_dict()))
    return out


@pytest.fixture(scope="module")
def suite() -> SynthSuite:
    return SynthSuite(n=80, seed=3, split="test", batch_size=16)


def test_items_cover_every_turn_and_one_episode_per_task(suite: SynthSuite) -> None:
    ids = suite.ids()
    assert len(ids) == len(set(ids))
    for task in suite.tasks:
        turns = sum(m["role"] == "assistant" for m in task.traj["conversation"])
        mine = [i for i in ids if i.split("#")[0] == task.id]
        assert mine == [f"{task.id}#{k}" for k in range(turns)] + [f"{task.id}#episode"]
    kinds = {t.kind for t in suite.tasks}
    assert len(kinds) == 8
    # next-action requests hold the gold history: the turn's messages, not the gold turn
    for req in suite.requests():
        task_id, k = req.id.split("#")
        task = next(t for t in suite.tasks if t.id == task_id)
        conv = task.traj["conversation"]
        i = [j for j, m in enumerate(conv) if m["role"] == "assistant"][int(k)]
        assert [m["content"] for m in req.messages] == [m["content"] for m in conv[:i]]


def test_oracle_scores_100_percent_everywhere(suite: SynthSuite) -> None:
    verdicts = _run(suite, OracleBackend())
    assert sorted(v["id"] for v in verdicts) == sorted(suite.ids())
    bad = [(v["id"], v["error_type"], v["detail"]) for v in verdicts if not v["valid"]]
    assert not bad, bad[:5]
    summary = suite.summarize(verdicts)
    assert summary["accuracy"] == 1.0
    assert summary["metrics"] == dict.fromkeys(METRICS, 1.0)
    assert set(summary["categories"]) == set(summary["by_kind"])
    for row in summary["by_kind"].values():
        assert row["episode_success"] == row["episode_partial"] == row["next_action"] == 1.0


def test_a_backend_that_never_calls_scores_zero_except_refusals(suite: SynthSuite) -> None:
    verdicts = _run(suite, ConstantBackend())
    m = suite.summarize(verdicts)["metrics"]
    assert m["exact_match_single"] == m["exact_match_parallel"] == 0.0
    episodes = [v for v in verdicts if v["extra"]["view"] == "episode"]
    for v in episodes:
        assert v["valid"] is (v["category"] == "refuse"), v
    refuse = sum(v["category"] == "refuse" for v in episodes)
    assert m["episode_success"] == refuse / len(episodes) < 0.25
    for v in verdicts:
        if v["extra"]["view"] == "next_action" and v["valid"]:
            # only turns that want text without values: refusals and questions
            assert not v["extra"]["expects_call"]
            assert v["category"] in ("refuse", "ask_missing"), v
    assert {v["error_type"] for v in verdicts if not v["valid"]} <= {"missed_call", "wrong_value"}


class _Scripted(Backend):
    """The oracle, except for chosen request ids: a fixed text there."""

    name = "scripted"

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts
        self.oracle = OracleBackend()
        self.batch_size = 8

    def generate(self, requests: list[Request]) -> list[Completion]:
        gold = self.oracle.generate(requests)
        return [Completion(text=self.texts.get(r.id, g.text)) for r, g in zip(requests, gold)]


def test_failures_are_typed() -> None:
    suite = SynthSuite(n=40, seed=5, split="test")
    single = next(t for t in suite.tasks if t.kind == "single")
    call = single.meta["calls"][0][0]
    other = next(n for n in (t["function"]["name"] for t in single.tools) if n != call["name"])
    final = f"{single.id}#{len(single.meta['calls']) - 1}"
    texts = {
        f"{single.id}#0": json.dumps([{"name": other, "arguments": call["arguments"]}]),
        final: "Done.",
        f"{single.id}#episode.0": '[{"name": "add", "arguments": }]',
    }
    verdicts = {v["id"]: v for v in _run(suite, _Scripted(texts))}
    assert verdicts[f"{single.id}#0"]["error_type"] == "wrong_function"
    assert verdicts[final]["error_type"] == "wrong_value"  # the answer lacks its values
    ep = verdicts[f"{single.id}#episode"]
    assert ep["error_type"] == "parse_error" and ep["extra"]["parse_errors"]
    others = [v for i, v in verdicts.items() if not i.startswith(single.id + "#")]
    assert all(v["valid"] for v in others)


def test_episodes_stop_after_max_steps() -> None:
    suite = SynthSuite(n=10, seed=5, split="test", max_steps=2)
    task = next(t for t in suite.tasks if t.kind == "single")
    call = json.dumps([task.meta["calls"][0][0]])
    texts = {f"{task.id}#episode.{k}": call for k in range(10)}
    verdicts = {v["id"]: v for v in _run(suite, _Scripted(texts))}
    ep = verdicts[f"{task.id}#episode"]
    assert ep["extra"]["force_terminated"] and ep["extra"]["generations"] == 3
    assert not ep["valid"] and len(ep["calls"]) == 3


def test_a_resumed_run_scores_only_the_rest(suite: SynthSuite) -> None:
    ids = suite.ids()
    done = set(ids[::2])
    verdicts = _run(suite, OracleBackend(), skip=done)
    assert sorted(v["id"] for v in verdicts) == sorted(set(ids) - done)


def test_a_file_is_read_and_bad_tasks_are_named(tmp_path: Path) -> None:
    trajs = generate(12, 7, "test")
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in trajs))
    s = SynthSuite(path=path, limit=5)
    assert [t.id for t in s.tasks] == [t["unique_trajectory_id"] for t in trajs[:5]]
    assert all(v["valid"] for v in _run(s, OracleBackend()))
    tool = next(m for m in trajs[3]["conversation"] if m["role"] == "tool")
    tool["content"] = '{"made": "up"}'
    path.write_text("".join(json.dumps(t) + "\n" for t in trajs))
    with pytest.raises(SchemaError, match=r"test\.jsonl:4: fails the execution check"):
        SynthSuite(path=path)
    path.write_text(json.dumps(trajs[0]) + "\n" + json.dumps(trajs[0]) + "\n")
    with pytest.raises(SchemaError, match="already used"):
        SynthSuite(path=path)
    with pytest.raises(ValueError, match="max_steps"):
        SynthSuite(n=2, max_steps=0)


def test_xlam_eval_runs_the_suite_from_its_config(tmp_path: Path) -> None:
    from xlam.eval.app import evaluate
    from xlam.utils.hydra import compose_config

    cfg = compose_config(
        ["suite=synth", "backend=oracle", "suite.n=16", "eval.limit=12", *QUIET_EVAL],
        output_dir=tmp_path / "eval",
        config_name="eval",
    )
    summary = evaluate(cfg)
    assert summary["suite"] == "synth" and summary["accuracy"] == 1.0
    items = [json.loads(x) for x in (tmp_path / "eval" / "items.jsonl").read_text().splitlines()]
    assert sum(v["id"].endswith("#episode") for v in items) == 12
    assert summary["metrics"]["episode_success"] == 1.0


def test_the_hf_backend_runs_episodes_through_the_prompt_builder(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from transformers import AutoTokenizer

    from xlam import TINY_TOKENIZER_DIR
    from xlam.eval.backends import HFBackend
    from xlam.models.components.build import build_causal_lm
    from xlam.models.export import export_hf

    tok = AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR)
    model = build_causal_lm(None, len(tok), from_config=TINY_QWEN2, seed=0)
    export = export_hf(model, tok, tmp_path_factory.mktemp("tiny") / "export")
    backend = HFBackend(str(export), batch_size=8, max_new_tokens=6, device="cpu")
    suite = SynthSuite(n=6, seed=2, split="test", max_steps=1)
    verdicts = _run(suite, backend)
    assert sorted(v["id"] for v in verdicts) == sorted(suite.ids())
    assert all(v["prompt_hash"] for v in verdicts)
    summary = suite.summarize(verdicts)
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert {"next_action", "episode_success", "episode_partial"} <= set(summary["metrics"])
