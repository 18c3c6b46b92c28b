"""`fdscope bench scaling|register`: the seed's select/poll/epoll claims, measured here."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from fdscope.cli.options import echo_doc

HELP = """Measure the seed lesson's claims about select, poll and epoll on this kernel.

\b
  scaling   cost per delivered event as idle fds are added, per mechanism
  register  registering N fds once (epoll_ctl) against passing them every call

\b
Examples:
  fdscope bench scaling
  fdscope bench scaling --quick --json
  fdscope bench scaling --idle 1,1000,20000 --mechanisms poll,epoll --plot scaling.svg
  fdscope bench register --plot register.png
"""

SCALING_HELP = """Cost per delivered event against the number of idle fds watched.

N idle connected sockets (unix socketpairs; --idle-kind tcp for loopback TCP) plus K active
socketpairs passing one token round-robin. Each mechanism (select, poll, epoll, epoll-et,
selectors, asyncio, asyncio-uvloop, io_uring) delivers the token's events; reported per event: µs
median and p99, and the wait call's own µs. select above FD_SETSIZE is reported as refused.
Ends with the least-squares growth per 1,000 idle fds for each mechanism.

\b
Exit 0 when every cell was measured or refused by the mechanism itself (select above
FD_SETSIZE; asyncio-uvloop without uvloop; io_uring where the kernel refuses it); 1 when the fd limit stopped a size; 5 when
--plot needs matplotlib, or a mechanism named with --mechanisms needs a missing module.

\b
Examples:
  fdscope bench scaling                         defaults: idle 1,10,100,1000,10000 (< 60 s)
  fdscope bench scaling --quick                 idle 1,100,2000, short cells (< 10 s)
  fdscope bench scaling --mechanisms select,poll,epoll --idle 1,500,1000
  fdscope bench scaling --json --plot scaling.png
"""

REGISTER_HELP = """Registering N fds once (epoll_ctl) against passing all N on every call.

Per size: epoll (N epoll_ctl calls once, then epoll_wait), poll (the pollfd array, 8 bytes
per fd in and 2 out on every call), poll (copy only: the same array with fd -1, so the kernel
copies but polls nothing), select (three fd_set bitmaps in and out). Every call has timeout 0
on idle fds: the price of the set's size alone. Reports bytes copied per call, µs per call,
and after how many calls epoll's registration has paid for itself.

\b
Examples:
  fdscope bench register
  fdscope bench register --fds 1,100,10000 --json
  fdscope bench register --plot register.svg
