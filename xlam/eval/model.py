"""What ``xlam-eval`` evaluates: an HF folder (a training export) or a training run dir.

A run dir's export is used, with the render options of the run's own config; a bare
export carries them in :data:`~xlam.models.export.RENDER_FILE`. Either way the eval
prompts the model exactly as training rendered its samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The files whose bytes define a model for the eval: weights, config, tokenizer, template.
_HASHED_SUFFIXES = (".safetensors", ".bin", ".json", ".jinja", ".model", ".txt")


@dataclass
class EvalModel:
    """A model to evaluate.

    Attributes:
        path: The HF folder (weights, config, tokenizer with its chat template).
        render: The render options prompts are made with (``data.render`` of training).
        render_origin: Where ``render`` came from (``run config``, ``export``, ``eval
            config`` or ``defaults``).
        run_dir: The training run dir, when one was given.
        run_record: The run's record (``run-<id>.json``), when there is one.
    """

    path: Path
    render: dict[str, Any]
    render_origin: str
    run_dir: Path | None = None
    run_record: dict[str, Any] | None = field(default=None, repr=False)

    def hash(self) -> str:
        """sha256 of the model folder's defining files (names and bytes), 16 hex digits."""
        h = hashlib.sha256()
        for f in sorted(self.path.iterdir()):
            if f.is_file() and f.suffix in _HASHED_SUFFIXES:
                h.update(f.name.encode() + b"\0")
                with f.open("rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1 << 22), b""):
                        h.update(chunk)
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """What the eval's run record says about the model."""
        rec = self.run_record or {}
        return {
            "path": str(self.path),
            "hash": self.hash(),
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "run_id": rec.get("run_id"),
            "render": self.render,
            "render_origin": self.render_origin,
        }


def _latest_record(run_dir: Path) -> dict[str, Any] | None:
    records = sorted(run_dir.glob("run-*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(records[-1].read_text()) if records else None


def resolve_model(path: str | Path, render: dict[str, Any] | None = None) -> EvalModel:
    """Find the HF folder and the render options for ``path``.

    Args:
        path: An HF model folder or an ``xlam-train`` run dir.
        render: Render options that override the model's own (keys of ``data.render``).

    Raises:
        FileNotFoundError: ``path`` is neither, or a run dir has no export yet.
    """
    from omegaconf import OmegaConf

    from xlam.models.export import read_render_options

    p = Path(path).expanduser().resolve()
    run_dir = None
    record = None
    base: dict[str, Any] | None = None
    origin = "defaults"
    if (p / "config.yaml").is_file() and not (p / "config.json").is_file():
        run_dir = p
        record = _latest_record(p)
        cfg = OmegaConf.to_container(OmegaConf.load(p / "config.yaml"), resolve=False)
        base = (cfg.get("data") or {}).get("render")
        origin = "run config"
        export = Path((record or {}).get("export_dir") or p / "export")
        if not (export / "config.json").is_file():
            raise FileNotFoundError(
                f"{p} is a training run dir without an export at {export}: run "
                f"`xlam-export {p}` first (or train with export.enabled=true)"
            )
        p = export
    elif not (p / "config.json").is_file():
        raise FileNotFoundError(
            f"{p}: not an HF model folder (no config.json) nor an xlam run dir (no config.yaml)"
        )
    if base is None:
        base = read_render_options(p)
        origin = "export" if base is not None else origin
    if base is None:
        log.warning(
            "%s carries no render options (%s): prompts use the eval config's render "
            "settings; pass render.tool_format=... if the model was trained otherwise",
            p,
            "xlam_render.json",
        )
    opts = dict(base or {})
    if render:
        opts.update({k: v for k, v in render.items() if v is not None})
        origin = "eval config" if base is None else f"{origin} + eval config"
    opts.pop("strict", None)
    return EvalModel(p, opts, origin, run_dir, record)


__all__ = ["EvalModel", "resolve_model"]
