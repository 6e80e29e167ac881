"""Progress bars on stderr for the jobs that report through ``backlake.progress``, with log
lines printed above the bars while they are live."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from backlake.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

PROGRESS_MODES = ("auto", "always", "never")


def add_progress_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--progress", choices=PROGRESS_MODES, default="auto",
                    help="progress bars on stderr: auto (when stderr is a terminal), always or never")


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class _PrintAbove(io.TextIOBase):
    """A stream for a log handler while bars are live: each whole line written is printed
    through the bars' console, which keeps it above the bars (its ANSI colours kept)."""

    def __init__(self, console: Console) -> None:
        from rich.ansi import AnsiDecoder

        self._console = console
        self._decoder = AnsiDecoder()
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._console.print(self._decoder.decode_line(line), soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self.write("\n")

    def isatty(self) -> bool:
        return self._console.is_terminal


@contextlib.contextmanager
def _logs_above(console: Console) -> Iterator[None]:
    """While the block runs, log handlers that write to ``console``'s stream or to a terminal
    (Prefect's console handler) print through ``console``, above its live bars, instead of
    through them. Prefect's handler holds a rich Console of its own: its file is swapped too."""
    from rich.console import Console as RichConsole

    loggers = [logging.getLogger(), *list(logging.Logger.manager.loggerDict.values())]
    handlers = {h for lg in loggers for h in getattr(lg, "handlers", ()) if isinstance(h, logging.StreamHandler)}
    swapped: list[tuple[logging.StreamHandler, Any]] = []
    for h in handlers:
        if h.stream is console.file or _is_tty(h.stream):
            proxy = _PrintAbove(console)
            swapped.append((h, h.stream))
            h.setStream(proxy)
            if isinstance(getattr(h, "console", None), RichConsole):
                h.console.file = proxy  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for h, stream in swapped:
            h.setStream(stream)  # flushes a partial line through the proxy first
            if isinstance(getattr(h, "console", None), RichConsole):
                h.console.file = stream  # type: ignore[attr-defined]


@contextlib.contextmanager
def progress_bars(mode: str = "auto", console: Console | None = None) -> Iterator[None]:
    """While the block runs, show one progress bar per job that reports through
    ``backlake.progress`` (description, bar, done/total unit, elapsed, remaining) on stderr.

    ``mode``: ``auto`` shows them when stderr is a terminal, ``always`` even when it is not
    (rendered as for a terminal), ``never`` not at all: the block runs as without bars.
    ``console`` renders them elsewhere (tests). Stdout is left alone unless it is a terminal
    too; log lines print above the bars."""
    if mode not in PROGRESS_MODES:
        raise ConfigError(f"progress={mode!r}: use one of {', '.join(PROGRESS_MODES)}")
    if mode == "never":
        yield
        return
    from rich.console import Console as RichConsole
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress as Bars,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from backlake.progress import Progress, listening

    console = console or RichConsole(stderr=True, force_terminal=mode == "always" or None)
    if mode == "auto" and not _is_tty(console.file):
        yield
        return
    bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=console, redirect_stdout=_is_tty(sys.stdout))
    tasks: dict[str, TaskID] = {}
    lock = threading.Lock()

    def show(event: Progress) -> None:
        with lock:
            if event.job not in tasks:
                tasks[event.job] = bars.add_task(event.job, total=event.total, unit=event.unit)
        bars.update(tasks[event.job], completed=event.done, total=event.total)

    with bars, _logs_above(console), listening(show):
        yield
