"""PNG bar charts of the figures (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: no display on a server

import matplotlib.pyplot as plt

from tests.benchmarks.report import Chart

GROUP_WIDTH = 0.8
ACCENT, PLAIN = "tab:orange", "tab:blue"


def draw(chart: Chart, directory: Path) -> Path:
    """Write `chart` as DIRECTORY/FILENAME; returns the path."""
    figure, axes = plt.subplots(
        figsize=(max(6.0, 1.2 * len(chart.categories) + 2), 4.0), layout="constrained"
    )
    width = GROUP_WIDTH / len(chart.series)
    positions = range(len(chart.categories))
    for number, (label, values) in enumerate(chart.series.items()):
        offsets = [p - GROUP_WIDTH / 2 + width * (number + 0.5) for p in positions]
        colours = None
        if chart.highlight and len(chart.series) == 1:
            colours = [ACCENT if chart.highlight in name else PLAIN for name in chart.categories]
        bars = axes.bar(offsets, values, width, label=label, color=colours)
        axes.bar_label(bars, fmt="%.0f", fontsize=8)
    axes.set_xticks(list(positions), chart.categories, rotation=20 if len(chart.categories) > 4 else 0)
    axes.set_ylabel(chart.ylabel)
    axes.set_title(chart.title)
    if len(chart.series) > 1:
        axes.legend()
    axes.margins(y=0.15)
    path = directory / chart.filename
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
