"""A progress bar (rich, on stderr) over sampling steps and, inside each, the emulated layers."""

from __future__ import annotations

from .modules import EmulatedGemm


class Progress:
    def __init__(self, model, enabled: bool = True):
        self.model, self.enabled = model, enabled
        self.layers = sum(isinstance(m, EmulatedGemm) for m in model.modules.values())
        self._bar = self._steps = self._layer_task = None
        self._handles = []

    def __enter__(self):
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(TextColumn("{task.description:<7}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=True)
        self._bar.__enter__()
        self._layer_task = self._bar.add_task("layers", total=self.layers)
        for module in self.model.modules.values():
            if isinstance(module, EmulatedGemm):
                self._handles.append(module.register_forward_hook(lambda *_: self._bar.advance(self._layer_task)))
        return self

    def start(self, steps: int) -> None:
        if self._bar is not None:
            self._steps = self._bar.add_task("steps", total=steps)

    def step(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._steps)
            self._bar.reset(self._layer_task, total=self.layers)

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False
