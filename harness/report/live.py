"""How ``mesh-harness run`` shows a run while it runs: a live status line on a terminal, plain lines in a log.

On a terminal, rich's ``Live`` keeps one status line under the scrolling events (experiment, phase and
time left, req/s, success, p99, faults in force). In a log (CI, ``| tee``), a live line would be noise, so
the same status is printed as a plain line at most every :data:`LOG_EVERY_S` and whenever the phase
changes.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from harness.runner.progress import Progress

__all__ = ["LOG_EVERY_S", "LiveProgress"]

LOG_EVERY_S = 5.0


class LiveProgress:
    """Context manager: ``event(msg)`` for what happened, ``progress(p)`` for how it is going now."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self._logged_at = 0.0
        self._logged_phase: tuple[str, str] | None = None

    def __enter__(self) -> LiveProgress:
        if self.console.is_terminal:
            self.live = Live(Text(""), console=self.console, refresh_per_second=4, transient=True,
                             redirect_stdout=False)
            self.live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.live is not None:
            self.live.__exit__(kind, exc, tb)
            self.live = None

    def event(self, message: str, style: str = "dim") -> None:
        """Print what happened (above the live line); a verdict (``style=""``, markup of our own) also
        clears the live line, which would otherwise show a finished experiment through the rollback."""
        if style:
            self.console.print(Text(message, style=style))
            return
        if self.live is not None:
            self.live.update(Text(""))
        self.console.print(message)

    def progress(self, p: Progress) -> None:
        if self.live is not None:
            self.live.update(_status(p))
            return
        now = time.monotonic()
        phase = (p.experiment, p.phase)
        if phase != self._logged_phase or now - self._logged_at >= LOG_EVERY_S:
            self._logged_at, self._logged_phase = now, phase
            self.console.print(p.line(), markup=False, highlight=False)


def _status(p: Progress) -> Text:
    """The live line: red success below 95%, faults in force in yellow."""
    text = Text()
    text.append(f"{p.experiment} ", style="bold")
    text.append(f"{p.phase} {p.left_s:4.0f}s left  ")
    text.append(f"{p.rps:5.0f} req/s  ")
    if p.success is None:
        text.append("success —  ")
    else:
        text.append(f"success {p.success:6.1%}  ", style="green" if p.success >= 0.95 else "red")
    text.append("p99 —" if p.p99_ms is None else f"p99 {p.p99_ms:5.0f} ms")
    if p.faults:
        text.append(f"  faults: {', '.join(p.faults)}", style="yellow")
    return text
