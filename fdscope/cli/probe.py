"""`fdscope probe`: live epoll/select experiments on this kernel, compared with the man pages."""

from __future__ import annotations

import click

from fdscope.cli.options import echo_doc, json_option
from fdscope.probes import ALL_TRANSPORTS, PROBES

HELP = """Run live experiments on this kernel and compare what epoll_wait, select and poll
report at each step with what epoll(7), epoll_ctl(2) and select(2) say. Each probe ends in a
verdict: matches, deviates (naming the first deviating step) or skipped (with the reason).

\b
Probes (NAME):
  trigger    level- vs edge-triggered EPOLLIN and EPOLLOUT (the default)
  oneshot    EPOLLONESHOT: one report, silence until EPOLL_CTL_MOD; fdinfo mask
  fdsetsize  select() rejects fd 1024; poll() and epoll accept it
  stale      close a dup'ed fd: the epoll registration lives on (flagged by inspect)
  exclusive  4 waiters, 1 connection: wake-ups without/with EPOLLEXCLUSIVE
  rdhup      peer shutdown(SHUT_WR): EPOLLRDHUP|EPOLLIN, then read() == 0
  io_uring   NOPs and a pipe read on a raw ring: fdinfo SQ/CQ head and tail move as
             documented (exit 5 where io_uring is unavailable)

\b
Without NAME or --all, runs `trigger` (both modes) on a socketpair.
Exit status: 0 when every probe matches or is skipped, 1 when any deviates, 5 when
the io_uring probe alone was asked for and io_uring is unavailable here.

\b
Examples:
  fdscope probe                          trigger probe, level and edge
  fdscope probe --trigger edge --transport pipe
  fdscope probe oneshot --transport tcp
  fdscope probe fdsetsize
  fdscope probe io_uring
  fdscope probe --all                    every probe, then a summary table
  fdscope probe --all --json | jq '.probes[] | {name, verdict}'
"""


@click.command("probe", help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name", required=False, metavar="[NAME]", type=click.Choice(list(PROBES)))
@click.option("--all", "run_all", is_flag=True, help="Run every probe and print a summary.")
@click.option("--trigger", "trigger_mode", type=click.Choice(["level", "edge", "both"]),
              default=None, help="Trigger probe: which mode(s) [default: both].")
@click.option("--transport", type=click.Choice(list(ALL_TRANSPORTS)), default=None,
              help="socketpair (default), pipe or tcp (127.0.0.1) for probes that take one; "
                   "with --all, trigger runs on all three unless this is given.")
@click.option("-v", "--verbose", is_flag=True, help="Show each step's source (man page, kernel file).")
@json_option
def command(name: str | None, run_all: bool, trigger_mode: str | None, transport: str | None,
            verbose: bool, as_json: bool) -> int:
    from fdscope.probes import TRIGGER_MODES, plan, run_probes
    from fdscope.render.probe import render_text
    from fdscope.render.style import colour_enabled

    if run_all and name:
        raise click.UsageError(f"give a probe NAME or --all, not both (got {name} and --all)")
    names = list(PROBES) if run_all else [name or "trigger"]
    if trigger_mode and "trigger" not in names:
        raise click.UsageError(f"--trigger applies to the trigger probe, not {name}")
    if transport and not run_all:
        spec = PROBES[names[0]]
        if len(spec.transports) == 1:
            raise click.UsageError(
                f"{spec.name} takes no --transport (it always runs on {spec.transports[0]})")
        if transport not in spec.transports:
            raise click.UsageError(
                f"{spec.name} runs on {' or '.join(spec.transports)}, not {transport}")
    modes = TRIGGER_MODES if trigger_mode in (None, "both") else (trigger_mode,)
    report = run_probes(plan(names, modes=modes, transport=transport))
    if names == ["io_uring"] and report.results and report.results[0].verdict == "skipped":
        from fdscope.errors import Unsupported

        raise Unsupported(f"probe io_uring: {report.results[0].reason}")
    colour = colour_enabled()
    echo_doc(report.to_json(), as_json, lambda d: render_text(d, colour, sources=verbose))
    return 1 if report.deviates else 0
