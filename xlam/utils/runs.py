"""What runs wrote, read back and plotted: per-step metrics and curves across runs.

A run's per-step metrics are the CSV logger's ``<run_dir>/csv/metrics.csv`` (``logger=csv``);
the runs themselves come from the index, :func:`xlam.utils.run_record.load_runs`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

METRICS_CSV = Path("csv") / "metrics.csv"
_MISSING = object()


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """Rows of a run's ``metrics.csv``, one per logged step, without the empty cells.

    Args:
        run_dir: The run directory (``output_dir`` of a row of the runs index).

    Raises:
        FileNotFoundError: The run has no ``csv/metrics.csv`` (it ran without ``logger=csv``).
        ValueError: A cell is not a number (names the file, line and column).
    """
    path = Path(run_dir) / METRICS_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no per-step metrics (train with logger=csv)")
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            out = {}
            for key, value in row.items():
                if value in ("", None):
                    continue
                try:
                    out[key] = float(value)
                except ValueError:
                    msg = f"{path}:{line}: column {key!r} is not a number: {value!r}"
                    raise ValueError(msg) from None
            rows.append(out)
    return rows


def _lookup(row: Mapping[str, Any], key: str) -> Any:
    """``row[key]``, a dotted key followed through nested dicts (``config.model.lr``).

    The longest prefix present wins, so flattened DataFrame columns (``config.model``) work.
    """
    parts = key.split(".")
    for cut in range(len(parts), 0, -1):
        value: Any = row.get(".".join(parts[:cut]), _MISSING)
        for part in parts[cut:]:
            value = value.get(part, _MISSING) if isinstance(value, Mapping) else _MISSING
        if value is not _MISSING:
            return value
    raise KeyError(f"run {row.get('run_id', '?')}: no field {key!r} (load_runs(full=True)?)")


def plot_metric(
    runs: Iterable[Mapping[str, Any]] | Any,
    metric: str = "train/loss",
    label: str = "run_id",
    x: str = "step",
) -> Any:
    """One panel per run, side by side with a shared y axis, of ``metric`` against ``x``.

    Args:
        runs: Rows of the runs index: :func:`~xlam.utils.run_record.load_runs` as records
            (``full=True`` gives ``config.*`` labels) or as a DataFrame.
        metric: Column of ``metrics.csv`` to plot.
        label: Field of a row that titles its panel; dotted keys reach into nested dicts,
            e.g. ``config.model.optimizer.lr``.
        x: Column for the x axis.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError: No runs, or a run that never logged ``metric`` (names the run dir).
    """
    import matplotlib.pyplot as plt

    rows = runs.to_dict("records") if hasattr(runs, "to_dict") else list(runs)
    if not rows:
        raise ValueError("plot_metric: no runs to plot")
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.2), sharey=True, squeeze=False)
    for ax, row in zip(axes[0], rows):
        points = [(r[x], r[metric]) for r in read_metrics(row["output_dir"]) if metric in r]
        if not points:
            raise ValueError(f"{row['output_dir']}: {metric!r} was never logged")
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker=".")
        value = _lookup(row, label)
        ax.set_title(f"{label.rsplit('.', 1)[-1]}={value}" if label != "run_id" else str(value))
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    fig.tight_layout()
    return fig
