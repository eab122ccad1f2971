"""The run record: what a run was (config, data, versions, commit) and what it gave.

Every run writes into its own directory:

* ``config.yaml``: the full resolved config (also enough for ``xlam-export`` to rebuild the
  model),
* ``run-<id>.json``: config, mixture plan and the per-source counts actually trained, final
  metrics, git commit, library versions, the DeepSpeed config used (if any), and
* appends one summary line to the index of runs in the output root (``runs_index.jsonl``),
  which :func:`load_runs` reads back as records or a DataFrame.

None of them holds a secret: the value of every environment variable named like one
(``*_API_KEY``, ``HF_TOKEN``, ``*_SECRET*``, ``*_PASSWORD``...) is replaced by
``<redacted:NAME>`` wherever it appears, e.g. in a config that reads it with ``${oc.env:...}``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LIBRARIES = (
    "xlam",
    "torch",
    "lightning",
    "transformers",
    "peft",
    "hydra-core",
    "datasets",
    "deepspeed",
    "tokenizers",
    "wandb",
    "bitsandbytes",
    "safetensors",
    "accelerate",
)

RECORD_GLOB = "run-*.json"

# A word of an environment variable's name that marks its value as a secret.
_SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIALS"}
# Shorter values ("1", "true") are settings, not secrets, and too common to mask.
_MIN_SECRET_LEN = 8


def secret_values(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``{value: name}`` of the environment variables named like secrets."""
    env = os.environ if environ is None else environ
    out = {}
    for name, value in env.items():
        words = set(re.split(r"[^A-Z0-9]+", name.upper()))
        if words & _SECRET_WORDS and len(value) >= _MIN_SECRET_LEN:
            out[value] = name
    return out


def redact(obj: Any, secrets: dict[str, str] | None = None) -> Any:
    """``obj`` (strings, dicts, lists) with every secret value replaced by ``<redacted:NAME>``."""
    secrets = secret_values() if secrets is None else secrets
    if not secrets:
        return obj
    if isinstance(obj, str):
        for value in sorted(secrets, key=len, reverse=True):
            if value in obj:
                obj = obj.replace(value, f"<redacted:{secrets[value]}>")
        return obj
    if isinstance(obj, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v, secrets) for v in obj]
    return obj


def library_versions() -> dict[str, str | None]:
    """Versions of Python and the libraries that shape a run's numbers."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = None
    try:
        import torch

        out["cuda"] = torch.version.cuda
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return out


def git_commit(cwd: str | Path | None = None) -> dict[str, Any]:
    """Commit of the xlam source tree (and whether it had local changes)."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": git("status", "--porcelain") != ""}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def new_run_id() -> str:
    import uuid

    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def write_config(output_dir: str | Path, config: dict[str, Any]) -> Path:
    """Write the resolved config as ``<output_dir>/config.yaml``."""
    from omegaconf import OmegaConf

    path = Path(output_dir) / "config.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(redact(config))))
    return path


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

    Args:
        output_dir: The run directory.
        run_id: Unique id of the run.
        config: The resolved config (without the ``hydra`` node).
        mixture: ``{plan, sources, total_samples, actual?}`` from the datamodule.
        metrics: Final metrics.
        extra: More top-level fields (global step, world size, DeepSpeed config...).
        index_file: The index of runs (JSON lines) to append to.

    Returns:
        The path of the record.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    secrets = secret_values()
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
    record = redact(record, secrets)
    path = output_dir / f"run-{run_id}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    if index_file is not None:
        index_file = Path(index_file)
        index_file.parent.mkdir(parents=True, exist_ok=True)
        model = config.get("model") or {}
        trainer = config.get("trainer") or {}
        strategy = trainer.get("strategy")
        if isinstance(strategy, dict):
            strategy = strategy.get("_target_", "").rsplit(".", 1)[-1] + (
                f"(stage={strategy['stage']})" if "stage" in strategy else ""
            )
        line = {
            "run_id": run_id,
            "created": record["created"],
            "output_dir": record["output_dir"],
            "record": str(path.resolve()),
            "task_name": config.get("task_name"),
            "tags": config.get("tags"),
            "model": model.get("path") or "tiny",
            "lora": bool((model.get("lora") or {}).get("enabled")),
            "quantization": model.get("quantization"),
            "trainer": strategy,
            "precision": trainer.get("precision"),
            "world_size": (extra or {}).get("world_size"),
            "global_step": (extra or {}).get("global_step"),
            "commit": record["git"].get("commit"),
            "metrics": metrics,
        }
        with index_file.open("a", encoding="utf-8") as f:
            f.write(json.dumps(redact(line, secrets), default=str) + "\n")
    return path


def load_runs(index_file: str | Path, as_frame: bool = False, full: bool = False) -> Any:
    """Read the index of runs.

    Args:
        index_file: The ``runs_index.jsonl`` of an output root.
        as_frame: Return a pandas DataFrame with ``metrics`` flattened to ``metrics.<name>``
            columns (``pandas`` needed) instead of a list of dicts.
        full: Load each run's whole record (config, mixture, versions) instead of the summary.

    Returns:
        A list of dicts (oldest first), or a DataFrame.
    """
    path = Path(index_file)
    rows: list[dict[str, Any]] = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if full and Path(row.get("record", "")).is_file():
                row = {**row, **json.loads(Path(row["record"]).read_text())}
            rows.append(row)
    if not as_frame:
        return rows
    import pandas as pd

    return pd.json_normalize(rows, max_level=1)
