"""Run folders: runs/<lab>-<framework>-<time>/ with config.json, metrics.jsonl and
TensorBoard event files.

A run folder is written under a hidden `.partial` name and renamed when the run
ends, so bad input or an interrupted start never leaves a half-made folder that
looks finished. A run that fails during training (a NaN, say) is kept, with
its status, because its last good checkpoint is worth having.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import shutil

from week1.config import UsageError, as_dict


class Run:
    def __init__(
        self,
        lab: str,
        framework: str,
        cfg,
        root: str | pathlib.Path = "runs",
        tensorboard: bool = True,
    ):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        self.root = pathlib.Path(root)
        self.name = f"{lab}-{framework}-{stamp}"
        self.final = self.root / self.name
        self.dir = self.root / f".{self.name}.partial"
        self.dir.mkdir(parents=True)
        (self.dir / "config.json").write_text(
            json.dumps({"lab": lab, "framework": framework, "config": as_dict(cfg)}, indent=2)
        )
        # Held open for the run's life (one flushed line per log call); close() closes it.
        self._metrics = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._tb = None
        if tensorboard:
            from tensorboard.summary import Writer  # lazy: heavy import

            self._tb = Writer(str(self.dir / "tb"))

    def log(self, step: int, **metrics: float) -> None:
        """One JSONL line and one TensorBoard scalar per metric."""
        clean = {k: float(v) for k, v in metrics.items()}
        self._metrics.write(json.dumps({"step": int(step), **clean}) + "\n")
        self._metrics.flush()
        if self._tb is not None:
            for key, value in clean.items():
                self._tb.add_scalar(key, value, step=int(step))

    def path(self, name: str) -> pathlib.Path:
        """A file or folder inside the run; it moves with the folder when close() renames it."""
        return self.dir / name

    def close(self, status: str = "ok", summary: dict | None = None) -> pathlib.Path:
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()
        (self.dir / "summary.json").write_text(
            json.dumps({"status": status, **(summary or {})}, indent=2)
        )
        self.dir.rename(self.final)
        self.dir = self.final
        return self.final

    def discard(self) -> None:
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if self.dir == self.final:
            return False
        if kind is None:
            self.close()
        elif issubclass(kind, (UsageError, KeyboardInterrupt)):
            self.discard()
        else:
            self.close(status=f"failed: {error}")
        return False


def read_metrics(run_dir: str | pathlib.Path) -> list[dict]:
    with open(pathlib.Path(run_dir) / "metrics.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]
