"""The `fdscope` console script: starts the inspect read-ahead, then runs the click group."""

from __future__ import annotations

import sys


def main() -> None:
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
