"""An eval's outputs in its run dir: per-item verdicts (resumable), summary, table, charts.

``items.jsonl`` gets one line per scored item, flushed as it is scored. A killed eval
re-run in the same dir reads the finished ids back and skips them; a half-written last
line (the kill) is cut off first. ``eval_state.json`` pins what the lines were scored
against, so a re-run with another model or suite cannot mix its results in.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from xlam.eval.core import Verdict

log = logging.getLogger(__name__)

ITEMS_FILE = "items.jsonl"
STATE_FILE = "eval_state.json"
SUMMARY_FILE = "summary.json"
TABLE_FILE = "summary.md"


class ResultStore:
    """``items.jsonl`` of one eval run, appended to as items are scored.

    Args:
        out_dir: The eval run dir.
        identity: What the verdicts depend on (suite and version, model hash, backend,
            categories, limit); must equal the stored one to resume.

    Raises:
        ValueError: The dir holds results of a different eval.
    """

    def __init__(self, out_dir: str | Path, identity: dict[str, Any]) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / ITEMS_FILE
        state = self.dir / STATE_FILE
        identity = json.loads(json.dumps(identity, default=str))
        if state.is_file():
            stored = json.loads(state.read_text())
            if stored != identity:
                diff = sorted(k for k in {*stored, *identity} if stored.get(k) != identity.get(k))
                raise ValueError(
                    f"{self.dir} holds results of another eval (differs in {', '.join(diff)}): "
                    "resume only the same eval there, or choose a new hydra.run.dir"
                )
        else:
            state.write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
        self._verdicts = self._read()
        self._file = self.path.open("a", encoding="utf-8")

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep < len(data):
            # The last line was being written when the eval was killed: score it again.
            log.warning("%s: dropping a half-written last line (rescored)", self.path)
            with self.path.open("r+b") as f:
                f.truncate(keep)
            data = data[:keep]
        out = []
        for n, line in enumerate(data.decode().splitlines(), 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.path}:{n}: not a JSON verdict line: {e}") from None
        return out

    def done(self) -> set[str]:
        """Ids already scored."""
        return {v["id"] for v in self._verdicts}

    def write(self, verdict: Verdict) -> None:
        """Append one verdict and flush it to disk."""
        d = verdict.to_dict()
        self._file.write(json.dumps(d, ensure_ascii=False, default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._verdicts.append(d)

    def verdicts(self) -> list[dict[str, Any]]:
        """Every verdict of the run (resumed ones included), one per id (the last)."""
        by_id = {v["id"]: v for v in self._verdicts}
        return list(by_id.values())

    def close(self) -> None:
        self._file.close()


def markdown_table(summary: dict[str, Any]) -> str:
    """Categories, their accuracy and top errors, then the suite's metrics, as markdown."""
    lines = [
        f"# {summary.get('suite', 'eval')}: {(summary.get('model') or {}).get('path', 'no model')}",
        "",
        "| category | n | correct | accuracy | errors |",
        "|---|---:|---:|---:|---|",
    ]
    for name, c in summary["categories"].items():
        errs = ", ".join(f"{k} {n}" for k, n in sorted(c["errors"].items(), key=lambda x: -x[1]))
        lines.append(f"| {name} | {c['n']} | {c['correct']} | {c['accuracy']:.2%} | {errs} |")
    lines.append(
        f"| **all** | {summary['n']} | {summary['correct']} | {summary['accuracy']:.2%} | |"
    )
    metrics = {
        k: v
        for k, v in ((k, metric_value(v)) for k, v in (summary.get("metrics") or {}).items())
        if v is not None
    }
    if metrics:
        lines += ["", "| metric | value |", "|---|---:|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def metric_value(v: Any) -> float | None:
    """A summary metric as a number: itself, or the ``accuracy`` of a figure like BFCL's
    ``{"accuracy", "total_count"}``; ``None`` for anything else."""
    if isinstance(v, dict):
        v = v.get("accuracy")
    return float(v) if _is_number(v) else None


def plot_categories(summary: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Bar charts: ``accuracy.png`` (accuracy per category) and, per category,
    ``charts/<category>.png`` (its items by outcome: correct and each error type)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    charts = out / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    cats = summary["categories"]
    paths = []
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(cats) + 2), 3.5))
    ax.bar(list(cats), [c["accuracy"] for c in cats.values()], color="tab:blue")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{summary.get('suite', 'eval')}: accuracy per category")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    paths.append(out / "accuracy.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    for name, c in cats.items():
        labels = ["correct", *sorted(c["errors"])]
        counts = [c["correct"], *(c["errors"][k] for k in labels[1:])]
        fig, ax = plt.subplots(figsize=(max(3.0, 0.7 * len(labels) + 1.5), 3.0))
        ax.bar(labels, counts, color=["tab:green"] + ["tab:red"] * (len(labels) - 1))
        ax.set_title(f"{name}: {c['accuracy']:.1%} of {c['n']}")
        ax.set_ylabel("items")
        ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        paths.append(charts / f"{safe}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def write_outputs(summary: dict[str, Any], out_dir: str | Path, charts: bool = True) -> None:
    """``summary.json``, ``summary.md`` and (``charts``) the bar charts."""
    out = Path(out_dir)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / TABLE_FILE).write_text(markdown_table(summary))
    if charts and summary["categories"]:
        plot_categories(summary, out)


def load_summary(path: str | Path) -> dict[str, Any]:
    """A ``summary.json`` (or the one in an eval run dir)."""
    p = Path(path)
    return json.loads((p / SUMMARY_FILE if p.is_dir() else p).read_text())


def summary_frame(summaries: dict[str, dict[str, Any]]) -> Any:
    """A pandas frame of accuracy, one row per category and one column per summary."""
    import pandas as pd

    return pd.DataFrame(
        {
            label: {c: v["accuracy"] for c, v in s["categories"].items()}
            for label, s in summaries.items()
        }
    )


def plot_summaries(summaries: dict[str, dict[str, Any]], title: str = "accuracy") -> Any:
    """Grouped bars: accuracy per category for each labelled summary; returns the figure."""
    import matplotlib.pyplot as plt

    frame = summary_frame(summaries)
    ax = frame.plot.bar(figsize=(max(4.0, 0.8 * len(frame) + 2), 3.5), ylim=(0, 1), rot=30)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    fig = ax.get_figure()
    fig.tight_layout()
    plt.close(fig)
    return fig


__all__ = [
    "ITEMS_FILE",
    "SUMMARY_FILE",
    "ResultStore",
    "load_summary",
    "markdown_table",
    "metric_value",
    "plot_categories",
    "plot_summaries",
    "summary_frame",
    "write_outputs",
]
