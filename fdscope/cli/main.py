"""The `fdscope` group: lazy command loading, platform check, and the one place where errors
become a one-line message on stderr and an exit code."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from fdscope import __version__
from fdscope.errors import (
    EXIT_FAILURE,
    EXIT_USAGE,
    FdscopeError,
    Unsupported,
    is_out_of_fds,
    out_of_fds_message,
)

# command name -> module exposing `command`; loaded on use so `fdscope limits` stays quick.
COMMANDS = {
    "limits": "fdscope.cli.limits",
    "inspect": "fdscope.cli.inspect",
    "top": "fdscope.cli.top",
    "probe": "fdscope.cli.probe",
    "serve": "fdscope.cli.serve",
    "load": "fdscope.cli.load",
    "run": "fdscope.cli.run",
    "bench": "fdscope.cli.bench",
    "exporter": "fdscope.cli.exporter",
}

EPILOG = """\b
Exit codes: 0 ok, 1 failure or failed check, 2 usage error, 3 no such process
(or it exited mid-scan), 4 permission denied, 5 unsupported platform or kernel feature.

\b
Examples:
  fdscope limits                 system and own fd limits with verdicts
  fdscope inspect 1234           every fd, socket, epoll registration, thread of pid 1234
  fdscope top                    every process's fds, limit, growth and flags, live
  fdscope probe --all            live epoll/select experiments on this kernel
  fdscope run epoll              start a reference server, load it, inspect it
  fdscope bench scaling          select/poll/epoll cost per event vs idle fds, measured
"""


def fail(message: str, code: int) -> None:
    """The one-line error: `fdscope: MESSAGE` on stderr, then exit with `code`. Target text
    inside a message (a path, a name) is escaped like every other text output."""
    from fdscope.render.escape import escape

    click.echo(f"fdscope: {escape(message)}", err=True, color=True)
    sys.exit(code)


def _out_of_fds_cause(err: BaseException) -> OSError | None:
    """The EMFILE/ENFILE behind `err`, if running out of fds is what it comes from."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if is_out_of_fds(cur):
            return cur  # type: ignore[return-value]
        cur = cur.__cause__ or cur.__context__
    return None


class FdscopeGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        import importlib.util

        return [name for name, mod in COMMANDS.items() if importlib.util.find_spec(mod)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        mod = COMMANDS.get(name)
        if mod is None:
            return None
        # import_module, not importlib.util.find_spec first: importlib.util costs ~0.5 ms of
        # every command's start, and a module that is missing says so itself.
        try:
            return importlib.import_module(mod).command
        except ModuleNotFoundError as err:
            if err.name != mod:
                raise  # the command's own import failed: a bug to report, not "no such command"
            return None

    def main(self, args: Any = None, prog_name: str | None = None, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(args=args, prog_name=prog_name or "fdscope", **kwargs)
        except click.UsageError as err:
            hint = ""
            if err.ctx is not None:
                hint = f" (see '{err.ctx.command_path} --help')"
            fail(err.format_message().replace("\n", " ") + hint, EXIT_USAGE)
        except click.exceptions.Abort:
            fail("interrupted", 130)
        except click.ClickException as err:
            fail(err.format_message().replace("\n", " "), err.exit_code)
        except FdscopeError as err:
            fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            # stdout closed by a pager or `head`: exit quietly, as coreutils do.
            quiet_stdout()
            sys.exit(EXIT_FAILURE)
        except Exception as err:  # noqa: BLE001 - last resort: never a traceback for users
            if os.environ.get("FDSCOPE_DEBUG"):
                raise
            cause = _out_of_fds_cause(err)
            if cause is not None:
                fail(out_of_fds_message(cause.errno or 0), EXIT_FAILURE)
            fail(
                f"internal error: {type(err).__name__}: {err} (set FDSCOPE_DEBUG=1 for a traceback)",
                EXIT_FAILURE,
            )
        sys.exit(rv if isinstance(rv, int) else 0)


def quiet_stdout() -> None:
    """Point fd 1 at /dev/null, so the interpreter's final flush of a closed pipe stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    finally:
        os.close(devnull)


@click.group(cls=FdscopeGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fdscope")
def cli() -> None:
    """Inspect how Linux processes use file descriptors: limits, fds, sockets, epoll
    interest lists, blocked threads; live kernel probes; reference I/O-model servers."""
    if not sys.platform.startswith("linux"):
        raise Unsupported(
            f"fdscope reads Linux's /proc and runs only on Linux (this is {sys.platform})"
        )


def main() -> None:
    cli.main()
