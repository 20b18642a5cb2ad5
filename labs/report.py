"""Tables (rich) and plots (matplotlib PNG, headless)."""
from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Sequence

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


def plot_lines(path: str | pathlib.Path, series: dict[str, tuple[Sequence, Sequence]], *,
               title: str, xlabel: str, ylabel: str, logy: bool = False,
               styles: dict[str, str] | None = None) -> pathlib.Path:
    """One PNG with a line per series (label -> (x, y)); returns its path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, (x, y) in series.items():
        ax.plot(x, y, (styles or {}).get(label, "-"), label=label, linewidth=1.4)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@contextlib.contextmanager
def progress(description: str, total: int, enabled: bool = True):
    """A rich progress bar; yields advance(loss) to call once per step."""
    if not enabled:
        yield lambda loss=None: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(description, total=total, loss="-")

        def advance(loss=None):
            bar.update(task, advance=1, **({"loss": f"{loss:.4f}"} if loss is not None else {}))
        yield advance
