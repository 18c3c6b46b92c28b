"""`fdscope inspect PID`: every fd, socket, epoll registration and thread of one process."""

from __future__ import annotations

import click

from fdscope.cli.options import COUNT, PID, json_option, seconds

SECTION_NAMES = ("summary", "findings", "fds", "epoll", "threads", "io_model")
EPILOG = """\b
Examples:
  fdscope inspect 1234                      all sections as tables
  fdscope inspect 1234 --section epoll      only the epoll interest lists
  fdscope inspect 1234 --type socket,epoll  list only socket and epoll fds
  fdscope inspect 1234 --json | jq '.epoll[].registrations[] | select(.status != "ok")'
  fdscope inspect 1234 --sample 2           measure CPU for 2 s (busy-polling check)
  fdscope inspect 1234 --watch 5            fd counts by type every 5 s (leak hunting)
  fdscope inspect 1234 --peers              who holds the other end of each pipe and socket

\b
Exit codes: 0 report printed (findings do not change it), 2 usage, 3 no such process or it
exited mid-scan, 4 /proc/PID/fd not readable (needs ptrace read access: owner or root).
"""


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@click.command("inspect", epilog=EPILOG)
@click.argument("pid", type=PID)
@json_option
@click.option("--type", "types", multiple=True, metavar="TYPES",
              help="Only list fds of these types (comma-separated: socket,epoll,pipe,file,...).")
@click.option("--section", "sections", multiple=True, metavar="SECTIONS",
              help="Only these sections (comma-separated): " + ", ".join(SECTION_NAMES) + ".")
@click.option("--sample", type=seconds(0), default=None, metavar="SECONDS",
              help="Measure CPU over SECONDS. Default: only when a thread is on CPU and none "
                   "waits (0.25 s, to confirm busy polling); 0 never samples.")
@click.option("--flags", "flags", type=click.Choice(["auto", "all", "needed"]), default="auto",
              show_default=True,
              help="Which fds get flags/pos from fdinfo: auto = all up to 4096 open fds, else "
                   "only epoll fds, path fds and edge-triggered targets.")
@click.option("--watch", type=seconds(0.05), default=None, metavar="SECONDS",
              help="Re-count fds by type every SECONDS until Ctrl-C (deltas, growth per minute).")
@click.option("--count", type=COUNT, default=None, hidden=True,
              help="With --watch: stop after N samples.")
@click.option("--peers", is_flag=True,
              help="For each pipe and socket, the processes and fds holding its other end or "
                   "the same socket (scans the host's fd tables).")
def command(pid: int, as_json: bool, types: tuple[str, ...], sections: tuple[str, ...],
            sample: float | None, flags: str, watch: float | None, count: int | None,
            peers: bool) -> int:
    """Inspect process PID read-only: fds, sockets, epoll interest lists, threads, findings."""
    from fdscope.errors import FdscopeError, UsageError
    from fdscope.inspect.model import normalize_sections, normalize_types
    from fdscope.inspect.report import inspect_process

    try:
        type_list = normalize_types(_split(types))
        section_list = normalize_sections(_split(sections))
    except FdscopeError as err:
        raise UsageError(str(err)) from err
    if watch is not None and peers:
        raise UsageError("--peers does not apply to --watch")
    if watch is not None:
        import gc

        gc.enable()  # runs until Ctrl-C (fdscope.cli.entry disables it for one-shot inspects)
        return _watch(pid, watch, count, as_json)
    report = inspect_process(pid, sample=sample, sections=section_list, types=type_list,
                             flags=flags)
    if peers:
        from fdscope.host.peers import HostIndex, peers_for

        report.peers, notes = peers_for(pid, report.fds, HostIndex.scan())
        report.notes.extend(notes)
        if report.net_namespace_shared is False:
            report.notes.append("the process is in another network namespace: the peers of its "
                                "unix sockets are unknown (sock_diag answers for fdscope's own "
                                "namespace); pipes and shared sockets are listed")
    if as_json:
        import gc
        import sys

        from fdscope.render.inspect import iter_report_json

        was_enabled = gc.isenabled()
        gc.disable()  # rendering allocates megabytes of short-lived strings, no cycles
        try:
            write = sys.stdout.write
            for chunk in iter_report_json(report):
                write(chunk)
            sys.stdout.flush()
        finally:
            if was_enabled:
                gc.enable()
    else:
        from fdscope.render.inspect import render_text
        from fdscope.render.style import colour_enabled

        click.echo(render_text(report.to_json(), section_list, colour=colour_enabled()), nl=False)
    return 0


def _watch(pid: int, interval: float, count: int | None, as_json: bool) -> int:
    from fdscope.inspect.watch import iter_watch
    from fdscope.proc import Proc
    from fdscope.render.inspect import render_watch_header, render_watch_row
    from fdscope.render.json import dumps_line

    proc = Proc()
    proc.check_alive(pid)
    if not as_json:
        from fdscope.parse.task import parse_stat

        name = parse_stat(proc.read_text(pid, "stat", pid=pid)).comm
        click.echo(render_watch_header(pid, name, interval), nl=False)
    try:
        for sample in iter_watch(pid, interval, proc=proc, count=count):
            if as_json:
                click.echo(dumps_line({"schema": "fdscope.inspect.watch/1", "pid": pid, **sample}))
            else:
                click.echo(render_watch_row(sample))
    except KeyboardInterrupt:
        pass
    return 0
