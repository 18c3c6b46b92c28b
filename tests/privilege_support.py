"""Running fdscope as another user from inside the test process.

A forked child that drops to uid/gid nobody (65534) runs the CLI in-process. The child cannot
import anything from disk: the repository (and the interpreter, under /root) may sit in a
0700 directory that nobody cannot enter. So before forking, every fdscope module is imported
and the same command runs once as the test's own user, which imports whatever that path needs.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import pkgutil
import sys

NOBODY = 65534


def preload(argv: list[str]) -> None:
    """Import every fdscope module, and everything `fdscope ARGV` imports on its way."""
    import threading  # noqa: F401 - the read-ahead's thread

    import fdscope
    from fdscope.cli.main import cli

    for mod in pkgutil.walk_packages(fdscope.__path__, "fdscope."):
        if not mod.name.endswith(".__main__"):  # that one runs the CLI
            importlib.import_module(mod.name)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.main(argv)
        except SystemExit:
            pass


def run_as_nobody(argv: list[str], entry: bool = False, capture: int = 2) -> tuple[int, str]:
    """Run the real fdscope CLI in a forked child that dropped to uid/gid nobody.

    Returns (exit status, the text of fd `capture`: 2 stderr, 1 stdout; the other goes to
    /dev/null). entry=True runs the console entry point (fdscope.cli.entry: read-ahead,
    os._exit) instead of the click group."""
    preload(argv)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 99
        try:
            os.close(r)
            os.dup2(w, capture)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 3 - capture)
            sys.stdout = open(1, "w", closefd=False)  # pytest swapped the Python-level streams
            sys.stderr = open(2, "w", closefd=False)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            from fdscope.cli.main import cli

            if entry:
                from fdscope.cli.entry import main

                sys.argv = ["fdscope", *argv]
                main()  # ends in os._exit
            try:
                cli.main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "r") as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text
