"""Shared test fixtures and helpers.

Fixtures: offline mode, the shared real-data folder, the tiny tokenizer. Helpers: the real
CLIs in a subprocess, the overrides that quieten a run, a tiny model config, and readers of
what a run writes (``csv/metrics.csv``, ``debug/batches-rank<r>.jsonl``). Test modules
import the helpers as ``from conftest import ...``: under pytest's default ``prepend``
import mode ``tests/`` is on ``sys.path`` and this file is the module ``conftest``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent


def entry_point(name: str) -> str:
    """Path of a console script (``xlam-train``) of the environment running the tests."""
    return shutil.which(name) or str(Path(sys.executable).parent / name)


XLAM_TRAIN = entry_point("xlam-train")
XLAM_EXPORT = entry_point("xlam-export")
XLAM_EVAL = entry_point("xlam-eval")

# For subprocesses: offline, full Hydra tracebacks in the failure message, and tests/ on
# PYTHONPATH so a config can name a callback defined in a test module (test_x.Class).
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "TOKENIZERS_PARALLELISM": "false",
    "HYDRA_FULL_ERROR": "1",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
}

# A run that prints neither its config nor a progress bar.
QUIET = [
    "extras.print_config=false",
    "trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
]

# A short run: quiet, no validation, micro-batches of two packed rows.
SMALL_RUN = [*QUIET, "data.val_size=0", "data.batch_size=2"]

# Transformers config fields of a Qwen2 small enough to train in a test (build_causal_lm).
TINY_QWEN2: dict[str, Any] = {
    "model_type": "qwen2",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}


def train_small(
    run: Path, *overrides: str, log_dir: Path | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """Train the embedded default in-process with :data:`SMALL_RUN` and ``overrides``.

    The run writes to ``run``; logs, the run index and the render cache to ``log_dir``
    (default: ``logs`` beside ``run``). Returns what :func:`xlam.train.train` returns.
    """
    from xlam.train import train
    from xlam.utils.hydra import compose_config

    log_dir = run.parent / "logs" if log_dir is None else log_dir
    cfg = compose_config([*SMALL_RUN, f"paths.log_dir={log_dir}", *overrides], output_dir=run)
    return train(cfg)


def leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The non-mapping values of a nested mapping, by dotted key (``a.b.c``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out |= leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_cli(
    args: Sequence[str],
    cwd: Path,
    exe: str = XLAM_TRAIN,
    timeout: int = 400,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run a CLI to its end; with ``check``, fail the test with its output unless it exits 0."""
    proc = subprocess.run(
        [exe, *args],
        cwd=cwd,
        env=ENV if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def launch_cli(args: Sequence[str], cwd: Path, exe: str = XLAM_TRAIN) -> subprocess.Popen:
    """Start a CLI in ``cwd`` (created) without waiting; stderr is kept for failure messages."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [exe, *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def train_rows(run: Path) -> list[dict[str, str]]:
    """The rows of ``run/csv/metrics.csv`` that log a training step, as written."""
    with (run / "csv" / "metrics.csv").open() as f:
        return [r for r in csv.DictReader(f) if r.get("train/loss")]


def step_metrics(run: Path) -> dict[int, dict[str, float]]:
    """Training metrics per optimizer step (the non-empty columns of each row)."""
    return {int(r["step"]): {k: float(v) for k, v in r.items() if v} for r in train_rows(run)}


def train_losses(run: Path) -> dict[int, float]:
    """``train/loss`` per optimizer step."""
    return {int(r["step"]): float(r["train/loss"]) for r in train_rows(run)}


def batch_records(run: Path, rank: int = 0) -> list[dict[str, Any]]:
    """The micro-batch records of ``callbacks=debug`` (none before the file exists).

    Only whole lines count: the run may still be writing the last one.
    """
    log = run / "debug" / f"batches-rank{rank}.jsonl"
    if not log.is_file():
        return []
    lines = log.read_text().splitlines(keepends=True)
    return [json.loads(x) for x in lines if x.endswith("\n") and x.strip()]


def batch_ids(run: Path, rank: int = 0) -> dict[tuple[int, int], list[str]]:
    """Sample ids per (step, micro-batch); a resumed run appends, so the last record wins."""
    return {(r["step"], r["micro"]): r["ids"] for r in batch_records(run, rank)}


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """The real third-party data in ``../shared/fixtures`` (or ``$XLAM_SHARED_FIXTURES``)."""
    path = Path(os.environ.get("XLAM_SHARED_FIXTURES", ROOT.parent / "shared" / "fixtures"))
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared fixtures folder {path} is missing in CI")
        pytest.skip(f"shared fixtures folder {path} is absent (clone ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from transformers import AutoTokenizer

    from xlam import TINY_TOKENIZER_DIR

    return AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR)


def first_samples(tokenizer, per_source: int = 3) -> list[tuple[str, object]]:
    """``(source, RenderedSample)`` of the first trajectories of each embedded source."""
    from xlam import SAMPLE_DATA_DIR
    from xlam.data.render import Renderer
    from xlam.data.schema import read_trajectories

    renderer = Renderer(tokenizer)
    out = []
    for name in ("chat", "fc_single", "multi_turn"):
        for i, t in enumerate(read_trajectories(SAMPLE_DATA_DIR / f"{name}.jsonl")):
            if i == per_source:
                break
            out.append((name, renderer.render(t)[0]))
    return out


class TinyModules(dict):
    """CausalLMModule of the default config (tiny Qwen2) per tuple of overrides, built once."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out = out

    def __missing__(self, overrides: tuple[str, ...]):
        import hydra

        from xlam.utils.hydra import compose_config

        module = hydra.utils.instantiate(compose_config(list(overrides), output_dir=self.out).model)
        module.configure_model()
        self[overrides] = module.eval()
        return self[overrides]
