"""Loggers that survive a resume.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when it finds one, so a resumed run would
lose its history. :class:`ResumableCSVLogger` keeps the rows of steps before the resume point
and drops those after it (they are trained again), so the file reads as one run.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _ResumableWriter(ExperimentWriter):
    def __init__(self, log_dir: str) -> None:
        self._previous: list[dict[str, str]] = []
        self._previous_keys: list[str] = []
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        # Read the old rows instead of deleting them; the first save merges them back.
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                reader = csv.DictReader(f)
                self._previous = list(reader)
                self._previous_keys = list(reader.fieldnames or [])
            self._fs.rm_file(self.metrics_file_path)

    def save(self) -> None:
        if self._previous and self.metrics:
            first_new = min(int(m.get("step", 0)) for m in self.metrics)
            kept = [
                r
                for r in self._previous
                if r.get("step") not in (None, "") and int(float(r["step"])) < first_new
            ]
            self.metrics = [{k: v for k, v in r.items() if v != ""} for r in kept] + self.metrics
            for k in self._previous_keys:
                if k not in self.metrics_keys:
                    self.metrics_keys.append(k)
            self._previous = []
        super().save()


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that appends to the run's ``metrics.csv`` across resumes."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _ResumableWriter(log_dir=self.log_dir)
        return self._experiment
