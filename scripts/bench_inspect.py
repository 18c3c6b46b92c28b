#!/usr/bin/env python3
"""Benchmark: `fdscope inspect PID --json` against `lsof -n -P -p PID` on one big process.

Builds a process holding 16,000 fds (unix socketpairs, loopback TCP connections and a listener,
pipes, eventfds) with 8,000 of them registered in one epoll set, then times both commands
alternately (ROUNDS each, output to /dev/null) and prints the medians and the ratio.
Target (issue 3): fdscope <= 0.5 x lsof.

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


def build_speedups(site: str) -> None:
    """Compile csrc/fdscope_speedups.c into `site` as setup.py's build_ext would (same flags)."""
    import sysconfig

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(site, "_fdscope_speedups" + sysconfig.get_config_var("EXT_SUFFIX"))
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    subprocess.run([*cc, "-shared", "-fPIC", "-O2", "-I", sysconfig.get_paths()["include"],
                    os.path.join(root, "csrc", "fdscope_speedups.c"), "-o", out], check=True)


def install_copy(tmp: str, speedups: bool = True) -> str:
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
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fdscope")
    shutil.copytree(src, os.path.join(site, "fdscope"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    compileall.compile_dir(os.path.join(site, "fdscope"), quiet=1)
    if speedups:
        build_speedups(site)
    script = os.path.join(env_dir, "bin", "fdscope")
    with open(script, "w") as f:
        f.write(SCRIPT.format(python=python))
    os.chmod(script, 0o755)
    return script


def run_once(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--fds", type=int, default=16000)
    ap.add_argument("--regs", type=int, default=8000)
    ap.add_argument("--no-speedups", action="store_true",
                    help="install without the C accelerator (the pure-Python code paths)")
    ap.add_argument("--fdscope", metavar="PATH",
                    help="time this fdscope executable instead of a fresh install of the tree")
    args = ap.parse_args()
    lsof = shutil.which("lsof")
    if lsof is None:
        print("needs lsof on PATH", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="fdscope-bench-") as tmp:
        if args.fdscope:
            fdscope = args.fdscope
            print(f"fdscope: {fdscope}")
        else:
            fdscope = install_copy(tmp, speedups=not args.no_speedups)
            print(f"fdscope: non-editable copy of this tree installed in {os.path.dirname(fdscope)}"
                  " (venv + byte-compiled package + pip's console script, C accelerator "
                  f"{'left out' if args.no_speedups else 'built'})")
        return bench(lsof, fdscope, args)


def bench(lsof: str, fdscope: str, args: argparse.Namespace) -> int:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(args.fds), str(args.regs)],
                              stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(holder.stdout.readline())  # type: ignore[union-attr]
        pid = holder.pid
        out = subprocess.run([fdscope, "inspect", str(pid), "--json"], capture_output=True,
                             text=True, check=True).stdout
        doc = json.loads(out)
        regs = sum(len(s["registrations"]) for s in doc["epoll"])
        print(f"target pid {pid}: {info['fds']} fds, {info['regs']} epoll registrations; "
              f"fdscope saw {doc['summary']['open_fds']} fds, {regs} registrations, "
              f"{doc['summary']['by_type']}")
        lsof_cmd = [lsof, "-n", "-P", "-p", str(pid)]
        fd_cmd = [fdscope, "inspect", str(pid), "--json"]
        run_once(lsof_cmd)
        run_once(fd_cmd)
        t_lsof, t_fd = [], []
        for _ in range(args.rounds):
            t_lsof.append(run_once(lsof_cmd))
            t_fd.append(run_once(fd_cmd))
        m_lsof, m_fd = statistics.median(t_lsof), statistics.median(t_fd)
        runs_lsof = ", ".join(f"{t:.3f}" for t in t_lsof)
        runs_fd = ", ".join(f"{t:.3f}" for t in t_fd)
        print(f"lsof -n -P -p PID      : median {m_lsof:.3f} s  (runs: {runs_lsof})")
        print(f"fdscope inspect --json : median {m_fd:.3f} s  (runs: {runs_fd})")
        ratio = m_fd / m_lsof
        print(f"ratio fdscope/lsof     : {ratio:.2f}  (target <= 0.50: "
              f"{'met' if ratio <= 0.5 else 'NOT met'})")
        return 0
    finally:
        holder.kill()
        holder.wait()


if __name__ == "__main__":
    sys.exit(main())
