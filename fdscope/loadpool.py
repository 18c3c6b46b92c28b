"""`fdscope load --processes P`: the verifying load client spread over P processes, so that the
client is not the bottleneck it measures; and the client's own CPU, so a reader can tell.

Connections are split as evenly as possible (the first N mod P processes take one more); each
process runs fdscope.load.LoadRun on its share, with its own epoll loop, payloads and
verification, and reports its counters, its latencies and its CPU time. The parent adds the
counters up into one LoadRun and lets that build the document, so the totals, percentiles and
verdict are computed exactly as for one process. P = 1 runs in this process.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
from collections.abc import Callable
from typing import Any

from fdscope.errors import UsageError
from fdscope.load import MAX_FAILURE_DETAILS, LoadConfig, LoadRun

# LoadRun attributes that are not totals: configuration, local machinery, per-process facts.
# Every other int or {kind: int} attribute is a counter and is summed over the processes.
_NOT_COUNTERS = frozenset({"cfg", "progress", "stop", "rng", "pool", "upper", "start",
                           "deadline", "elapsed", "rlimit", "failures", "latencies"})
# A client that used this fraction of the cores it could use was the limit of its run.
SATURATED = 0.9


def shares(connections: int, processes: int) -> list[tuple[int, int]]:
    """(first connection index, count) per process; counts differ by at most one."""
    base, extra = divmod(connections, processes)
    out, first = [], 0
    for i in range(processes):
        n = base + (1 if i < extra else 0)
        out.append((first, n))
        first += n
    return out


def _cpu_now(who: int) -> tuple[float, float]:
    ru = resource.getrusage(who)
    return ru.ru_utime, ru.ru_stime


def _state(run: LoadRun) -> dict[str, Any]:
    """What the parent needs of a finished run: counters, failures, latencies, timing."""
    out = {k: v for k, v in vars(run).items() if k not in _NOT_COUNTERS}
    out.update(failures=run.failures, latencies=run.latencies, start=run.start,
               elapsed=run.elapsed, rlimit=run.rlimit)
    return out


def _child(cfg: LoadConfig, conn: multiprocessing.connection.Connection,
           counter: Any) -> None:
    # Ctrl-C reaches the whole process group; the parent handles it and terminates us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    progress = None
    if counter is not None:
        def progress(n: int) -> None:
            with counter.get_lock():
                counter.value += n
    run = LoadRun(cfg, progress)
    run.run()
    user, system = _cpu_now(resource.RUSAGE_SELF)
    conn.send({"state": _state(run), "cpu": [user, system], "pid": os.getpid()})
    conn.close()


def _part_config(cfg: LoadConfig, index: int, count: int) -> LoadConfig:
    seed = None if cfg.seed is None else cfg.seed * 1000 + index
    return dataclasses.replace(cfg, connections=count, seed=seed)


def run_load_processes(cfg: LoadConfig, processes: int = 1,
                       progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run the load over `processes` processes; the fdscope.load/1 document with the fields
    `processes`, `client_cpu` and `per_process` added."""
    if processes < 1:
        raise UsageError("--processes must be at least 1")
    if processes > cfg.connections:
        raise UsageError(f"--processes {processes} is more than --connections "
                         f"{cfg.connections}: every process needs a connection")
    if processes == 1:
        run = LoadRun(cfg, progress)
        u0, s0 = _cpu_now(resource.RUSAGE_THREAD)
        doc = run.run()
        u1, s1 = _cpu_now(resource.RUSAGE_THREAD)
        part = {"pid": os.getpid(), "first_connection": 0, "connections": cfg.connections,
                "messages_ok": doc["messages_ok"], "bytes_verified": doc["bytes_verified"],
                "cpu_s": round(u1 - u0 + s1 - s0, 3), "error": None}
        return _finish(doc, 1, u1 - u0, s1 - s0, [part])
    return _run_many(cfg, processes, progress)


