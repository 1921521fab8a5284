"""A progress bar (rich, on stderr) over a sweep's points: computed, read from the store, failed."""

from __future__ import annotations


class SweepProgress:
    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled = total, enabled
        self._bar = self._task = None
        self.counts = {"computed": 0, "stored": 0, "failed": 0}

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("points"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}"), console=Console(stderr=True), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=self.total)
        return self

    def point(self, row: dict, reused: bool) -> None:
        self.counts["stored" if reused else "computed"] += 1
        self.counts["failed"] += row.get("error") is not None
        if self._bar is not None:
            self._bar.update(self._task, advance=1,
                             description=", ".join(f"{v} {k}" for k, v in self.counts.items() if v))

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False
