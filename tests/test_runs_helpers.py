"""Reading and plotting what runs wrote; showing an HTML page in a notebook."""

from __future__ import annotations

import html
import re
from pathlib import Path

import matplotlib
import pytest

from xlam.utils.logging import ResumableCSVLogger
from xlam.utils.notebook import html_frame
from xlam.utils.runs import plot_metric, read_metrics

matplotlib.use("Agg")


def _run(tmp_path: Path, name: str, losses: list[float], lr: float) -> dict:
    """A run dir whose metrics.csv the real CSV logger wrote, and its runs-index row."""
    run_dir = tmp_path / name
    logger = ResumableCSVLogger(save_dir=str(run_dir), name="csv", version="")
    for step, loss in enumerate(losses):
        logger.log_metrics({"train/loss": loss}, step=step)
    logger.log_metrics({"val/loss": 9.0}, step=len(losses))  # a row without train/loss
    logger.save()
    return {"run_id": name, "output_dir": str(run_dir), "config": {"model": {"lr": lr}}}


def test_read_metrics_reads_the_csv_logger(tmp_path: Path) -> None:
    row = _run(tmp_path, "a", [3.0, 2.5], lr=0.1)
    assert read_metrics(row["output_dir"]) == [
        {"step": 0.0, "train/loss": 3.0},
        {"step": 1.0, "train/loss": 2.5},
        {"step": 2.0, "val/loss": 9.0},
    ]


def test_read_metrics_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope/csv/metrics.csv.*logger=csv"):
        read_metrics(tmp_path / "nope")
    bad = tmp_path / "bad" / "csv" / "metrics.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("step,train/loss\n0,1.5\n1,oops\n")
    with pytest.raises(ValueError, match=r"metrics.csv:3: column 'train/loss' .* 'oops'"):
        read_metrics(tmp_path / "bad")


def test_plot_metric_one_panel_per_run(tmp_path: Path) -> None:
    runs = [_run(tmp_path, "a", [3.0, 2.5, 2.0], 0.001), _run(tmp_path, "b", [3.0, 1.0], 0.01)]
    fig = plot_metric(runs, "train/loss", label="config.model.lr")
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["lr=0.001", "lr=0.01"]
    assert [list(ax.lines[0].get_ydata()) for ax in fig.axes] == [[3.0, 2.5, 2.0], [3.0, 1.0]]
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])


def test_plot_metric_takes_a_flattened_frame(tmp_path: Path) -> None:
    import pandas as pd

    rows = [_run(tmp_path, "a", [3.0, 2.0], 0.001)]
    # load_runs(as_frame=True) flattens one level: the label is found in column config.model
    fig = plot_metric(pd.json_normalize(rows, max_level=1), label="config.model.lr")
    assert [ax.get_title() for ax in fig.axes] == ["lr=0.001"]


def test_plot_metric_errors(tmp_path: Path) -> None:
    row = _run(tmp_path, "a", [3.0], 0.1)
    with pytest.raises(ValueError, match="no runs"):
        plot_metric([])
    with pytest.raises(ValueError, match=r"/a: 'train/acc' was never logged"):
        plot_metric([row], "train/acc")
    with pytest.raises(KeyError, match=r"run a: no field 'config\.model\.wd'"):
        plot_metric([row], label="config.model.wd")


def test_html_frame_isolates_the_page(tmp_path: Path) -> None:
    page = "<style>body{margin:2em}</style><pre class='sup'>a & \"b\"</pre>"
    (tmp_path / "p.html").write_text(page)
    for source in (page, tmp_path / "p.html"):
        shown = html_frame(source, height=300).data
        # the page's stylesheet lives only inside the frame, intact
        assert "<style>" not in shown and "height:300px" in shown
        (srcdoc,) = re.findall(r'srcdoc="([^"]*)"', shown)
        assert html.unescape(srcdoc) == page
