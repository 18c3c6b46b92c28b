"""Text for `serve` events, the `load` result and the `run` report."""

from __future__ import annotations

from typing import Any

from fdscope.parse.net import format_inet
from fdscope.render.table import section, table


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else ('es' if word.endswith('s') else 's')}"


def render_event(event: str, fields: dict[str, Any]) -> str:
    """One line for a `serve` event (listening, stopped)."""
    if event == "listening":
        addr = format_inet(fields["host"], fields["port"])
        extra = ""
        if fields.get("selector"):
            extra += f", selector {fields['selector']}"
        if fields.get("pool"):
            extra += f", pool of {fields['pool']} threads"
        if fields.get("signal"):
            extra += f", readiness by {fields['signal']}"
        if fields.get("loop"):
            extra += f", loop {fields['loop']}"
        return (f"fdscope serve: {fields['model']} server listening on {addr} "
                f"(pid {fields['pid']}{extra}); Ctrl-C or SIGTERM stops it")
    if event == "stopped":
        closed = ", ".join(f"{k} {v}" for k, v in sorted(fields.get("closed", {}).items()))
        return (
            f"fdscope serve: stopped: {_n(fields['clients'], 'client')} served, "
            f"{fields['rejected']} rejected, {fields['bytes_in']} bytes in, "
            f"{fields['bytes_out']} bytes out, peak {_n(fields['peak_clients'], 'client')}, "
            f"{_n(fields['partial_writes'], 'partial write')}, "
            f"{_n(fields['backpressure_pauses'], 'backpressure pause')}"
            + (f"; closed: {closed}" if closed else "")
        )
    return f"fdscope serve: {event}: {fields}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def render_load(doc: dict[str, Any]) -> str:
    """The `load` result as a small table plus error and integrity lines."""
    lat = doc["latency_ms"]
    rows = [
        ("target", doc["target"]),
        ("connections", f"{doc['connections_ok']} of {doc['connections']} connected"),
        ("messages", f"{doc['messages_ok']} verified of {doc['messages_sent']} sent"
                     + (f" (expected {doc['messages_expected']})" if doc["messages_expected"] else "")),
        ("sizes", f"{doc['size']['min']}-{doc['size']['max']} bytes"),
        ("duration", f"{doc['duration_s']:.3f} s"),
        ("throughput", f"{doc['msgs_per_s']:.0f} msgs/s, {doc['mb_per_s']:.2f} MB/s (each way)"),
        ("latency ms", f"p50 {_ms(lat['p50'])}  p90 {_ms(lat['p90'])}  p99 {_ms(lat['p99'])}  "
                       f"max {_ms(lat['max'])}"),
        ("bytes", f"{doc['bytes_sent']} sent, {doc['bytes_verified']} verified, "
                  f"{doc['bytes_lost']} lost"
                  + (f", {doc['bytes_in_flight']} in flight" if doc.get("bytes_in_flight") else "")
                  + (f"; {doc['bytes_extra']} extra received" if doc.get("bytes_extra") else "")),
        ("integrity failures", str(doc["integrity_failures"])),
        ("connection errors", ", ".join(f"{k} {v}" for k, v in sorted(doc["errors"].items())) or "none"),
        ("verdict", "OK: every reply byte verified" if doc["ok"] else "FAILED: " + doc["verdict"]),
    ]
    cpu = doc.get("client_cpu")
    if cpu is not None:
        n = doc["processes"]
        rows.insert(-1, ("client", f"{_n(n, 'process')}, CPU {cpu['percent']:.0f}% of one core "
                         f"({cpu['cores_usable']} usable)"
                         + ("; SATURATED: the client may be the limit" if cpu["saturated"]
                            else "")))
    out = table(rows, ("load", "result"))
    for f in doc.get("failures", []):
        out += (f"\n  conn {f['connection']} message {f['message']}: {f['kind']} at byte "
                f"{f['offset']} of {f['size']}"
                + (f" (expected 0x{f['expected']:02x}, got 0x{f['got']:02x})"
                   if f.get("expected") is not None else ""))
    return out + "\n"


def render_run(doc: dict[str, Any], inspection_text: str | None) -> str:
    """The `run` report: the server, what inspection saw mid-load, the load, the server's totals."""
    srv = doc["server"]
    parts = [table([
        ("model", srv["model"]), ("pid", srv["pid"]), ("address", format_inet(srv["host"], srv["port"])),
        ("exit code", srv.get("exit_code")),
    ], ("server", "")) + "\n"]
    if inspection_text is not None:
        parts.append(section(f"inspection of pid {srv['pid']} at {doc['inspected_at_s']:.1f} s "
                             "into the load", inspection_text.rstrip("\n")))
    elif doc.get("inspection_error"):
        parts.append(section("inspection", f"not available: {doc['inspection_error']}"))
    parts.append(render_load(doc["load"]))
    totals = doc.get("server_totals")
    if totals:
        parts.append(section("server totals", render_event("stopped", totals)))
    return "\n".join(parts)
