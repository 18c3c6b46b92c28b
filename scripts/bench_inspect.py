#!/usr/bin/env python3
"""Benchmark: `fdscope inspect PID --json` against `lsof -n -P -p PID` on one big process.

Builds a process holding 16,000 fds (unix socketpairs, loopback TCP connections and a listener,
pipes, eventfds) with 8,000 of them registered in one epoll set, then times both commands
alternately (ROUNDS each, output to /dev/null) and prints the medians and the ratio.
Targets: fdscope <= 0.55 x lsof with the C accelerator, <= 0.90 x without it. --baseline TREE
times another working tree alternated in the same run (before/after a change).

fdscope is timed as users run it: a throwaway non-editable install of this working tree in a
temporary venv (see install_copy), unless --fdscope PATH names an executable to time instead.

Usage: .venv/bin/python scripts/bench_inspect.py [--rounds 7] [--fds 16000] [--regs 8000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

HOLDER = textwrap.dedent(
    """
    import json, os, resource, select, socket, sys, time
    want_fds, want_regs = int(sys.argv[1]), int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_NOFILE, (want_fds + 1000, max(want_fds + 1000,
                       resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
    ep = select.epoll()
    keep = []
    socks, tcp, pipes, events = [], [], [], []
    for _ in range(want_fds * 3 // 16):                          # unix socketpairs: 6/16
        a, b = socket.socketpair(); socks += [a, b]
    lst = socket.create_server(("127.0.0.1", 0), backlog=128)
    for _ in range(want_fds // 16):                              # loopback TCP pairs: 2/16
        c = socket.create_connection(lst.getsockname()); s, _addr = lst.accept(); tcp += [c, s]
    for _ in range(want_fds * 5 // 32):                          # pipes: 5/16
        r, w = os.pipe(); pipes += [r, w]
    while len(socks) + len(tcp) + len(pipes) + len(events) + 8 < want_fds:
        events.append(os.eventfd(0))                             # eventfds: the rest
    fd = lambda o: o if isinstance(o, int) else o.fileno()
    order = [fd(o) for o in tcp] + [fd(o) for o in socks] + pipes[: want_regs // 16] + events
    for n in order[:want_regs]:
        ep.register(n, select.EPOLLIN | select.EPOLLRDHUP)
    print(json.dumps({"fds": len(os.listdir("/proc/self/fd")), "regs": min(want_regs, len(order))}),
          flush=True)
    time.sleep(3600)
    """
)


SCRIPT = """\
#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from fdscope.cli.entry import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_speedups(site: str, root: str = ROOT) -> None:
    """Compile csrc/fdscope_speedups.c of the tree `root` into `site` as setup.py's build_ext
    would (same flags)."""
    import sysconfig

    out = os.path.join(site, "_fdscope_speedups" + sysconfig.get_config_var("EXT_SUFFIX"))
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    subprocess.run([*cc, "-shared", "-fPIC", "-O2", "-I", sysconfig.get_paths()["include"],
                    os.path.join(root, "csrc", "fdscope_speedups.c"), "-o", out], check=True)


def install_copy(tmp: str, speedups: bool = True, root: str = ROOT) -> str:
    """A throwaway non-editable install of this working tree, as `pip install .` lays it out:
    a venv, the fdscope package copied into its site-packages and byte-compiled, pip's console
    script. The development venv's editable install would add its import finder (~12 ms per
    start) to every run; users run an installed copy. click, psutil and tabulate are taken from
    the running environment through a .pth line (no network, no build step)."""
    import compileall
    import venv

    import click

    env_dir = os.path.join(tmp, "venv")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = os.path.join(env_dir, "bin", "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = os.path.dirname(os.path.dirname(click.__file__))
    # Only click, psutil and tabulate from there: not a (stale) build of the C accelerator.
    shadow = os.path.join(tmp, "deps")
    os.mkdir(shadow)
    for name in os.listdir(deps):
        if not name.startswith(("_fdscope_speedups", "fdscope")):
            os.symlink(os.path.join(deps, name), os.path.join(shadow, name))
    with open(os.path.join(site, "fdscope-bench-deps.pth"), "w") as f:
        f.write(shadow + "\n")
    src = os.path.join(root, "fdscope")
    shutil.copytree(src, os.path.join(site, "fdscope"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    compileall.compile_dir(os.path.join(site, "fdscope"), quiet=1)
    if speedups:
        build_speedups(site, root)
    script = os.path.join(env_dir, "bin", "fdscope")
    with open(script, "w") as f:
        f.write(SCRIPT.format(python=python))
    os.chmod(script, 0o755)
    return script


def run_once(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


# Targets (issue 10): fdscope at most these fractions of lsof's wall time.
TARGETS = {True: 0.55, False: 0.90}  # with the C accelerator, without


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--fds", type=int, default=16000)
    ap.add_argument("--regs", type=int, default=8000)
    ap.add_argument("--no-speedups", action="store_true",
                    help="time only the install without the C accelerator")
    ap.add_argument("--speedups-only", action="store_true",
                    help="time only the install with the C accelerator")
    ap.add_argument("--baseline", metavar="TREE",
                    help="also time installs of another working tree (e.g. a `git worktree` of "
                         "an earlier commit), alternated with this one: before/after in one run")
    ap.add_argument("--fdscope", metavar="PATH",
                    help="time this fdscope executable instead of fresh installs of the tree")
    args = ap.parse_args()
    lsof = shutil.which("lsof")
    if lsof is None:
        print("needs lsof on PATH", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="fdscope-bench-") as tmp:
        variants: list[tuple[str, str, bool | None]] = []
        if args.fdscope:
            variants.append((args.fdscope, args.fdscope, None))
        else:
            modes = [False] if args.no_speedups else [True] if args.speedups_only else [True, False]
            trees = [("this tree", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
            for label, root in trees:
                for c in modes:
                    where = os.path.join(tmp, f"{label.replace(' ', '-')}-{'c' if c else 'py'}")
                    os.mkdir(where)
                    variants.append((f"{label}, {'C' if c else 'no C'}",
                                     install_copy(where, speedups=c, root=root), c))
            print("fdscope: non-editable copies installed in temporary venvs (byte-compiled "
                  "package + pip's console script)")
        return bench(lsof, variants, args)


def bench(lsof: str, variants: list[tuple[str, str, bool | None]],
          args: argparse.Namespace) -> int:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(args.fds), str(args.regs)],
                              stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(holder.stdout.readline())  # type: ignore[union-attr]
        pid = holder.pid
        out = subprocess.run([variants[0][1], "inspect", str(pid), "--json"],
                             capture_output=True, text=True, check=True).stdout
        doc = json.loads(out)
        regs = sum(len(s["registrations"]) for s in doc["epoll"])
        print(f"target pid {pid}: {info['fds']} fds, {info['regs']} epoll registrations; "
              f"fdscope saw {doc['summary']['open_fds']} fds, {regs} registrations, "
              f"{doc['summary']['by_type']}")
        cmds = [("lsof -n -P -p PID", [lsof, "-n", "-P", "-p", str(pid)])] + \
            [(label, [exe, "inspect", str(pid), "--json"]) for label, exe, _c in variants]
        for _label, cmd in cmds:
            run_once(cmd)  # warm caches
        times: dict[str, list[float]] = {label: [] for label, _ in cmds}
        for _ in range(args.rounds):
            for label, cmd in cmds:
                times[label].append(run_once(cmd))
        m_lsof = statistics.median(times[cmds[0][0]])
        for label, _ in cmds:
            runs = ", ".join(f"{t:.3f}" for t in times[label])
            print(f"{label:24}: median {statistics.median(times[label]):.3f} s  (runs: {runs})")
        for label, _exe, c in variants:
            ratio = statistics.median(times[label]) / m_lsof
            target = TARGETS.get(c) if c is not None else None
            verdict = "" if target is None else \
                f"  (target <= {target:.2f}: {'met' if ratio <= target else 'NOT met'})"
            print(f"ratio {label:18}: {ratio:.2f}{verdict}")
        return 0
    finally:
        holder.kill()
        holder.wait()


if __name__ == "__main__":
    sys.exit(main())
