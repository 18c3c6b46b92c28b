"""`fdscope limits`: system and per-process fd limits with verdicts."""

from __future__ import annotations

import click

from fdscope.cli.options import PID, echo_doc, json_option

HELP = """Show fd limits with a verdict on each: select()'s FD_SETSIZE (verified live),
RLIMIT_NOFILE, open and highest fd, fs.file-max, fs.file-nr, fs.nr_open, epoll and inotify
watch limits, net.core.somaxconn.

\b
Without --pid, the process figures are fdscope's own.

\b
Examples:
  fdscope limits
  fdscope limits --pid 1234
  fdscope limits --pid 1234 --json | jq .findings
"""


@click.command("limits", help=HELP)
@click.option("--pid", type=PID, default=None, help="Report this process's figures.")
@json_option
def command(pid: int | None, as_json: bool) -> int:
    from fdscope.limits import gather_limits
    from fdscope.render.limits import render_text
    from fdscope.render.style import colour_enabled

    doc = gather_limits(pid).to_json()
    colour = colour_enabled()
    echo_doc(doc, as_json, lambda d: render_text(d, colour))
    return 0
