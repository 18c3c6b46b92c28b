"""The `fdscope` console script: starts the inspect read-ahead, then runs the click group."""

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

    # A one-shot `inspect PID` makes ~100,000 objects (16,000 fds) in no cycles worth
    # collecting, and the collector would walk them and the imported modules again and again:
    # off from the start. Every other command runs with it on (inspect --watch turns it on).
    gc.disable()
    from fdscope.inspect import readahead

    if readahead.inspect_pid(sys.argv[1:]) is None:
        gc.enable()
        from fdscope.cli.main import main as run

        run()
        return
    # Before click is imported: the read-ahead's kernel reads overlap the imports
    # (fdscope.inspect.readahead says what it reads and when its result is used).
    readahead.start(sys.argv[1:])
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
    # is flushed, and nothing of inspect's needs it.
    os._exit(code)
