"""Progress reports (backlake.progress) and the CLI's bars for them (flows.cli.progress_bars)."""

from __future__ import annotations

import io
import logging
import re
import threading
import time

import pytest
from rich.console import Console

from backlake import progress
from flows.cli import build_parser, progress_bars


def test_listener_receives_reports_from_other_threads():
    seen: list[progress.Progress] = []
    with progress.listening(seen.append):
        workers = [threading.Thread(target=progress.report, args=(f"job {i}", i, 4, "chunks")) for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert sorted(seen, key=lambda e: e.done) == [progress.Progress(f"job {i}", i, 4, "chunks") for i in range(4)]
    assert [e.fraction for e in sorted(seen, key=lambda e: e.done)] == [0.0, 0.25, 0.5, 0.75]
    assert progress.Progress("empty", 0, 0, "seeds").fraction == 1.0


def test_a_raising_listener_breaks_neither_report_nor_other_listeners():
    def broken(event: progress.Progress) -> None:
        raise RuntimeError("display gone")

    seen: list[progress.Progress] = []
    with progress.listening(broken), progress.listening(seen.append):
        progress.report("sweep ab", 1, 2, "chunks")  # does not raise
        progress.report("sweep ab", 2, 2, "chunks")
    assert [e.done for e in seen] == [1, 2]


def test_listening_removes_the_listener_after_the_block_even_on_error():
    seen: list[progress.Progress] = []
    with pytest.raises(ValueError), progress.listening(seen.append):
        progress.report("job", 1, 3, "windows")
        raise ValueError("job failed")
    progress.report("job", 2, 3, "windows")
    assert [e.done for e in seen] == [1]


def _console() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)


def _screen(raw: str) -> list[str]:
    """The lines a terminal shows after ``raw`` (enough of one for rich's live display: text,
    CR, LF, erase line, cursor up; other escape sequences ignored)."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", raw):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif token.endswith("K"):
            lines[row] = ""
        elif token.endswith("A"):
            row = max(0, row - int(token[2:-1] or 1))
        elif not token.startswith("\x1b"):
            lines[row] = lines[row][:col].ljust(col) + token + lines[row][col + len(token):]
            col += len(token)
    return [line.rstrip() for line in lines if line.strip()]


def test_bars_show_each_job_with_done_total_and_unit():
    console = _console()
    with progress_bars("always", console=console):
        progress.report("sweep 3f2a", 0, 8, "chunks")
        progress.report("walk-forward 9c1d", 1, 3, "windows")
        progress.report("sweep 3f2a", 8, 8, "chunks")
    screen = _screen(console.file.getvalue())
    assert len(screen) == 2, screen
    assert re.match(r"sweep 3f2a .*━.* 8/8 chunks +\d:\d\d:\d\d +\d:\d\d:\d\d", screen[0])
    assert re.match(r"walk-forward 9c1d .* 1/3 windows", screen[1])
    progress.report("sweep 3f2a", 1, 8, "chunks")  # the listener is gone with the bars
    assert _screen(console.file.getvalue()) == screen


@pytest.mark.parametrize("mode", ["never", "auto"])  # auto: the console's file is not a terminal
def test_no_bars_when_never_or_not_a_terminal(mode):
    console = _console()
    with progress_bars(mode, console=console):
        progress.report("sweep 3f2a", 4, 8, "chunks")
    assert console.file.getvalue() == ""


def test_log_lines_print_above_the_bars_not_through_them():
    from prefect.logging.handlers import PrefectConsoleHandler

    console = _console()
    handler = PrefectConsoleHandler(stream=console.file)  # Prefect's handler, on the bars' stream
    log = logging.getLogger("backlake.test_progress")
    log.addHandler(handler)
    log.propagate = False
    try:
        with progress_bars("always", console=console):
            progress.report("sweep 3f2a", 1, 2, "chunks")
            time.sleep(0.3)  # the bar is drawn (10 refreshes a second)
            log.warning("chunk [1] of sweep 3f2a done")
            progress.report("sweep 3f2a", 2, 2, "chunks")
    finally:
        log.removeHandler(handler)
    screen = _screen(console.file.getvalue())
    assert screen[0].endswith("chunk [1] of sweep 3f2a done") and "chunks" not in screen[0]
    assert len(screen) == 2 and "2/2 chunks" in screen[1]
    assert handler.stream is console.file and handler.console.file is console.file  # restored


def test_progress_option_on_the_long_commands():
    parser = build_parser()
    commands = [["demo"], ["sweep", "c.json", "--grid", "g.json"], ["optimize", "c.json", "--space", "s.json"],
                ["walk-forward", "c.json", "--grid", "g.json", "--train", "100", "--test", "50"],
                ["monte-carlo", "c.json"]]
    for argv in commands:
        assert parser.parse_args(argv).progress == "auto"
        assert parser.parse_args([*argv, "--progress", "never"]).progress == "never"
    with pytest.raises(SystemExit):
        parser.parse_args(["sweep", "c.json", "--grid", "g.json", "--progress", "sometimes"])
