"""The run record: what a run was (config, data, versions, commit) and what it gave."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LIBRARIES = ("xlam", "torch", "lightning", "transformers", "peft", "hydra-core", "datasets",
             "deepspeed", "tokenizers", "wandb")


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = None
    return out


def git_commit(cwd: str | Path | None = None) -> dict[str, Any]:
    """Commit of the xlam source tree (and whether it had local changes)."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=where, capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip() != ""
        return {"commit": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def new_run_id() -> str:
    import uuid

    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def write_run_record(
    output_dir: str | Path,
    run_id: str,
    config: dict[str, Any],
    mixture: dict[str, Any],
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    index_file: str | Path | None = None,
) -> Path:
    """Write ``<output_dir>/run-<run_id>.json`` and append a summary line to the index.

    Returns:
        The path of the record.
    """
    output_dir = Path(output_dir)
    record = {
        "run_id": run_id,
        "created": datetime.now(UTC).isoformat(),
        "output_dir": str(output_dir.resolve()),
        "git": git_commit(),
        "versions": library_versions(),
        "config": config,
        "mixture": mixture,
        "metrics": metrics,
        **(extra or {}),
    }
    path = output_dir / f"run-{run_id}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    if index_file is not None:
        index_file = Path(index_file)
        index_file.parent.mkdir(parents=True, exist_ok=True)
        line = {
            "run_id": run_id,
            "created": record["created"],
            "output_dir": record["output_dir"],
            "record": str(path.resolve()),
            "model": (config.get("model") or {}).get("path") or "tiny",
            "trainer": (config.get("trainer") or {}).get("strategy"),
            "metrics": metrics,
        }
        with index_file.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str) + "\n")
    return path
