"""`fdscope exporter`: the host's fds as Prometheus metrics, scanned on every scrape."""

from __future__ import annotations

import re
from typing import Any

import click

from fdscope.cli.options import AsciiInt, ParsedType, seconds

EPILOG = """\b
Examples:
  fdscope exporter                               serve http://127.0.0.1:9790/metrics
  fdscope exporter --listen 0.0.0.0:9790         every interface (asked for by name)
  fdscope exporter --once | promtool check metrics
  fdscope exporter --textfile /var/lib/prometheus/node-exporter --interval 30
  fdscope exporter --group-by systemd-unit --top-pids 5
  fdscope exporter --group-by cmdline-regex --group-regex 'java .*-jar (\\S+)\\.jar'

\b
Ctrl-C or SIGTERM stops it (exit 0). Exit codes: 0 ok, 2 usage (bad --listen, address in
use, textfile directory not writable), 1 failure.
Metrics, alert rules and dashboard: docs/exporter.md, deploy/ in the source.
"""


def _listen(text: str) -> tuple[str, int]:
    from fdscope.exporter.output import parse_listen

    return parse_listen(text)


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except (re.error, RecursionError, OverflowError) as err:
        raise ValueError(f"bad regular expression {text!r}: {err}") from None


LISTEN = ParsedType("HOST:PORT", _listen)
REGEX = ParsedType("REGEX", _regex)


@click.command("exporter", epilog=EPILOG)
@click.option("--listen", type=LISTEN, default=None,
              help="Serve /metrics on HOST:PORT (default 127.0.0.1:9790 unless --textfile "
                   "is given; port 0 picks a free one).")
@click.option("--textfile", type=click.Path(), metavar="DIR", default=None,
              help="Write DIR/fdscope.prom (atomically replaced) for node_exporter's textfile "
                   "collector, every --interval seconds.")
@click.option("--interval", type=seconds(1.0), default=None,
              help="Seconds between textfile writes (default 15).")
@click.option("--once", is_flag=True,
              help="Scan once: write the textfile, or print the metrics to stdout; then exit.")
@click.option("--group-by", "group_by",
              type=click.Choice(["name", "cmdline-regex", "systemd-unit"]), default="name",
              show_default=True, help="What a group label names.")
@click.option("--group-regex", "regexes", type=REGEX, multiple=True,
              help="cmdline-regex: searched in the command line, first match wins; the group "
                   "is its (?P<group>...) or first group or whole match (no match: the name).")
@click.option("--max-groups", type=AsciiInt(1, 10_000, metavar="N"), default=None,
              help="Export at most N groups; the rest add up in group=\"other\" (default 100).")
@click.option("--top-pids", type=AsciiInt(0, 1000, metavar="N"), default=0, show_default=True,
              help="Per-process series for the N processes nearest their fd limit.")
@click.option("--full-every", type=seconds(0), default=None,
              help="Re-read an fd table whose count did not change at least this often "
                   "(default: 300, or 20 intervals between scrapes if longer; 0: every table "
                   "on every scrape).")
def command(listen: tuple[str, int] | None, textfile: str | None, interval: float | None,
            once: bool, group_by: str, regexes: tuple[re.Pattern[str], ...],
            max_groups: int | None, top_pids: int, full_every: float | None) -> int:
    """Export every process group's fds, limits, socket states, growth, select() and epoll
    risks as Prometheus metrics, computed on each scrape."""
    import gc

    from fdscope.errors import UsageError
    from fdscope.exporter import collector as col
    from fdscope.exporter.groups import MAX_GROUPS, Grouper
    from fdscope.proc import Proc

    if once and listen is not None:
        raise UsageError("--once does not serve: drop --listen (it prints the metrics, or "
                         "writes them with --textfile)")
    if interval is not None and textfile is None:
        raise UsageError("--interval applies to --textfile (Prometheus decides when to "
                         "scrape /metrics)")
    if group_by == "cmdline-regex" and not regexes:
        raise UsageError("--group-by cmdline-regex needs at least one --group-regex")
    if regexes and group_by != "cmdline-regex":
        raise UsageError("--group-regex applies to --group-by cmdline-regex")
    path = None
    if textfile is not None:
        from fdscope.exporter.output import check_dir

        path = check_dir(textfile)
    proc = Proc()
    collector = col.FdCollector(
        proc, grouper=Grouper(proc, group_by, regexes),
        max_groups=max_groups if max_groups is not None else MAX_GROUPS, top_pids=top_pids,
        full_every=full_every)
    if once:
        data = collector.exposition()
        if path is not None:
            _write(path, data)
        else:
            from fdscope.cli.options import out

            out(data.decode("utf-8"), nl=False)
        return 0
    gc.enable()  # fdscope.cli.entry disables it for one-shot commands; this runs for months
    return _run(collector, listen, path, 15.0 if interval is None else interval)


def _write(path: str, data: bytes) -> None:
    from fdscope.errors import UsageError
    from fdscope.exporter.output import write_textfile

    try:
        write_textfile(path, data)
    except OSError as err:
        raise UsageError(f"--textfile: cannot write {path}: {err.strerror or err}") from err


def _run(collector: Any, listen: tuple[str, int] | None, path: str | None,
         interval: float) -> int:
    """Serve and/or write the textfile until SIGINT or SIGTERM."""
    import signal
    import sys
    import threading
    import time

    from fdscope.exporter.output import DEFAULT_LISTEN, parse_listen, serve

    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    server = None
    if listen is not None or path is None:
        host, port = listen if listen is not None else parse_listen(DEFAULT_LISTEN)
        server, bound = serve(collector.registry, host, port)
        sys.stderr.write(f"fdscope exporter: serving http://{bound}/metrics\n")
        sys.stderr.flush()
    try:
        if path is None:
            while not stop.wait(3600):
                pass
            return 0
        # The first write's failure is a usage error (the directory was checked a moment ago);
        # later ones (disk full) are logged and counted, and the next interval tries again.
        _write(path, collector.exposition())
        due = time.monotonic() + interval
        while not stop.wait(max(0.0, due - time.monotonic())):
            due += interval
            if due < time.monotonic():  # a scan longer than the interval: no catch-up burst
                due = time.monotonic() + interval
            try:
                from fdscope.exporter.output import write_textfile

                write_textfile(path, collector.exposition())
            except OSError as err:
                collector.errors += 1
                collector.log(f"cannot write {path}: {err.strerror or err}")
        return 0
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
