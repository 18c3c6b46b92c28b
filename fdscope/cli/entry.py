"""The `fdscope` console script: starts the inspect read-ahead, then runs the click group."""

from __future__ import annotations

import sys


def main() -> None:
    # Before click is imported: the read-ahead's kernel reads overlap those ~50 ms of imports
    # (fdscope.readahead says what it reads and when its result is used).
    from fdscope import readahead

    readahead.start(sys.argv[1:])
    from fdscope.cli.main import main as run

    run()
