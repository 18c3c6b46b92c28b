"""`fdscope top`: the whole host at a glance - who holds the fds, who is near a limit, who
leaks, who is at risk."""

from __future__ import annotations

import math
import re
import sys
from typing import Any

import click

from fdscope.cli.options import COUNT, AsciiInt, ParsedType, json_option, out, seconds

EPILOG = """\b
Examples:
  fdscope top                               live, redrawn every 2 s (q quits)
  fdscope top --once                        one table (cron, tickets)
  fdscope top --once --sort fds --limit 10  the ten biggest fd holders
  fdscope top --json | jq '.processes[] | select(.flags != [])'
  fdscope top --json --count 5 --interval 10   five NDJSON documents, growth from the 2nd
  fdscope top --user www-data --name 'nginx|php'

\b
Live keys: q quit; f, u, g, h sort by fds, used, growth, headroom.
Exit codes: 0 ok, 2 usage, 3 none of the --pid processes exists, 1 failure.
Reference: docs/top.md.
"""


def _pids(text: str) -> frozenset[int]:
    from fdscope.cli.options import PID

    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.add(PID.convert(part, None, None))
        except click.BadParameter as err:
            raise ValueError(err.message) from err
    if not out:
        raise ValueError(f"no pid in {text!r}")
    return frozenset(out)


def _users(text: str) -> frozenset[int]:
    import pwd

    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.isascii() and part.isdigit() and len(part) <= 10:
            out.add(int(part))
            continue
        try:
            out.add(pwd.getpwnam(part).pw_uid)
        except (KeyError, ValueError):
            raise ValueError(f"no such user {part!r}") from None
    if not out:
        raise ValueError(f"no user in {text!r}")
    return frozenset(out)


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except (re.error, RecursionError, OverflowError) as err:
        raise ValueError(f"bad regular expression {text!r}: {err}") from None


PIDS = ParsedType("PID,...", _pids)
USERS = ParsedType("USER,...", _users)
REGEX = ParsedType("REGEX", _regex)


@click.command("top", epilog=EPILOG)
@click.option("--once", is_flag=True, help="Print one table and exit.")
@json_option
@click.option("--count", type=COUNT, default=None,
              help="Scan N times, every --interval (with --json: one document per line).")
@click.option("--interval", type=seconds(0.1), default=2.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--sort", type=click.Choice(["used", "fds", "growth", "headroom"]),
              default="used", show_default=True,
              help="used = fraction of the soft limit (then fds); headroom = least first.")
@click.option("--limit", type=AsciiInt(1, 10**7, metavar="N"), default=None,
              help="Show at most N processes (live: as many as fit).")
@click.option("--user", "users", type=USERS, multiple=True,
              help="Only processes of these users (names or uids, comma-separated).")
@click.option("--name", "name", type=REGEX, default=None,
              help="Only processes whose name matches this regular expression.")
@click.option("--pid", "pids", type=PIDS, multiple=True,
              help="Only these processes (comma-separated pids).")
def command(once: bool, as_json: bool, count: int | None, interval: float, sort: str,
            limit: int | None, users: tuple[frozenset[int], ...], name: re.Pattern[str] | None,
            pids: tuple[frozenset[int], ...]) -> int:
    """Every process's fds, limit, growth and flags (near_limit, growing, select_risk,
    stale_epoll, close_wait, backlog_full), host-wide."""
    import time

    from fdscope.errors import NoSuchProcess, UsageError
    from fdscope.host import readahead
    from fdscope.host.model import sort_rows
    from fdscope.host.scan import ProcessFilter, Scanner
    from fdscope.proc import Proc
    from fdscope.render.style import colour_enabled

    if once and count is not None and count != 1:
        raise UsageError("--once prints one table; drop it to use --count N")
    wanted = frozenset().union(*pids) if pids else None
    select = ProcessFilter(wanted, frozenset().union(*users) if users else None, name)
    proc = Proc()
    scanner = Scanner(proc, select=select, ahead=readahead.take(proc))

    def doc_of(snap: Any, key: str, most: int | None = None) -> dict[str, Any]:
        rows = sort_rows(snap.processes, key)
        n = min(x for x in (limit, most, len(rows)) if x is not None)
        return snap.to_json(rows[:n])

    live = not (once or as_json or count is not None) and sys.stdout.isatty() \
        and sys.stdin.isatty()
    if live or (count or 1) > 1:
        import gc

        gc.enable()  # off for a one-shot scan (fdscope.cli.entry)
    if live:
        from fdscope.render.live import run

        run(scanner.scan, doc_of, sort, interval, colour_enabled())
        return 0
    from fdscope.render.json import dumps, dumps_line
    from fdscope.render.top import render_text

    n = count if count is not None else 1
    colour = colour_enabled()
    due = time.monotonic()
    for i in range(n):
        if i:
            # scans start every interval; the slots a long scan overran are skipped, not made
            # up for with scans back to back (growth is measured between scans)
            due += interval * max(1, math.ceil((time.monotonic() - due) / interval))
            time.sleep(max(0.0, due - time.monotonic()))
        snap = scanner.scan()
        if i == 0 and wanted is not None and not snap.processes and \
                not any(scanner.proc.alive(pid) for pid in wanted):
            first = min(wanted)
            raise NoSuchProcess(first, f"no process with pid {', '.join(map(str, sorted(wanted)))}"
                                if len(wanted) > 1 else None)
        doc = doc_of(snap, sort)
        if as_json:
            out(dumps_line(doc) if count is not None else dumps(doc, rows=("processes",)))
        else:
            out(("\n" if i else "") + render_text(doc, colour), nl=False)
        sys.stdout.flush()
    return 0
