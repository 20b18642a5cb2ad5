"""Tables (rich) and plots (matplotlib PNG, headless)."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
from collections.abc import Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

console = Console()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence]) -> Table:
    """Print a rich table; numbers are formatted to 4 significant digits."""
    t = Table(title=title)
    for i, c in enumerate(columns):
        numeric = bool(rows) and all(isinstance(row[i], (int, float)) for row in rows)
        t.add_column(c, justify="right" if numeric else "left")
    for row in rows:
        t.add_row(*(_fmt(v) for v in row))
    console.print(t)
    return t


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def plot_lines(
    path: str | pathlib.Path,
    series: dict[str, tuple[Sequence, Sequence]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logy: bool = False,
    styles: dict[str, str] | None = None,
) -> pathlib.Path:
    """One PNG with a line per series (label -> (x, y)); returns its path."""
    return plot_panels(path, [Panel(series, ylabel, logy, styles)], title=title, xlabel=xlabel)


@dataclasses.dataclass
class Panel:
    series: dict  # label -> (x, y)
    ylabel: str
    logy: bool = False
    styles: dict | None = None  # label -> matplotlib format string ("--", ":o", ...)


def plot_panels(
    path: str | pathlib.Path, panels: Sequence[Panel], *, title: str, xlabel: str
) -> pathlib.Path:
    """A PNG of panels stacked over a shared x axis; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(panels), 1, figsize=(8, 3.2 * len(panels) + 1.3), sharex=True, squeeze=False
    )
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        for label, (x, y) in panel.series.items():
            ax.plot(x, y, (panel.styles or {}).get(label, "-"), label=label, linewidth=1.4)
        ax.set_ylabel(panel.ylabel)
        if panel.logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel(xlabel)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over `window` points (shorter at the start), to read a noisy loss curve."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


@contextlib.contextmanager
def progress(description: str, total: int, enabled: bool = True):
    """A rich progress bar; yields advance(loss) to call once per step."""
    if not enabled:
        yield lambda loss=None: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(description, total=total, loss="-")

        def advance(loss=None):
            bar.update(task, advance=1, **({"loss": f"{loss:.4f}"} if loss is not None else {}))

        yield advance