def _run_many(cfg: LoadConfig, processes: int,
              progress: Callable[[int], None] | None) -> dict[str, Any]:
    # fork: the children need nothing but this module's state, and start in milliseconds.
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0) if progress is not None else None
    parts = shares(cfg.connections, processes)
    procs, pipes = [], []
    try:
        for i, (_, count) in enumerate(parts):
            reader, writer = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_child, args=(_part_config(cfg, i, count), writer, counter),
                            name=f"fdscope-load-{i}", daemon=True)
            p.start()
            writer.close()
            procs.append(p)
            pipes.append(reader)
        results: dict[int, dict[str, Any] | None] = {}
        reported = 0
        while len(results) < processes:
            ready = multiprocessing.connection.wait(
                [r for i, r in enumerate(pipes) if i not in results], timeout=0.1)
            for r in ready:
                i = pipes.index(r)  # type: ignore[arg-type]
                try:
                    results[i] = r.recv()  # type: ignore[union-attr]
                except EOFError:
                    results[i] = None
            if counter is not None and progress is not None:
                now = counter.value
                if now != reported:
                    progress(now - reported)
                    reported = now
        for p in procs:
            p.join(timeout=10)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        for r in pipes:
            r.close()
    return _merge(cfg, parts, procs, [results[i] for i in range(processes)])


def _merge(cfg: LoadConfig, parts: list[tuple[int, int]], procs: list[Any],
           results: list[dict[str, Any] | None]) -> dict[str, Any]:
    total = LoadRun(cfg)
    total.latencies = []
    starts, ends = [], []
    user = system = 0.0
    per_process = []
    for (first, count), proc, res in zip(parts, procs, results, strict=True):
        entry: dict[str, Any] = {"pid": proc.pid, "first_connection": first,
                                 "connections": count}
        if res is None:
            code = proc.exitcode
            entry.update(messages_ok=0, bytes_verified=0, cpu_s=None,
                         error=f"exited with code {code} before reporting")
            total.errors["load process died"] = total.errors.get("load process died", 0) + 1
            per_process.append(entry)
            continue
        st = res["state"]
        for key, value in st.items():
            if key in _NOT_COUNTERS:
                continue
            if isinstance(value, bool) or not isinstance(value, int | dict):
                continue
            if isinstance(value, int):
                setattr(total, key, getattr(total, key, 0) + value)
            else:
                merged = getattr(total, key)
                for k, v in value.items():
                    merged[k] = merged.get(k, 0) + v
        for f in st["failures"]:
            if len(total.failures) < MAX_FAILURE_DETAILS:
                total.failures.append({**f, "connection": f["connection"] + first})
        total.latencies.extend(st["latencies"])
        if total.rlimit is None:
            total.rlimit = st["rlimit"]
        starts.append(st["start"])
        ends.append(st["start"] + st["elapsed"])
        u, s = res["cpu"]
        user += u
        system += s
        entry.update(messages_ok=len(st["latencies"]),
                     bytes_verified=st.get("bytes_verified"), cpu_s=round(u + s, 3), error=None)
        per_process.append(entry)
    # perf_counter is CLOCK_MONOTONIC on Linux, one clock for every process.
    total.elapsed = (max(ends) - min(starts)) if starts else 0.0
    doc = total.result()
    return _finish(doc, len(parts), user, system, per_process)


def _finish(doc: dict[str, Any], processes: int, user: float, system: float,
            per_process: list[dict[str, Any]]) -> dict[str, Any]:
    duration = max(doc["duration_s"], 1e-9)
    cpu = user + system
    capacity = min(processes, os.cpu_count() or 1)
    doc["processes"] = processes
    doc["client_cpu"] = {
        "user_s": round(user, 3),
        "system_s": round(system, 3),
        "percent": round(cpu / duration * 100, 1),
        "cores_usable": capacity,
        "saturated": cpu / duration >= SATURATED * capacity,
    }
    doc["per_process"] = per_process
    return doc

