"""Text for `fdscope bench scaling` and `fdscope bench register` (fdscope.bench/1 documents)."""

from __future__ import annotations

from typing import Any

from fdscope.render.table import section, table


def _us(summary: dict[str, Any] | None, key: str) -> str:
    if not summary:
        return "-"
    v = summary[key]
    return f"{v:.1f}" if v >= 100 else f"{v:.2f}"


def _signed(v: float) -> str:
    return f"{v:+.2f}" if abs(v) < 100 else f"{v:+.0f}"


def _header(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    load = " ".join(f"{x:g}" for x in m["loadavg"])
    return (f"kernel {m['kernel']} ({m['machine']}), Python {m['python']}, {m['cpus']} CPUs, "
            f"loadavg {load} at start; {doc['elapsed_s']:g} s")


def growth_line(name: str, g: dict[str, Any] | None, per: str = "idle fds") -> str:
    """"poll: +12.3 µs per 1,000 idle fds (±0.8, r² 0.998, grows)"."""
    if g is None:
        return f"{name}: no fit (fewer than two sizes measured)"
    ci = g["ci95_us_per_1000_idle"]
    r2 = g["r2"]
    quality = ", ".join(x for x in (
        None if ci is None else f"±{ci:.2f} at 95%",
        None if r2 is None else f"r² {r2:.3f}",
        g["verdict"]) if x)
    return f"{name}: {_signed(g['us_per_1000_idle'])} µs per 1,000 {per} ({quality})"


def _growth_rows(growths: dict[str, Any], names: list[str]) -> list[tuple[str, ...]]:
    rows = []
    for name in names:
        g = growths.get(name)
        if g is None:
            rows.append((name, "-", "-", "-", "-", "-"))
            continue
        ci = g["ci95_us_per_1000_idle"]
        steps = ", ".join(f"{s['from']}→{s['to']}: {_signed(s['delta_us'])}"
                          for s in g["steps"])
        rows.append((name, _signed(g["us_per_1000_idle"]),
                     "-" if ci is None else f"{ci:.2f}",
                     "-" if g["r2"] is None else f"{g['r2']:.3f}", g["verdict"], steps))
    return rows


def render_scaling(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    rows = []
    for r in doc["rows"]:
        if r["status"] != "measured":
            rows.append((r["mechanism"], r["idle_fds"], "-", "-", "-", "-", "-",
                         f"{r['status']}: {r['reason']}"))
            continue
        rows.append((r["mechanism"], r["idle_fds"], r["events"], _us(r["event_us"], "median"),
                     _us(r["event_us"], "p99"), _us(r["wait_us"], "median"),
                     _us(r["wait_us"], "p99"), "" if r["wait_us"] else "wait inside the loop"))
    names = [m["name"] for m in doc["mechanisms"]]
    parts = [
        f"bench scaling: {cfg['active']} active socketpair(s) passing a token, idle "
        f"{cfg['idle_kind']} sockets, active fds {cfg['active_fds']}; {_header(doc)}\n",
        section("cost per delivered event (µs)", table(rows, (
            "mechanism", "idle fds", "events", "event p50", "event p99", "wait p50",
            "wait p99", "note"))),
        section("growth of the event cost (least squares of the p50 against idle fds)",
                table(_growth_rows(doc["growth"], names), (
                    "mechanism", "µs per 1,000 idle", "±95%", "r²", "verdict",
                    "change between sizes (µs)"))),
        "\n".join(growth_line(n, doc["growth"].get(n)) for n in names if n in doc["growth"])
        + "\n",
    ]
    if doc["problems"]:
        parts.append("problems:\n" + "".join(f"  - {p}\n" for p in doc["problems"]))
    return "\n".join(parts)


def _bytes(v: int | None) -> str:
    return "-" if v is None else str(v)


def render_register(doc: dict[str, Any]) -> str:
    rows = []
    for r in doc["rows"]:
        if r["status"] != "measured":
            rows.append((r["mechanism"], r["fds"], "-", "-", "-", "-", "-", "-", "-",
                         f"{r['status']}: {r['reason']}"))
            continue
        setup = "-" if r["setup_us"] is None else f"{r['setup_us']:.1f}"
        rows.append((r["mechanism"], r["fds"], setup, r["setup_syscalls"], _bytes(r["bytes_once"]),
                     _bytes(r["bytes_in_per_call"]), _bytes(r["bytes_out_per_call"]),
                     _us(r["call_us"], "median"), _us(r["call_us"], "p99"), ""))
    even = [(b["fds"], f"{b['epoll_setup_us']:.1f}", f"{b['poll_extra_us_per_call']:.2f}",
             "-" if b["calls"] is None else f"{b['calls']:.1f}") for b in doc["breakeven"]]
    names = [n for n in ("epoll", "poll", "poll (copy only)", "select") if n in doc["growth"]]
    parts = [
        f"bench register: N idle unix sockets, every call with timeout 0 (nothing ready); "
        f"{_header(doc)}\n",
        section("registering once against passing the set on every call", table(rows, (
            "mechanism", "fds", "setup µs", "setup syscalls", "bytes once", "bytes in/call",
            "bytes out/call", "call p50 µs", "call p99 µs", "note"))),
        section("when epoll's registration has paid for itself", table(even, (
            "fds", "epoll_ctl × N µs", "poll's extra µs per call", "calls to break even"))),
        "\n".join(growth_line(n, doc["growth"][n], "fds") for n in names) + "\n",
    ]
    if doc["problems"]:
        parts.append("problems:\n" + "".join(f"  - {p}\n" for p in doc["problems"]))
    return "\n".join(parts)
