"""The `fdscope` console script: starts the inspect or top read-ahead, then runs the click group."""

from __future__ import annotations

import sys


def main() -> None:
    """The console script: _main() with two last resorts no command can provide itself."""
    # Text is escaped before it is printed (fdscope.render.escape); should anything slip
    # through, a strict UTF-8 stdout (PYTHONIOENCODING=utf-8) prints \xNN instead of failing.
    try:
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass
    try:
        _main()
    except OSError as err:
        # Out of fds before the click group's error boundary exists: while importing, or in
        # the inspect read-ahead (a read-ahead dir fd under `ulimit -n 5`).
        import errno

        if err.errno not in (errno.EMFILE, errno.ENFILE):
            raise
        from fdscope.errors import out_of_fds_message  # imported already, by the read-ahead

        sys.stderr.write(f"fdscope: {out_of_fds_message(err.errno, 'while starting')}\n")
        sys.stderr.flush()
        sys.exit(1)


def _main() -> None:
    import gc

    # A one-shot `inspect PID` or `top --once` makes ~100,000 objects (16,000 fds; a host of
    # 90,000) in no cycles worth collecting, and the collector would walk them and the imported
    # modules again and again: off from the start. Every other command runs with it on, and so
    # do the repeating modes of these two (inspect --watch, top live and --count).
    gc.disable()
    from fdscope.inspect import readahead

    argv = sys.argv[1:]
    # Before click is imported: the read-ahead's kernel reads overlap the imports
    # (fdscope.inspect.readahead and fdscope.host.readahead say what they read and when their
    # results are used).
    if readahead.inspect_pid(argv) is not None:
        readahead.start(argv)
    elif argv[:1] == ["top"]:
        from fdscope.host import readahead as host_readahead

        host_readahead.start(argv)
    else:
        gc.enable()
        from fdscope.cli.main import main as run

        run()
        return
    import os

    from fdscope.cli.main import main as run

    try:
        run()
    except SystemExit as done:
        code = done.code
    else:
        code = 0
    if not isinstance(code, int):  # sys.exit("message") or sys.exit(None)
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        code = code or 1
    # No interpreter teardown (freeing every object of a large report one by one): the output
    # is flushed, and nothing of inspect's or top's needs it.
    os._exit(code)