"""


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, not {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise click.BadParameter(f"expected positive integers, not {text!r}")
    return values


@contextlib.contextmanager
def _progress(length: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when stderr is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


def _check_plot(plot: str | None) -> None:
    if plot is not None:
        from fdscope.bench.plot import plot_format, require_matplotlib

        plot_format(plot)
        require_matplotlib()


def _finish(doc: dict[str, Any], as_json: bool, plot: str | None,
            render: Callable[[dict[str, Any]], str], draw: Callable[[dict[str, Any], str], None]
            ) -> int:
    if plot is not None:
        draw(doc, plot)
    echo_doc(doc, as_json, render)
    if plot is not None and not as_json:
        click.echo(f"plot written to {plot}")
    return 0 if doc["ok"] else 1


@click.group("bench", help=HELP)
def command() -> None:
    pass


@command.command("scaling", help=SCALING_HELP)
@click.option("--idle", "idle", default=None, metavar="LIST",
              help="Idle fd counts, comma-separated [default: 1,10,100,1000,10000].")
@click.option("--active", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Active socketpairs passing the token.")
@click.option("--mechanisms", default=None, metavar="LIST",
              help="Comma-separated subset of: select, poll, epoll, epoll-et, selectors, "
                   "asyncio, asyncio-uvloop, io_uring [default: all].")
@click.option("--seconds", type=click.FloatRange(0.01, 60), default=None,
              help="Time per cell (at least --min-events events) [default: 0.8; --quick 0.05].")
@click.option("--min-events", type=click.IntRange(10), default=None,
              help="Events per cell at least [default: 150; --quick 30].")
@click.option("--idle-kind", type=click.Choice(["unix", "tcp"]), default="unix",
              show_default=True, help="Idle sockets: unix socketpairs or loopback TCP.")
@click.option("--active-fds", type=click.Choice(["high", "low"]), default="high",
              show_default=True,
              help="Give the active pairs the highest fd numbers (scanned last) or the lowest.")
@click.option("--quick", is_flag=True, help="Idle 1,100,2000 and short cells (< 10 s).")
@click.option("--plot", default=None, metavar="FILE",
              help="Write a log-log plot (.png or .svg; needs fdscope[plot]).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (fdscope.bench/1).")
def scaling(idle: str | None, active: int, mechanisms: str | None, seconds: float | None,
            min_events: int | None, idle_kind: str, active_fds: str, quick: bool,
            plot: str | None, as_json: bool) -> int:
    from fdscope.bench.mechanisms import MECHANISMS
    from fdscope.bench.scaling import ScalingConfig, quick_config, run_scaling
    from fdscope.errors import Unsupported

    names = tuple(MECHANISMS)
    if mechanisms is not None:
        names = tuple(x.strip() for x in mechanisms.split(",") if x.strip())
        unknown = [n for n in names if n not in MECHANISMS]
        if unknown or not names:
            raise click.BadParameter(
                f"unknown mechanism {', '.join(unknown) or '(none)'}; choose from "
                f"{', '.join(MECHANISMS)}", param_hint="--mechanisms")
        for n in names:
            reason = MECHANISMS[n].unavailable()
            if reason:
                raise Unsupported(f"{n}: {reason}")
    _check_plot(plot)
    opts: dict[str, Any] = {"active": active, "mechanisms": names, "kind": idle_kind,
                            "active_high": active_fds == "high"}
    if idle is not None:
        opts["idle"] = _int_list(idle)
    if seconds is not None:
        opts["seconds"] = seconds
    if min_events is not None:
        opts["min_events"] = min_events
    cfg = quick_config(**opts) if quick else ScalingConfig(**opts)
    from fdscope.bench.plot import plot_scaling
    from fdscope.render.bench import render_scaling

    with _progress(len(set(cfg.idle)) * len(cfg.mechanisms), "bench scaling") as progress:
        doc = run_scaling(cfg, progress)
    return _finish(doc, as_json, plot, render_scaling, plot_scaling)


@command.command("register", help=REGISTER_HELP)
@click.option("--fds", "fds", default=None, metavar="LIST",
              help="Set sizes, comma-separated [default: 1,10,100,1000,10000].")
@click.option("--seconds", type=click.FloatRange(0.01, 60), default=None,
              help="Time per measurement [default: 0.2; --quick 0.03].")
@click.option("--quick", is_flag=True, help="Sizes 1,100,2000 and short measurements.")
@click.option("--plot", default=None, metavar="FILE",
              help="Write a log-log plot (.png or .svg; needs fdscope[plot]).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (fdscope.bench/1).")
def register(fds: str | None, seconds: float | None, quick: bool, plot: str | None,
             as_json: bool) -> int:
    import dataclasses

    from fdscope.bench.register import RegisterConfig, quick_register_config, run_register

    _check_plot(plot)
    cfg = quick_register_config() if quick else RegisterConfig()
    if fds is not None:
        cfg = dataclasses.replace(cfg, fds=_int_list(fds))
    if seconds is not None:
        cfg = dataclasses.replace(cfg, seconds=seconds)
    from fdscope.bench.plot import plot_register
    from fdscope.render.bench import render_register

    with _progress(len(set(cfg.fds)), "bench register") as progress:
        doc = run_register(cfg, progress)
    return _finish(doc, as_json, plot, render_register, plot_register)
