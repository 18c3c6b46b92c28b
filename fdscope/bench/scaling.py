"""`fdscope bench scaling`: cost per delivered event against the number of idle fds watched,
for every mechanism, and the fitted growth per 1,000 idle fds (document fdscope.bench/1)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fdscope.bench.fit import growth
from fdscope.bench.harness import (
    Budget,
    FdLimitTooLow,
    fds_needed,
    nofile_at_least,
    open_fds,
    quiet_gc,
    summarize_ns,
)
from fdscope.bench.mechanisms import MECHANISMS, Mechanism

SCHEMA = "fdscope.bench/1"
DEFAULT_IDLE = (1, 10, 100, 1000, 10000)
QUICK_IDLE = (1, 100, 2000)


@dataclass(frozen=True)
class ScalingConfig:
    """What `fdscope bench scaling` measures and for how long."""

    idle: tuple[int, ...] = DEFAULT_IDLE
    active: int = 1
    mechanisms: tuple[str, ...] = tuple(MECHANISMS)
    seconds: float = 0.8
    min_events: int = 150
    max_events: int = 200_000
    kind: str = "unix"
    active_high: bool = True
    quick: bool = False

    @property
    def budget(self) -> Budget:
        return Budget(self.seconds, self.min_events, self.max_events,
                      warmup=max(5, min(50, self.min_events // 5)))


def quick_config(**overrides: Any) -> ScalingConfig:
    """The --quick run: three sizes (one above FD_SETSIZE), a short budget per cell."""
    base: dict[str, Any] = {"idle": QUICK_IDLE, "seconds": 0.05, "min_events": 30, "quick": True}
    base.update(overrides)
    return ScalingConfig(**base)


def machine_facts() -> dict[str, Any]:
    """What a reader needs to weigh the figures: kernel, Python, CPUs, load at the time."""
    return {
        "kernel": os.uname().release,
        "machine": os.uname().machine,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass
class _Run:
    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rlimit_raised_to: int | None = None


def _row(mech: type[Mechanism], idle: int, status: str, reason: str | None = None,
         **measured: Any) -> dict[str, Any]:
    return {"mechanism": mech.name, "idle_fds": idle, "status": status, "reason": reason,
            "watched_fds": measured.get("watched_fds"), "max_fd": measured.get("max_fd"),
            "events": measured.get("events", 0), "event_us": measured.get("event_us"),
            "wait_us": measured.get("wait_us"), "seconds": measured.get("seconds")}


def run_scaling(cfg: ScalingConfig, progress: Callable[[int], None] | None = None
                ) -> dict[str, Any]:
    """Measure every mechanism at every idle size; the fdscope.bench/1 scaling document."""
    t_start = time.monotonic()
    machine = machine_facts()
    mechs = [MECHANISMS[name] for name in cfg.mechanisms]
    missing = {m.name: m.unavailable() for m in mechs}
    run = _Run()
    budget = cfg.budget
    for idle in sorted(set(cfg.idle)):
        todo = [m for m in mechs if not missing[m.name]]
        for m in mechs:
            if missing[m.name]:
                run.rows.append(_row(m, idle, "unavailable", missing[m.name]))
        try:
            _measure_size(cfg, idle, todo, budget, run, progress)
        except FdLimitTooLow as err:
            done = {r["mechanism"] for r in run.rows if r["idle_fds"] == idle}
            for m in todo:
                if m.name not in done:
                    run.rows.append(_row(m, idle, "refused", str(err)))
                    if progress:
                        progress(1)
            run.problems.append(f"{idle} idle fds: {err}")
        if progress:
            progress(len(mechs) - len(todo))
    order = {name: i for i, name in enumerate(cfg.mechanisms)}
    run.rows.sort(key=lambda r: (order[r["mechanism"]], r["idle_fds"]))
    return {
        "schema": SCHEMA,
        "benchmark": "scaling",
        "machine": {**machine, "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "config": {
            "idle": sorted(set(cfg.idle)), "active": cfg.active, "idle_kind": cfg.kind,
            "active_fds": "high" if cfg.active_high else "low", "seconds_per_cell": cfg.seconds,
            "min_events": cfg.min_events, "max_events": cfg.max_events, "quick": cfg.quick,
        },
        "mechanisms": [{"name": m.name, "calls": m.calls, "unavailable": missing[m.name]}
                       for m in mechs],
        "rlimit_nofile_raised_to": run.rlimit_raised_to,
        "rows": run.rows,
        "growth": _growths(run.rows, "event_us"),
        "wait_growth": _growths(run.rows, "wait_us"),
        "elapsed_s": round(time.monotonic() - t_start, 2),
        "problems": run.problems,
        "ok": not run.problems,
    }


def _measure_size(cfg: ScalingConfig, idle: int, mechs: Sequence[type[Mechanism]],
                  budget: Budget, run: _Run, progress: Callable[[int], None] | None) -> None:
    with nofile_at_least(fds_needed(idle, cfg.active)) as raised:
        if raised:
            run.rlimit_raised_to = max(run.rlimit_raised_to or 0, raised["to"])
        fds = open_fds(idle, cfg.active, cfg.kind, cfg.active_high)
        try:
            facts = {"watched_fds": len(fds.watched), "max_fd": fds.max_fd}
            for m in mechs:
                mech = m()
                reason = mech.refusal(fds)
                if reason:
                    run.rows.append(_row(m, idle, "refused", reason, **facts))
                else:
                    t0 = time.monotonic()
                    with quiet_gc():
                        events, waits = mech.measure(fds, budget)
                    ev = summarize_ns(events, budget.warmup)
                    wt = summarize_ns(waits, budget.warmup) if waits is not None else None
                    run.rows.append(_row(
                        m, idle, "measured", events=len(events),
                        event_us=ev.to_json() if ev else None,
                        wait_us=wt.to_json() if wt else None,
                        seconds=round(time.monotonic() - t0, 3), **facts))
                if progress:
                    progress(1)
        finally:
            fds.close()


def _growths(rows: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """Per mechanism: the least-squares growth of the median `key` against idle fds."""
    out: dict[str, Any] = {}
    by_mech: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r["status"] == "measured" and r[key] is not None:
            by_mech.setdefault(r["mechanism"], []).append((r["idle_fds"], r[key]["median"]))
    for name, pts in by_mech.items():
        g = growth([p[0] for p in pts], [p[1] for p in pts])
        out[name] = None if g is None else {
            **g.to_json(), "from_idle": min(p[0] for p in pts), "to_idle": max(p[0] for p in pts)}
    return out
