#!/usr/bin/env python3
"""Benchmark: the cost of one `fdscope exporter` scrape on a busy host, at three sizes, against
process-exporter (the peer that exports fd counts per process group) when installed.

The busy host is bench_top's farm (scripts/bench_top.py: N processes with a mix of sockets,
pipes, files, eventfds and an epoll set each, a few with 8,000 fds). Per size three exporters
run side by side and are scraped alternately over HTTP, --rounds times, --gap seconds apart:
- fdscope (default): fd tables reused while their count is unchanged (re-read at the latest
  after 300 s or 20 scrape intervals);
- fdscope --full-every 0: every fd table read on every scrape;
- process-exporter -gather-smaps=false -threads=false, every process in a group by its name
  (its fd figures only: open_filedesc, worst_fd_ratio), when installed
  (Debian: prometheus-process-exporter).
For each: the client's wall time per scrape (median) and the exporter's CPU per scrape (utime +
stime from /proc/PID/stat over all rounds / rounds), the series count; fdscope's own
fdscope_scrape_duration_seconds / fdscope_scrape_cpu_seconds (medians) and fd tables read.

Consecutive scrapes a second apart are reuse's best case. The steady state at a real scrape
interval is measured in-process: an FdCollector whose Scanner runs on a simulated clock,
scraped 24 times at 15, 30 and 60 s of simulated time on the largest size (mean, median and
max CPU per scrape, tables read per scrape). The worst case - every process's count changes
between scrapes - costs what --full-every 0 costs.

Budget (issue 14): <= 0.5 s wall and <= 0.3 s CPU per scrape at ~300 processes / ~90,000 fds.

Usage: .venv/bin/python scripts/bench_exporter.py [--rounds 7] [--gap 1] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_top import SIZES, Farm  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")
PEER_CONFIG = "process_names:\n  - name: '{{.Comm}}'\n    cmdline:\n      - '.+'\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


class Exporter:
    def __init__(self, name: str, argv: list[str], port: int) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.scrape()
                return
            except OSError:
                if self.p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start") from None
                time.sleep(0.2)

    def scrape(self) -> tuple[float, float, str]:
        """(wall s, exporter CPU s, body) of one GET."""
        c0 = cpu_of(self.p.pid)
        t0 = time.perf_counter()
        with urllib.request.urlopen(self.url, timeout=120) as r:
            body = r.read().decode()
        wall = time.perf_counter() - t0
        return wall, cpu_of(self.p.pid) - c0, body

    def close(self) -> None:
        self.p.terminate()
        self.p.wait(timeout=30)


def metric(body: str, name: str) -> float | None:
    m = re.search(rf"^{name} (\S+)$", body, re.M)
    return float(m.group(1)) if m else None


def series(body: str) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith("#"))


def exporters(tmp: str) -> list[Exporter]:
    out = []
    fd = [sys.executable, "-m", "fdscope", "exporter"]
    p = free_port()
    out.append(Exporter("fdscope", fd + ["--listen", f"127.0.0.1:{p}"], p))
    p = free_port()
    out.append(Exporter("fdscope --full-every 0",
                        fd + ["--listen", f"127.0.0.1:{p}", "--full-every", "0"], p))
    peer = shutil.which("prometheus-process-exporter") or shutil.which("process-exporter")
    if peer:
        conf = os.path.join(tmp, "process-exporter.yml")
        with open(conf, "w") as f:
            f.write(PEER_CONFIG)
        p = free_port()
        out.append(Exporter("process-exporter", [peer, "-config.path", conf,
                                                 "-web.listen-address", f"127.0.0.1:{p}",
                                                 "-gather-smaps=false", "-threads=false"], p))
    return out


def one_size(size: tuple[int, int, int, int], tmp: str, rounds: int, gap: float) -> dict:
    farm = Farm(*size, tmp)
    exps: list[Exporter] = []
    try:
        exps = exporters(tmp)
        per: dict[str, dict[str, list[float]]] = {e.name: {"wall": [], "cpu": [], "dur": [],
                                                          "scpu": [], "read": []} for e in exps}
        bodies: dict[str, str] = {}
        for e in exps:  # the first scrape reads every table: not counted
            e.scrape()
        for _ in range(rounds):
            for e in exps:
                time.sleep(gap)
                wall, cpu, body = e.scrape()
                d = per[e.name]
                d["wall"].append(wall)
                d["cpu"].append(cpu)
                bodies[e.name] = body
                for key, name in (("dur", "fdscope_scrape_duration_seconds"),
                                  ("scpu", "fdscope_scrape_cpu_seconds"),
                                  ("read", "fdscope_scrape_fd_tables_read")):
                    v = metric(body, name)
                    if v is not None:
                        d[key].append(v)
        body = bodies["fdscope"]
        row: dict = {"size": size, "processes": int(metric(body, "fdscope_host_processes") or 0),
                     "fds": int(metric(body, "fdscope_host_open_fds") or 0), "exporters": {}}
        for name, d in per.items():
            r = {"wall_median_s": round(statistics.median(d["wall"]), 3),
                 "cpu_mean_s": round(sum(d["cpu"]) / rounds, 3),
                 "series": series(bodies[name])}
            if d["dur"]:
                r["reported_duration_median_s"] = round(statistics.median(d["dur"]), 3)
                r["reported_cpu_median_s"] = round(statistics.median(d["scpu"]), 3)
                r["tables_read_median"] = statistics.median(d["read"])
            row["exporters"][name] = r
        return row
    finally:
        for e in exps:
            e.close()
        farm.close()


def simulated(size: tuple[int, int, int, int], tmp: str, scrapes: int = 24) -> dict:
    """CPU per scrape of an in-process FdCollector whose Scanner's clock advances by the scrape
    interval between scrapes (the farm does not change meanwhile)."""
    from fdscope.exporter.collector import FdCollector

    farm = Farm(*size, tmp)
    out = {}
    try:
        for every in (15.0, 30.0, 60.0):
            c = FdCollector()
            clock = [0.0]
            c.scanner.clock = lambda clock=clock: clock[0]
            c.exposition()
            cpu, wall, read = [], [], []
            for _ in range(scrapes):
                clock[0] += every
                t0, c0 = time.perf_counter(), time.process_time()
                body = c.exposition().decode()
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                read.append(metric(body, "fdscope_scrape_fd_tables_read") or 0)
            out[f"every_{every:g}s"] = {
                "processes": int(metric(body, "fdscope_host_processes") or 0),
                "fds": int(metric(body, "fdscope_host_open_fds") or 0),
                "full_every_s": c.scanner.full_every,
                "cpu_mean_s": round(statistics.mean(cpu), 3),
                "cpu_median_s": round(statistics.median(cpu), 3),
                "cpu_max_s": round(max(cpu), 3),
                "wall_median_s": round(statistics.median(wall), 3),
                "wall_max_s": round(max(wall), 3),
                "tables_read_mean": round(statistics.mean(read), 1),
            }
            print("simulated", f"{every:g}s", json.dumps(out[f"every_{every:g}s"]), flush=True)
    finally:
        farm.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--gap", type=float, default=1.0, help="seconds between scrapes")
    ap.add_argument("--json", dest="out", default=None, help="write the figures here")
    ap.add_argument("--simulated-only", action="store_true")
    args = ap.parse_args()
    results: dict = {"kernel": os.uname().release, "cpus": os.cpu_count(), "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES if not args.simulated_only else ():
            row = one_size(size, tmp, args.rounds, args.gap)
            results["sizes"].append(row)
            print(json.dumps(row), flush=True)
        results["simulated"] = simulated(SIZES[-1], tmp)
    # Linearity: CPU per 1,000 fds of the host (the farm and whatever else runs there) at each
    # size; the host's own counts are in each row.
    for r in results["sizes"]:
        r["cpu_ms_per_1000_fds"] = {name: round(e["cpu_mean_s"] * 1e6 / max(1, r["fds"]), 2)
                                    for name, e in r["exporters"].items()}
        print("per 1000 fds", r["processes"], r["fds"], json.dumps(r["cpu_ms_per_1000_fds"]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
