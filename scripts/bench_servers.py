#!/usr/bin/env python3
"""Benchmark every reference server model with fdscope's verifying load client.

For each model and each connection count (1, 10, 100, 1000) a fresh server child runs under
`--duration` seconds of load (messages of --size bytes, one in flight per connection); reported:
messages/s, p99 latency, the server's CPU seconds (utime+stime, psutil reads
/proc/PID/stat) per 10k messages, the server's and the client's CPU as % of one core, and what
limited the figure: `server` (the server process used >= 90% of a core: the figure is the
server's), `client` (the load client used >= 90% of the cores its processes could use: the
figure is the client's limit, not the server's), `machine` (all CPUs >= 90% busy, whoever
used them: on a shared machine other tenants count), or `-` (neither: one message in flight per connection, so the round
trip sets the pace). `--processes P` runs the client in P processes. Then, per model, the server's CPU% over --idle seconds while
100 connected clients say nothing. Cells that make no sense are skipped with the reason:
`blocking` serves one client at a time (1 connection only: at 10 the others just wait in the
backlog and the figure would measure queueing, not the model), `select` cannot watch fds
>= FD_SETSIZE (1000 connections still fit below 1024).

Usage: .venv/bin/python scripts/bench_servers.py [--duration 2] [--models epoll,asyncio]
       [--connections 1,10,100,1000] [--processes 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
from tabulate import tabulate  # noqa: E402

from fdscope.load import LoadConfig, parse_size  # noqa: E402
from fdscope.loadpool import SATURATED, run_load_processes  # noqa: E402
from fdscope.servers import MODELS  # noqa: E402

CONNECTIONS = (1, 10, 100, 1000)
IDLE_CLIENTS = 100


def skip_reason(model: str, conns: int) -> str | None:
    if model == "blocking" and conns > 1:
        return "serves one client at a time"
    if model == "io_uring":
        from fdscope.uring import available

        reason = available()
        if reason is not None:
            return f"io_uring unavailable: {reason}"
    return None


class Server:
    def __init__(self, model: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fdscope", "serve", model, "--json", "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        ev = json.loads(self.proc.stdout.readline())
        self.port = ev["port"]
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def stop(self) -> int | None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        return self.proc.returncode


def limits(server_pct: float, client: dict[str, Any], machine_pct: float) -> list[str]:
    """What bounded a cell: the server's core, the client's cores, or the whole machine (all
    CPUs busy, whoever used them: other tenants count too)."""
    out = []
    if server_pct >= SATURATED * 100:
        out.append("server")
    if client["saturated"]:
        out.append("client")
    if not out and machine_pct >= SATURATED * 100:
        out.append("machine")
    return out


def cell(model: str, conns: int, duration: float, size: tuple[int, int],
         processes: int) -> dict[str, Any]:
    srv = Server(model)
    try:
        cpu0 = srv.cpu()
        psutil.cpu_percent(None)  # starts the machine-wide busy figure
        doc = run_load_processes(LoadConfig(host="127.0.0.1", port=srv.port, connections=conns,
                                            messages=None, size_min=size[0], size_max=size[1],
                                            duration=duration, stall_timeout=10),
                                 min(processes, conns))
        cpu = srv.cpu() - cpu0
        machine_pct = psutil.cpu_percent(None)
    finally:
        rc = srv.stop()
    msgs = doc["messages_ok"]
    server_pct = cpu / max(doc["duration_s"], 1e-9) * 100
    return {
        "model": model, "connections": conns, "msgs_per_s": doc["msgs_per_s"],
        "p99_ms": doc["latency_ms"]["p99"], "cpu_s_per_10k": cpu / msgs * 10_000 if msgs else None,
        "server_cpu_percent": round(server_pct, 1), "client_processes": doc["processes"],
        "client_cpu_percent": doc["client_cpu"]["percent"],
        "machine_cpu_percent": machine_pct,
        "limited_by": limits(server_pct, doc["client_cpu"], machine_pct),
        "ok": doc["ok"] and rc == 0, "verdict": doc["verdict"],
    }


def idle_cpu(model: str, window: float) -> float:
    srv = Server(model)
    clients = []
    try:
        for _ in range(IDLE_CLIENTS):
            clients.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        time.sleep(0.3)
        cpu0, t0 = srv.cpu(), time.monotonic()
        time.sleep(window)
        return (srv.cpu() - cpu0) / (time.monotonic() - t0) * 100
    finally:
        for c in clients:
            c.close()
        srv.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=2.0, help="seconds of load per cell")
    ap.add_argument("--idle", type=float, default=2.0, help="seconds of idle CPU sampling")
    ap.add_argument("--size", default="64-1024", help="message size range")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--connections", default=",".join(map(str, CONNECTIONS)))
    ap.add_argument("--processes", type=int, default=1,
                    help="load client processes (fdscope load --processes)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    models = args.models.split(",")
    counts = [int(c) for c in args.connections.split(",")]
    size = parse_size(args.size)
    rows: list[dict[str, Any]] = []
    idle: dict[str, float] = {}
    t_start = time.monotonic()
    for model in models:
        for conns in counts:
            reason = skip_reason(model, conns)
            if reason:
                rows.append({"model": model, "connections": conns, "skipped": reason})
                continue
            rows.append(cell(model, conns, args.duration, size, args.processes))
            r = rows[-1]
            print(f"  {model:14} {conns:5}: {r['msgs_per_s']:>9.0f} msgs/s, server "
                  f"{r['server_cpu_percent']:.0f}%, client {r['client_cpu_percent']:.0f}%",
                  file=sys.stderr)
        idle[model] = idle_cpu(model, args.idle)
    elapsed = time.monotonic() - t_start
    if args.json:
        print(json.dumps({"schema": "fdscope.bench_servers/1", "rows": rows, "idle_cpu_percent": idle,
                          "duration_per_cell_s": args.duration, "size": size,
                          "client_processes": args.processes, "cpus": psutil.cpu_count(),
                          "loadavg": os.getloadavg(), "elapsed_s": elapsed}, indent=2))
        return 0
    table = []
    for r in rows:
        first = r is next(x for x in rows if x["model"] == r["model"])
        idle_txt = f"{idle[r['model']]:.1f}" if first else ""
        if "skipped" in r:
            table.append((r["model"], r["connections"], "-", "-", "-", "-", "-", "-", idle_txt,
                          f"skipped: {r['skipped']}"))
            continue
        table.append((r["model"], r["connections"], f"{r['msgs_per_s']:.0f}",
                      f"{r['p99_ms']:.2f}" if r["p99_ms"] is not None else "-",
                      f"{r['cpu_s_per_10k']:.3f}" if r["cpu_s_per_10k"] is not None else "-",
                      f"{r['server_cpu_percent']:.0f}", f"{r['client_cpu_percent']:.0f}",
                      "+".join(r["limited_by"]) or "-",
                      idle_txt, "ok" if r["ok"] else f"FAILED: {r['verdict']}"))
    print(tabulate(table, headers=("model", "conns", "msgs/s", "p99 ms", "CPU s/10k msgs",
                                   "server CPU %", "client CPU %", "limited by",
                                   f"idle CPU % ({IDLE_CLIENTS} clients)", "verified"),
                   tablefmt="github", disable_numparse=True))
    rate = {(r["model"], r["connections"]): r.get("msgs_per_s") for r in rows}
    by_cell = {(r["model"], r["connections"]): r for r in rows if "skipped" not in r}
    print()
    for model in ("epoll", "epoll-et"):
        for conns in (100, 1000):
            mine, ref = rate.get((model, conns)), rate.get(("asyncio", conns))
            if mine and ref:
                verdict = "meets" if mine >= ref else "MISSES"
                print(f"target {model} >= asyncio at {conns} connections: {verdict} "
                      f"({mine:.0f} vs {ref:.0f} msgs/s, {mine / ref:.2f}x)")
    for model in ("epoll", "epoll-et"):
        for conns in counts:
            mine, ref = by_cell.get((model, conns)), by_cell.get(("asyncio-uvloop", conns))
            if not (mine and ref and mine["msgs_per_s"] and ref["msgs_per_s"]
                    and mine["cpu_s_per_10k"] and ref["cpu_s_per_10k"]):
                continue
            bound = sorted({f"{m} {'+'.join(c['limited_by'])}" for m, c in
                            ((model, mine), ("asyncio-uvloop", ref)) if "client" in c["limited_by"]
                            or "machine" in c["limited_by"]})
            print(f"{model} vs asyncio-uvloop at {conns} connections: "
                  f"{mine['msgs_per_s']:.0f} vs {ref['msgs_per_s']:.0f} msgs/s "
                  f"({mine['msgs_per_s'] / ref['msgs_per_s']:.2f}x); server CPU per 10k msgs "
                  f"{mine['cpu_s_per_10k']:.3f} vs {ref['cpu_s_per_10k']:.3f} s "
                  f"({mine['cpu_s_per_10k'] / ref['cpu_s_per_10k']:.2f}x)"
                  + (f"; throughput not the server's limit ({', '.join(bound)})" if bound else ""))
    print(f"\n{len(models)} models, {args.duration:g} s per cell, sizes {size[0]}-{size[1]} bytes, "
          f"{psutil.cpu_count()} CPUs, {args.processes} client process(es), loadavg "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end; total {elapsed:.0f} s")
    return 0 if all(r.get("ok", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
