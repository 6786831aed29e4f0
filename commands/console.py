"""Progress in a terminal: a live step list on a TTY, plain lines elsewhere (pipes, CI, logs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from bot.engine.events import (
    Event,
    OperationFinished,
    OperationStarted,
    StepFinished,
    StepOutput,
    StepStarted,
)

_ICONS = {
    "pending": "[dim]·[/dim]",
    "running": "[yellow]▶[/yellow]",
    "succeeded": "[green]✔[/green]",
    "failed": "[red]✘[/red]",
    "cancelled": "[magenta]■[/magenta]",
    "skipped": "[dim]-[/dim]",
}


@dataclass
class _StepView:
    name: str
    state: str = "pending"
    detail: str = ""
    last_line: str = ""


@dataclass
class ConsoleProgress:
    """An EventSink for the CLI. Use as an async context manager around the operation."""

    console: Console
    live: Live | None = None
    steps: list[_StepView] = field(default_factory=list)
    title: str = ""

    async def __aenter__(self) -> ConsoleProgress:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=8, transient=False)
            self.live.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._render(), refresh=True)
            self.live.stop()

    async def __call__(self, event: Event) -> None:
        if isinstance(event, OperationStarted):
            self.title = f"{event.kind} {event.target} in {event.env} ({event.op_id})"
            self.steps = [_StepView(name) for name in event.steps]
            self._line(f"[bold]{escape(self.title)}[/bold]")
        elif isinstance(event, StepStarted):
            self.steps[event.index].state = "running"
            self._line(f"{_ICONS['running']} {event.index + 1}. {escape(event.name)}")
        elif isinstance(event, StepOutput):
            self.steps[event.index].last_line = event.line
            self._line(f"    {escape(event.line)}", dim=True)
        elif isinstance(event, StepFinished):
            view = self.steps[event.index]
            view.state, view.detail = event.state, event.detail or ""
            detail = f": {escape(event.detail)}" if event.detail else ""
            self._line(f"{_ICONS[event.state]} {event.index + 1}. {escape(event.name)}{detail}")
        elif isinstance(event, OperationFinished):
            colour = "green" if event.state == "succeeded" else "red"
            self._line(f"[{colour}]{event.state}[/{colour}]: {escape(event.summary)}")
        if self.live is not None:
            self.live.update(self._render())

    def _line(self, markup: str, *, dim: bool = False) -> None:
        if self.live is None:
            self.console.print(markup, style="dim" if dim else None, highlight=False)

    def _render(self) -> Group:
        rows: list[Text] = [Text.from_markup(f"[bold]{escape(self.title)}[/bold]")]
        for i, step in enumerate(self.steps, 1):
            detail = step.detail or (step.last_line if step.state == "running" else "")
            suffix = f" [dim]{escape(detail)}[/dim]" if detail else ""
            rows.append(Text.from_markup(f"{_ICONS[step.state]} {i}. {escape(step.name)}{suffix}"))
        return Group(*rows)
