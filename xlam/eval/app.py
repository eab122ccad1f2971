"""``xlam-eval``: score a model on a suite; ``evaluate(cfg)`` does the work.

The model (an export or a run dir) gives the HF folder and the render options training
used; the backend generates (``hf``, ``openai``, ``vllm``, or ``oracle``/``constant``
for checking the chain); the suite makes the requests and scores them. Everything lands
in the Hydra run dir: ``items.jsonl`` (resumable), ``summary.json``, ``summary.md``,
bar charts and an ``eval-<id>.json`` record.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from xlam.eval.core import Backend, Suite, Verdict
from xlam.eval.model import EvalModel, resolve_model
from xlam.eval.results import ResultStore, metric_value, write_outputs
from xlam.utils.hydra import CONF_DIR, register_resolvers, to_container
from xlam.utils.run_record import git_commit, library_versions, new_run_id, redact

log = logging.getLogger(__name__)
register_resolvers()

# Backends that generate from the model's own weights (the others need no model).
_NEEDS_MODEL = ("HFBackend", "VLLMBackend")


def _target_name(node: DictConfig) -> str:
    return str(node.get("_target_", "")).rsplit(".", 1)[-1]


def _prompts(model: EvalModel | None) -> Any:
    if model is None:
        return None
    from transformers import AutoTokenizer

    from xlam.eval.prompt import PromptBuilder

    tok = AutoTokenizer.from_pretrained(model.path)
    return PromptBuilder(tok, model.render)


def _suite(cfg: DictConfig, model: EvalModel | None) -> Suite:
    kwargs: dict[str, Any] = {}
    if _target_name(cfg.suite) == "TrajectorySuite" and not cfg.suite.get("path"):
        if model is None or model.run_dir is None:
            raise ValueError(
                "suite=trajectories needs suite.path=<held-out JSONL>, or model_path=<a training "
                "run dir> to evaluate on that run's validation split"
            )
        kwargs["trajectories"] = _run_heldout(model.run_dir, cfg.eval.get("limit"))
    # kwargs after instantiation: Hydra would turn the trajectories into configs
    return hydra.utils.instantiate(cfg.suite, _partial_=True)(**kwargs)


def _run_heldout(run_dir: Path, limit: int | None) -> list[Any]:
    from xlam.eval.heldout import heldout_trajectories

    run_cfg = OmegaConf.load(run_dir / "config.yaml")
    dm = hydra.utils.instantiate(run_cfg.data)
    trajs = heldout_trajectories(dm, limit)
    if not trajs:
        raise ValueError(f"{run_dir} held out no trajectories (its data.val_size is 0)")
    log.info("evaluating on %d held-out trajectories of %s", len(trajs), run_dir)
    return trajs


def _progress(total: int, done: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="eval", unit="item", disable=not enabled)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.suite`` through ``cfg.backend`` on ``cfg.model``; write and return the summary.

    Re-run in the same run dir, it scores only the items not yet in ``items.jsonl``.

    Raises:
        ValueError: No model where the backend needs one, or the run dir holds another
            eval's results.
    """
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    backend_name = _target_name(cfg.backend)
    path = cfg.get("model_path")
    if path is None and backend_name in _NEEDS_MODEL:
        raise ValueError(
            "model_path=<HF folder or xlam-train run dir> is required for this backend"
        )
    model = resolve_model(path, to_container(cfg.render)) if path else None
    prompts = _prompts(model)
    started = time.perf_counter()
    suite = _suite(cfg, model)
    backend: Backend | None = None
    try:
        ids = suite.ids()
        model_info = model.describe() if model else None
        identity = {
            "suite": suite.name,
            "suite_version": suite.version,
            "suite_config": to_container(cfg.suite),
            "model_hash": model_info["hash"] if model_info else None,
            "backend": to_container(cfg.backend),
            "n_items": len(ids),
        }
        store = ResultStore(out, redact(identity))
        done = store.done() & set(ids)
        if done:
            log.info("resuming: %d of %d items already scored in %s", len(done), len(ids), out)
        backend = hydra.utils.instantiate(
            cfg.backend, model_dir=str(model.path) if model else None, prompts=prompts
        )
        bar = _progress(len(ids), len(done), bool(cfg.eval.get("progress", True)))

        def emit(v: Verdict) -> None:
            store.write(v)
            bar.update(1)

        try:
            suite.run(backend, done, emit)
        finally:
            bar.close()
            store.close()
        wanted = set(ids)
        verdicts = [v for v in store.verdicts() if v["id"] in wanted]
        missing = len(wanted) - len(verdicts)
        if missing:
            raise RuntimeError(f"the suite scored {len(verdicts)} of {len(ids)} items")
        summary = suite.summarize(verdicts)
        summary.update(
            {
                "suite": suite.name,
                "suite_version": suite.version,
                "model": model_info,
                "backend": redact(backend.describe()),
                "created": datetime.now(UTC).isoformat(),
            }
        )
        write_outputs(summary, out, charts=bool(cfg.eval.get("charts", True)))
        _write_record(out, cfg, summary, time.perf_counter() - started)
        log.info(
            "%s: accuracy %.4f over %d items -> %s",
            suite.name,
            summary["accuracy"],
            summary["n"],
            out,
        )
        return summary
    finally:
        if backend is not None:
            backend.close()
        suite.close()


def _write_record(out: Path, cfg: DictConfig, summary: dict[str, Any], seconds: float) -> Path:
    run_id = new_run_id()
    record = {
        "run_id": run_id,
        "kind": "eval",
        "created": summary["created"],
        "output_dir": str(out.resolve()),
        "git": git_commit(),
        "versions": library_versions(),
        "suite": summary["suite"],
        "suite_version": summary["suite_version"],
        "model": summary["model"],
        "backend": summary["backend"],
        "config": to_container(cfg),
        "seconds": round(seconds, 3),
        "accuracy": summary["accuracy"],
        "metrics": summary.get("metrics", {}),
    }
    path = out / f"eval-{run_id}.json"
    path.write_text(json.dumps(redact(record), indent=2, default=str) + "\n")
    return path


def summary_metric(summary: dict[str, Any], name: str | None) -> float | None:
    """``name`` from the summary's metrics, or its top-level accuracy."""
    if not name:
        return None
    metrics = summary.get("metrics") or {}
    return metric_value(metrics.get(name, summary.get(name)))


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    """``xlam-eval``: compose the eval config from the CLI and evaluate."""
    summary = evaluate(cfg)
    return summary_metric(summary, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
