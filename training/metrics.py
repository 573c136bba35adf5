"""Metrics to JSONL and CSV (TensorBoard too when installed), and a training-curve plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Appends one row per logged step to ``<dir>/<stage>.jsonl`` and ``<dir>/<stage>.csv``.

    On resume, rows after the resumed step are dropped so the files match an uninterrupted run.
    """

    def __init__(self, directory: Path, stage: str, resume_step: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        self.jsonl = directory / f"{stage}.jsonl"
        self.csv = directory / f"{stage}.csv"
        self.stage = stage
        self._tb = None
        if not enabled:
            return
        directory.mkdir(parents=True, exist_ok=True)
        rows = [r for r in read_jsonl(self.jsonl) if r.get("step", 0) <= resume_step] if resume_step else []
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self._rows = rows
        self._write_csv()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(directory / "tensorboard" / stage), purge_step=resume_step or None)
        except Exception:  # tensorboard is optional
            self._tb = None

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: float(v) for k, v in values.items()}}
        self._rows.append(row)
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        self._write_csv()
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"{self.stage}/{key}", float(value), step)

    def _write_csv(self) -> None:
        keys: list[str] = []
        for row in self._rows:
            keys += [k for k in row if k not in keys]
        with self.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys or ["step"])
            writer.writeheader()
            writer.writerows(self._rows)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(metrics_dir: Path, out_path: Path) -> Path | None:
    """One panel per stage and metric; returns the PNG path, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series = []
    for path in sorted(metrics_dir.glob("*.jsonl")):
        rows = read_jsonl(path)
        keys = sorted({k for r in rows for k in r if k != "step"})
        series += [(path.stem, key, [(r["step"], r[key]) for r in rows if key in r]) for key in keys]
    if not series:
        return None
    cols = min(3, len(series))
    rows_n = (len(series) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.5 * cols, 3.2 * rows_n), squeeze=False)
    for ax, (stage, key, points) in zip(axes.flat, series):
        ax.plot([p[0] for p in points], [p[1] for p in points])
        ax.set_title(f"{stage}: {key}", fontsize=9)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path
