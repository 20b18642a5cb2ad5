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


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence], align: str = "") -> list[str]:
    """A Markdown (GitHub) table as lines, a blank line after: cells as given (format numbers
    before), a literal | escaped; `align` one letter per column, "l" or "r" (default: all left).
    Every Markdown report of the project is written by this one function."""
    rule = {"l": "---", "r": "--:"}

    def line(cells) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in cells) + " |"

    out = [line(columns), "|" + "|".join(rule[a] for a in align.ljust(len(columns), "l")) + "|"]
    return [*out, *(line(row) for row in rows), ""]


def num(value: float | None, digits: int = 3) -> str:
    """`value` to `digits` significant digits, "-" for None."""
    return "-" if value is None else f"{value:.{digits}g}"


def si(value: float | None) -> str:
    """`value` with a k/M/G suffix, 3 significant digits, "-" for None."""
    if value is None:
        return "-"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal, "-" for None."""
    return "-" if value is None else f"{100 * value:.1f}%"


def plot_lines(
    path: str | pathlib.Path,
    series: dict[str, tuple[Sequence, Sequence]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logy: bool = False,
    styles: dict[str, str] | None = None,
    logx: bool = False,
) -> pathlib.Path:
    """One PNG with a line per series (label -> (x, y)); returns its path."""
    return plot_panels(
        path, [Panel(series, ylabel, logy, styles)], title=title, xlabel=xlabel, logx=logx
    )


@dataclasses.dataclass
class Panel:
    series: dict  # label -> (x, y)
    ylabel: str
    logy: bool = False
    styles: dict | None = None  # label -> matplotlib format string ("--", ":o", ...)


def plot_panels(
    path: str | pathlib.Path,
    panels: Sequence[Panel],
    *,
    title: str,
    xlabel: str,
    logx: bool = False,
) -> pathlib.Path:
    """A PNG of panels stacked over a shared x axis (logarithmic when `logx`); returns its
    path."""
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
    if logx:
        axes[-1, 0].set_xscale("log")
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
def progress(description: str, total: int, enabled: bool = True, estimated: bool = False):
    """A rich progress bar; yields advance(loss) to call once per step. estimated: `total` is an
    expectation (word2vec's subsampled stream): the bar ends at the count the run reached rather
    than short of the estimate."""
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
        if estimated:
            bar.update(task, total=bar.tasks[task].completed)


@dataclasses.dataclass
class Scatter:
    """One panel of labelled 2-D points: words in a group are coloured by group and written next
    to their point; points with group "" are grey background."""

    title: str
    xy: np.ndarray  # (N, 2)
    words: Sequence[str]
    groups: Sequence[str]
    axes: tuple[str, str] = ("", "")  # the x and y axis labels


def plot_scatters(
    path: str | pathlib.Path, panels: Sequence[Scatter], *, title: str, columns: int = 2
) -> pathlib.Path:
    """A PNG grid of labelled scatter panels (one colour per group, shared legend); returns its
    path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(7 * columns, 6.2 * rows), squeeze=False)
    names = sorted({g for panel in panels for g in panel.groups if g})
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(names)}
    for ax, panel in zip(axes.flat, panels, strict=False):
        groups = np.asarray(panel.groups)
        back = groups == ""
        ax.scatter(*panel.xy[back].T, s=4, c="0.8", linewidths=0)
        for g in names:
            mask = groups == g
            ax.scatter(*panel.xy[mask].T, s=14, color=colours[g], label=g)
            for (x, y), word in zip(panel.xy[mask], np.asarray(panel.words)[mask], strict=True):
                ax.annotate(
                    word,
                    (x, y),
                    fontsize=7,
                    color=colours[g],
                    xytext=(2, 2),
                    textcoords="offset points",
                )
        ax.set_title(panel.title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(panel.axes[0], fontsize=9)
        ax.set_ylabel(panel.axes[1], fontsize=9)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[g], label=g) for g in names]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(names), 8), fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def compact_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence], caption: str | None = None
) -> Table:
    """A rich table with one space between columns and no outer border, for tables that must
    fit 80 columns; cells are printed as given (format numbers before), numeric-looking columns
    right-aligned."""
    from rich import box

    t = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for i, c in enumerate(columns):
        cells = [str(row[i]) for row in rows]
        numeric = bool(cells) and all(_looks_numeric(cell) for cell in cells)
        t.add_column(c, justify="right" if numeric else "left")
    for row in rows:
        t.add_row(*(str(v) for v in row))
    console.print(t)
    return t


def _looks_numeric(cell: str) -> bool:
    return cell in ("-", "") or cell.rstrip("%kMG").replace(".", "", 1).lstrip("-").isdigit()


def plot_grid(
    path: str | pathlib.Path,
    panels: Sequence[Panel],
    *,
    title: str,
    xlabel: str,
    titles: Sequence[str] = (),
    marks: Sequence[Sequence[tuple]] = (),
    hline: float | None = None,
    logx: bool = True,
) -> pathlib.Path:
    """A PNG of panels in a grid of two columns, log x by default; `marks[i]` are (x, y, label)
    or (x, y, label, series) points drawn as crosses on panel i, in the colour of the named
    series (the label in the legend); `hline` a dashed reference line on every panel; returns
    its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 1 if len(panels) == 1 else 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.0 * rows + 0.8), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        panel, colours = panels[i], {}
        for label, (x, y) in panel.series.items():
            (line,) = ax.plot(x, y, (panel.styles or {}).get(label, "-"), label=label, lw=1.4)
            colours[label] = line.get_color()
        for x, y, label, *series in marks[i] if i < len(marks) else ():
            colour = colours.get(series[0], "black") if series else "black"
            ax.plot([x], [y], "x", color=colour, markersize=10, mew=2.5, label=label)
        if hline is not None:
            ax.axhline(hline, color="grey", linestyle="--", linewidth=1)
        if logx:
            ax.set_xscale("log")
        if panel.logy:
            ax.set_yscale("log")
        ax.set_title(titles[i] if i < len(titles) else "")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
