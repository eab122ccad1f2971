"""``xlam-eval`` end to end: outputs, the run record, resume after a kill, run dirs.

Backends here are the oracle (the gold), a slowed oracle that records what it was asked
(to kill an eval mid-way), and the real ``hf`` backend on a trained tiny run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ENV, XLAM_EVAL, run_cli, train_small

from xlam import SAMPLE_DATA_DIR
from xlam.data.schema import read_trajectories
from xlam.eval.backends.oracle import OracleBackend
from xlam.eval.core import Completion, Request

QUIET_EVAL = ["eval.progress=false"]


def _assistant_turns(path: Path) -> int:
    return sum(1 for t in read_trajectories(path) for m in t.conversation if m.role == "assistant")


class RecordingOracle(OracleBackend):
    """The oracle, one request at a time, appending each id it gets to $XLAM_TEST_ASKED and
    slowed by $XLAM_TEST_DELAY seconds (from the environment: not part of the eval's config,
    so a faster re-run is the same eval)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(batch_size=1)

    def generate(self, requests: list[Request]) -> list[Completion]:
        with open(os.environ["XLAM_TEST_ASKED"], "a") as f:
            for r in requests:
                f.write(r.id + "\n")
        time.sleep(float(os.environ.get("XLAM_TEST_DELAY", "0")))
        return super().generate(requests)


def _items(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "items.jsonl").read_text().splitlines()]


def test_cli_oracle_writes_every_output(tmp_path: Path) -> None:
    data = SAMPLE_DATA_DIR / "fc_single.jsonl"
    run = tmp_path / "eval"
    run_cli(
        [
            "suite=trajectories",
            f"suite.path={data}",
            "backend=oracle",
            f"hydra.run.dir={run}",
            *QUIET_EVAL,
        ],
        cwd=tmp_path,
        exe=XLAM_EVAL,
    )
    summary = json.loads((run / "summary.json").read_text())
    items = _items(run)
    assert len(items) == summary["n"] == _assistant_turns(data)
    assert summary["accuracy"] == 1.0 and summary["metrics"]["call_accuracy"] == 1.0
    assert {"id", "prompt_hash", "raw", "calls", "valid", "error_type"} <= set(items[0])
    assert "| **all** |" in (run / "summary.md").read_text()
    for png in [
        run / "accuracy.png",
        *(run / "charts" / f"{c}.png" for c in summary["categories"]),
    ]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    (record,) = run.glob("eval-*.json")
    rec = json.loads(record.read_text())
    assert rec["suite_version"] == summary["suite_version"] and rec["versions"]["torch"]
    assert rec["accuracy"] == 1.0


