"""The live `fdscope top` screen: redraw in place on a terminal like top(1).

The terminal is put in cbreak mode (keys arrive one by one, Ctrl-C still interrupts) on the
alternate screen with the cursor hidden, and restored on every way out. A resize (SIGWINCH,
delivered through signal.set_wakeup_fd so it wakes the wait) redraws at once from the last
snapshot; a scan happens every interval. Keys: q quits; f, u, g, h sort by fds, used,
growth, headroom.
"""

from __future__ import annotations

import os
import select
import signal
import termios
import time
import tty
from collections.abc import Callable
from typing import Any

from fdscope.render.top import flag_lines, host_line, table_lines

KEYS = {"f": "fds", "u": "used", "g": "growth", "h": "headroom"}
HELP = "q quit  f/u/g/h sort by fds/used/growth/headroom"


def screen(doc: dict[str, Any], sort: str, interval: float, width: int, height: int,
           colour: bool) -> str:
    """One frame: cursor home, each line cleared to its end, the rest of the screen cleared."""
    from fdscope.render.style import heading
    from fdscope.render.top import cut

    head = [cut(heading(host_line(doc), colour), width),
            cut(f"sort {sort}  every {interval:g} s  {HELP}", width), ""]
    rows = doc["processes"]
    room = max(1, height - len(head) - 1)
    body = table_lines(rows[:room], colour, width)
    flags = [cut(x, width) for x in flag_lines(rows[:room], colour)]
    left = height - len(head) - len(body)
    if flags and left > 2:
        body += [""] + flags[:left - 2]
    return "\x1b[H" + "\n".join(x + "\x1b[K" for x in head + body) + "\x1b[J"


def run(scan: Callable[[], Any], doc_of: Callable[[Any, str, int], dict[str, Any]],
        sort: str, interval: float, colour: bool, fd_in: int = 0, fd_out: int = 1) -> None:
    """Scan every `interval` s and redraw until q or Ctrl-C. `scan()` returns a snapshot,
    `doc_of(snapshot, sort, rows)` its document with at most `rows` rows to show, in order."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    old_wakeup = signal.set_wakeup_fd(wake_w)
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: None)
    old_attrs = termios.tcgetattr(fd_in)

    def write(text: str) -> None:
        data = text.encode("utf-8", "surrogateescape")
        while data:
            data = data[os.write(fd_out, data):]

    try:
        tty.setcbreak(fd_in)
        write("\x1b[?1049h\x1b[?25l")
        snap = scan()
        due = time.monotonic() + interval
        while True:
            size = os.get_terminal_size(fd_out) if os.isatty(fd_out) else os.terminal_size((80, 24))
            # A terminal that never got a size (a fresh pty) reports 0 x 0.
            lines = size.lines or 24
            write(screen(doc_of(snap, sort, lines), sort, interval, size.columns or 80, lines,
                         colour))
            ready, _, _ = select.select([fd_in, wake_r], [], [], max(0.0, due - time.monotonic()))
            if wake_r in ready:
                os.read(wake_r, 512)  # a resize (or another signal): redraw
            if fd_in in ready:
                keys = os.read(fd_in, 64).decode("ascii", "replace")
                if not keys or "q" in keys or "Q" in keys:
                    return
                for k in keys:
                    sort = KEYS.get(k.lower(), sort)
            if time.monotonic() >= due:
                snap = scan()
                due = time.monotonic() + interval
    except KeyboardInterrupt:
        return
    finally:
        try:
            write("\x1b[?25h\x1b[?1049l")
            termios.tcsetattr(fd_in, termios.TCSADRAIN, old_attrs)
        except OSError:
            pass  # the terminal went away (hangup): nothing to restore
        signal.signal(signal.SIGWINCH, old_winch)
        signal.set_wakeup_fd(old_wakeup)
        os.close(wake_r)
        os.close(wake_w)
