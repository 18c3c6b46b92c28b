#!/usr/bin/env python3
"""Benchmark: `fdscope top --once --json` against `lsfd --summary=only` (and `lsof -n -P` when
installed) on a busy host, at three sizes; then the CPU of a live `fdscope top` refresh.

A farm process forks the busy host: N processes with a mix of fds each (unix socketpairs,
loopback TCP pairs, pipes, /dev/null and a regular file, eventfds, one epoll set watching a
quarter of them), a few of them with 8,000 fds (RLIMIT_NOFILE raised to fit). Per size the
commands run alternately (--rounds each, output to /dev/null) and the medians and ratios are
printed; the scan time fdscope reports itself (elapsed_ms) gives the growth model
scan = a + b * processes + c * fds, fitted (least squares) over every round of the three sizes,
and its prediction for 10,000
processes / 5 million fds. Live: `fdscope top --interval 2` in a pseudo-terminal on the largest
size for --live seconds; its CPU time (utime + stime) over that window, as % of one core.
Also: process enumeration with psutil.process_iter() against fdscope's direct reads. Every
process on the machine counts (the figures give the host's processes and fds, the farm's share,
and the load average before and after each size).

Targets (issue 13): top <= 0.2 x lsfd wall time; live refresh <= 5% of one core at 2 s.
fdscope is timed as users run it: a throwaway install of this working tree (bench_inspect's
install_copy), unless --fdscope PATH names an executable.

Usage: .venv/bin/python scripts/bench_top.py [--rounds 5] [--live 62] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_inspect import install_copy  # noqa: E402

# (processes, fds each, big processes, fds each big one)
SIZES = ((100, 300, 0, 0), (300, 100, 0, 0), (296, 200, 4, 8000))

FARM = textwrap.dedent(
    r"""
    import os, resource, select, socket, sys, time, signal
    n, each, big, big_fds, tmp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    path = os.path.join(tmp, "farm.dat")
    open(path, "w").close()

    def child(k, ready_w):
        want = big_fds if k < big else each
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want + 256), hard))
        keep = []
        lst = socket.create_server(("127.0.0.1", 0), backlog=4096)
        ep = select.epoll()
        keep += [lst, ep]
        base = len(os.listdir("/proc/self/fd"))
        while base + len(keep) < want:
            m = len(keep) % 20
            if m < 8:
                keep += list(socket.socketpair())
            elif m < 10:
                c = socket.create_connection(lst.getsockname()); s, _ = lst.accept(); keep += [c, s]
            elif m < 15:
                keep += list(os.pipe())
            elif m < 18:
                keep.append(os.open(path if m == 17 else "/dev/null", os.O_RDONLY))
            else:
                keep.append(os.eventfd(0))
        for o in keep[2::4]:
            try:
                ep.register(o if isinstance(o, int) else o.fileno(), select.EPOLLIN)
            except OSError:
                pass
        os.write(ready_w, b"x")
        os.close(ready_w)
        signal.pause()

    r, w = os.pipe()
    kids = []
    for k in range(n + big):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                child(k, w)
            finally:
                os._exit(0)
        kids.append(pid)
    os.close(w)
    got = 0
    while got < n + big:
        b = os.read(r, 4096)
        if not b:
            break
        got += len(b)
    print(len(kids), flush=True)
    try:
        sys.stdin.read()
    finally:
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
        for pid in kids:
            os.waitpid(pid, 0)
    """
)


class Farm:
    def __init__(self, procs: int, each: int, big: int, big_fds: int, tmp: str) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", FARM, str(procs), str(each), str(big),
                                   str(big_fds), tmp], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("farm failed to start")

    def close(self) -> None:
        self.p.stdin.close()  # type: ignore[union-attr]
        self.p.wait(timeout=120)


def timed(cmd: list[str]) -> float:
    return timed_cpu(cmd)[0]


def timed_cpu(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the command and its threads)."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime


def host_size(fdscope: str) -> tuple[int, int, float]:
    res = subprocess.run([fdscope, "top", "--json"], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"fdscope top --json: exit {res.returncode}: {res.stderr.strip()}")
    doc = json.loads(res.stdout)
    return doc["host"]["processes"], doc["host"]["fds_total"], doc["elapsed_ms"]


def enumeration() -> dict[str, float]:
    """ms to list every process with its name, uid and fd count: psutil against direct reads
    through fdscope.proc (median of 7)."""
    import psutil

    from fdscope.errors import FdscopeError
    from fdscope.proc import Proc

    proc = Proc()

    def direct() -> int:
        n = 0
        for name in proc.listdir():
            if not name.isdigit():
                continue
            try:
                seen = (proc.read_text(name, "stat"), proc.stat(name).st_uid,
                        proc.stat(name, "fd").st_size)
            except FdscopeError:
                continue
            n += len(seen) > 0
        return n

    def with_psutil() -> int:
        n = 0
        for p in psutil.process_iter(["name", "uids"]):
            try:
                seen = (p.info["name"], p.info["uids"], proc.stat(p.pid, "fd").st_size)
            except FdscopeError:
                continue
            n += len(seen) > 0
        return n

    out: dict[str, list[float]] = {"direct": [], "psutil": []}
    for _ in range(7):
        for name, f in (("direct", direct), ("psutil", with_psutil)):
            t = time.perf_counter()
            f()
            out[name].append((time.perf_counter() - t) * 1000)
    return {k: round(statistics.median(v), 1) for k, v in out.items()}


def live_cpu(fdscope: str, seconds: float, interval: float = 2.0) -> dict[str, float]:
    """CPU of `fdscope top` redrawing in a pty, from its utime+stime, after its first scan."""
    pid, master = pty.fork()
    if pid == 0:
        os.environ["NO_COLOR"] = "1"
        os.execv(fdscope, [fdscope, "top", "--interval", str(interval)])
    hz = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / hz

    frames = 0

    def drain(until: float, want_frames: int | None = None) -> None:
        nonlocal frames
        while time.monotonic() < until and (want_frames is None or frames < want_frames):
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    frames += os.read(master, 1 << 16).count(b"\x1b[H")
                except OSError:
                    return

    # startup, the first (full) scan and one refresh: the window starts at a refresh
    drain(time.monotonic() + 120, want_frames=2)
    c0, t0 = cpu(), time.monotonic()
    drain(t0 + seconds)
    c1, t1 = cpu(), time.monotonic()
    os.write(master, b"q")
    drain(time.monotonic() + 1)
    os.waitpid(pid, 0)
    os.close(master)
    return {"window_s": round(t1 - t0, 1), "cpu_s": round(c1 - c0, 3),
            "percent_of_core": round(100 * (c1 - c0) / (t1 - t0), 2),
            "first_scan_and_start_cpu_s": round(c0, 3)}


def solve(points: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """a, b, c of ms = a + b * processes + c * fds, least squares over the points (the normal
    equations, solved by Cramer's rule)."""
    n = len(points)
    sp = sum(p for p, _, _ in points)
    sf = sum(f for _, f, _ in points)
    spp = sum(p * p for p, _, _ in points)
    sff = sum(f * f for _, f, _ in points)
    spf = sum(p * f for p, f, _ in points)
    sm = sum(m for _, _, m in points)
    spm = sum(p * m for p, _, m in points)
    sfm = sum(f * m for _, f, m in points)
    a_ = ((n, sp, sf), (sp, spp, spf), (sf, spf, sff))
    rhs = (sm, spm, sfm)

    def det(m: tuple[tuple[float, ...], ...]) -> float:
        return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
                - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))

    d = det(a_)
    if d == 0:
        raise ValueError("sizes do not separate processes from fds")
    out = []
    for col in range(3):
        m = tuple(tuple(rhs[r] if c == col else a_[r][c] for c in range(3)) for r in range(3))
        out.append(det(m) / d)
    return out[0], out[1], out[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--live", type=float, default=62.0, help="live window in seconds (0: skip)")
    ap.add_argument("--fdscope", default=None, help="time this executable instead of a copy")
    ap.add_argument("--json", dest="out", default=None, help="write the figures here")
    ap.add_argument("--size", dest="only", type=int, action="append", choices=(1, 2, 3),
                    help="run only these sizes (1-3; the model needs all three)")
    args = ap.parse_args()
    lsfd, lsof = shutil.which("lsfd"), shutil.which("lsof")
    if lsfd is None:
        print("lsfd (util-linux) is needed", file=sys.stderr)
        return 2
    results: dict = {"sizes": [], "kernel": os.uname().release, "cpus": os.cpu_count()}
    points: list[tuple[float, float, float]] = []  # (processes, fds, scan ms) per round
    walls: list[tuple[float, float, float]] = []  # (processes, fds, fdscope wall ms)
    cpu_pts: list[tuple[float, float, float]] = []  # (processes, fds, fdscope CPU ms)
    with tempfile.TemporaryDirectory() as tmp:
        fdscope = args.fdscope or install_copy(tmp)
        sizes = [SIZES[i - 1] for i in sorted(set(args.only))] if args.only else list(SIZES)
        for size in sizes:
            farm = Farm(*size, tmp)
            try:
                load0 = os.getloadavg()[0]
                procs, fds, _ = host_size(fdscope)
                cmds = {"fdscope": [fdscope, "top", "--once", "--json"],
                        "lsfd": [lsfd, "--summary=only"]}
                if lsof:
                    cmds["lsof"] = [lsof, "-n", "-P"]
                times: dict[str, list[float]] = {k: [] for k in cmds}
                cpus: dict[str, list[float]] = {k: [] for k in cmds}
                scans = []
                for _ in range(args.rounds):
                    for name, cmd in cmds.items():
                        wall, cpu = timed_cpu(cmd)
                        times[name].append(wall)
                        cpus[name].append(cpu)
                    p, f, ms = host_size(fdscope)
                    scans.append(ms)
                    points.append((p, f, ms))
                    walls.append((p, f, times["fdscope"][-1] * 1000))
                    cpu_pts.append((p, f, cpus["fdscope"][-1] * 1000))
                med = {k: statistics.median(v) for k, v in times.items()}
                row = {"size": size, "processes": procs, "fds": fds,
                       "farm": {"processes": size[0] + size[2],
                                "fds": size[0] * size[1] + size[2] * size[3]},
                       "median_s": {k: round(v, 3) for k, v in med.items()},
                       "median_cpu_s": {k: round(statistics.median(v), 3)
                                        for k, v in cpus.items()},
                       "scan_ms": round(statistics.median(scans), 1),
                       "ratio_vs_lsfd": round(med["fdscope"] / med["lsfd"], 3),
                       "loadavg": [round(load0, 2), round(os.getloadavg()[0], 2)]}
                if "lsof" in med:
                    row["ratio_vs_lsof"] = round(med["fdscope"] / med["lsof"], 3)
                results["sizes"].append(row)
                print(json.dumps(row), flush=True)
                if size is SIZES[-1]:
                    results["enumeration_ms"] = enumeration()
                    print("enumeration", json.dumps(results["enumeration_ms"]), flush=True)
                    if args.live:
                        results["live"] = live_cpu(fdscope, args.live)
                        results["live"]["host"] = list(host_size(fdscope)[:2])
                        print("live", json.dumps(results["live"]), flush=True)
            finally:
                farm.close()
    if len(results["sizes"]) < 3:
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=2)
        return 0
    a, b, c = solve(points)
    wa, wb, wc = solve(walls)
    ca, cb, cc = solve(cpu_pts)
    results["model_cpu_ms"] = {"a": round(ca, 2), "per_process_us": round(cb * 1000, 2),
                               "per_fd_us": round(cc * 1000, 3),
                               "predict_10k_5M_s": round((ca + cb * 1e4 + cc * 5e6) / 1000, 2)}
    results["model_scan_ms"] = {"a": round(a, 2), "per_process_us": round(b * 1000, 2),
                                "per_fd_us": round(c * 1000, 3),
                                "predict_10k_5M_s": round((a + b * 1e4 + c * 5e6) / 1000, 2)}
    results["model_wall_ms"] = {"a": round(wa, 2), "per_process_us": round(wb * 1000, 2),
                                "per_fd_us": round(wc * 1000, 3),
                                "predict_10k_5M_s": round((wa + wb * 1e4 + wc * 5e6) / 1000, 2)}
    print("model", json.dumps({"scan": results["model_scan_ms"],
                               "wall": results["model_wall_ms"],
                               "cpu": results["model_cpu_ms"]}))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