def test_killed_eval_resumes_in_place(tmp_path: Path) -> None:
    # SIGKILL mid-way; the same command re-run in the same dir asks only for the rest.
    data = SAMPLE_DATA_DIR / "multi_turn.jsonl"
    run = tmp_path / "eval"
    asked = tmp_path / "asked.txt"
    args = [
        XLAM_EVAL,
        "suite=trajectories",
        f"suite.path={data}",
        "backend=oracle",
        "backend._target_=test_eval_app.RecordingOracle",
        f"hydra.run.dir={run}",
        *QUIET_EVAL,
    ]
    env = {**ENV, "XLAM_TEST_ASKED": str(asked)}
    proc = subprocess.Popen(
        args, cwd=tmp_path, env={**env, "XLAM_TEST_DELAY": "0.3"}, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (run / "items.jsonl").is_file() or len(_items(run)) < 3:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {v["id"] for v in _items(run)}
    total = _assistant_turns(data)
    assert 3 <= len(first) < total and not (run / "summary.json").exists()
    asked.write_text("")
    run_cli(args[1:], cwd=tmp_path, exe=XLAM_EVAL, env=env)
    second = asked.read_text().split()
    assert not set(second) & first  # finished items were not generated again
    items = _items(run)
    assert sorted(v["id"] for v in items) == sorted(first | set(second))
    assert len(items) == total
    assert json.loads((run / "summary.json").read_text())["accuracy"] == 1.0


def test_another_eval_in_the_same_dir_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "eval"
    common = ["suite=trajectories", f"hydra.run.dir={run}", "backend=oracle", *QUIET_EVAL]
    run_cli([*common, f"suite.path={SAMPLE_DATA_DIR / 'chat.jsonl'}"], tmp_path, exe=XLAM_EVAL)
    proc = run_cli(
        [*common, f"suite.path={SAMPLE_DATA_DIR / 'fc_single.jsonl'}"],
        tmp_path,
        exe=XLAM_EVAL,
        check=False,
    )
    assert proc.returncode != 0
    assert "holds results of another eval" in proc.stderr and "suite_config" in proc.stderr


def test_hf_backend_needs_a_model(tmp_path: Path) -> None:
    proc = run_cli(
        [
            "suite=trajectories",
            f"suite.path={SAMPLE_DATA_DIR / 'chat.jsonl'}",
            f"hydra.run.dir={tmp_path / 'e'}",
            *QUIET_EVAL,
        ],
        tmp_path,
        exe=XLAM_EVAL,
        check=False,
    )
    assert proc.returncode != 0 and "model_path=<HF folder or xlam-train run dir>" in proc.stderr


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    run = tmp_path_factory.mktemp("train") / "run"
    _, objects = train_small(run, "trainer.max_steps=2", "data.val_size=2")
    held_out = {str(s["id"]).split("#")[0] for s in objects["datamodule"].val_samples}
    return run, held_out


def test_run_dir_is_evaluated_on_its_heldout_split_with_its_render(
    trained_run: tuple[Path, set[str]], tmp_path: Path
) -> None:
    from xlam.eval.app import evaluate
    from xlam.eval.model import resolve_model
    from xlam.models.export import read_render_options
    from xlam.utils.hydra import compose_config

    trained_run, held_out = trained_run
    export = trained_run / "export"
    cfg_render = json.loads(json.dumps(read_render_options(export)))
    assert cfg_render["tool_format"] == "template"  # written by the training export
    cfg = compose_config(
        [
            f"model_path={trained_run}",
            "suite=trajectories",
            "backend.max_new_tokens=8",
            "eval.limit=100",
            *QUIET_EVAL,
        ],
        output_dir=tmp_path / "eval",
        config_name="eval",
    )
    summary = evaluate(cfg)
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert summary["model"]["run_dir"] == str(trained_run.resolve())
    assert summary["model"]["render_origin"] == "run config"
    assert summary["model"]["hash"] == resolve_model(export).hash()
    items = _items(tmp_path / "eval")
    assert all(v["prompt_hash"] for v in items)
    # exactly the trajectories training held out (val_size=2 per source), every turn
    assert {v["id"].split("#")[0] for v in items} == held_out and len(held_out) == 2 * 3


def test_bfcl_through_the_app_with_the_hf_backend(
    trained_run: tuple[Path, set[str]], tmp_path: Path
) -> None:
    # The whole chain on the real benchmark: a trained run's export generates (hf), BFCL's
    # checkers score single-turn items and multi-turn episodes; the summary has BFCL's
    # figures. An untrained model's scores are whatever they are: the chain must hold.
    from test_eval_bfcl import _bfcl_python

    from xlam.eval.app import evaluate
    from xlam.utils.hydra import compose_config

    _bfcl_python()
    run, _ = trained_run
    cats = ["simple_python", "irrelevance", "multi_turn_base"]
    cfg = compose_config(
        [
            f"model_path={run}",
            "suite=bfcl",
            f"eval.categories=[{','.join(cats)}]",
            "eval.limit=2",
            "suite.max_steps=2",
            "backend.max_new_tokens=16",
            *QUIET_EVAL,
        ],
        output_dir=tmp_path / "eval",
        config_name="eval",
    )
    summary = evaluate(cfg)
    assert summary["suite_version"].startswith("bfcl-eval ")
    assert sorted(summary["categories"]) == sorted(cats)
    assert summary["n"] == 6 and len(_items(tmp_path / "eval")) == 6
    assert {"non_live_ast", "irrelevance", "multi_turn", "overall"} <= set(summary["metrics"])
    # BFCL's files stay in the eval run dir
    assert (tmp_path / "eval" / "bfcl").is_dir()
