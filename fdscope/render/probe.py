"""Text output of `fdscope probe`: a step table and verdict per probe, then a summary."""

from __future__ import annotations

from typing import Any

from fdscope.render.style import heading, level
from fdscope.render.table import table

_VERDICT_LEVEL = {"matches": "ok", "deviates": "crit", "skipped": "warn"}


def show_value(value: Any, rule: str = "equals") -> str:
    """A cell for an observed or expected value: event lists joined by '|', [] as 'nothing'."""
    if value is None:
        return "-"
    if rule == "range" and isinstance(value, list) and len(value) == 2:
        return f"{value[0]}..{value[1]}"
    if rule == "one_of" and isinstance(value, list):
        return " or ".join(show_value(v) for v in value)
    if rule == "contains":
        return "includes " + show_value(value)
    if rule == "error":
        return f"error {value}"
    if isinstance(value, list):
        return "|".join(str(v) for v in value) if value else "nothing"
    return str(value)


def _ok(step: dict[str, Any], colour: bool) -> str:
    if step["ok"] is None:
        return level(f"skipped: {step.get('skipped', '')}", "warn", colour)
    return level("yes", "ok", colour) if step["ok"] else level("NO", "crit", colour)


def verdict_text(probe: dict[str, Any], colour: bool = False) -> str:
    v = probe["verdict"]
    text = level(v, _VERDICT_LEVEL.get(v, ""), colour)
    if v == "deviates" and probe.get("deviating_step"):
        text += f" at step {probe['deviating_step']} ({probe.get('deviating_action')})"
    elif v == "skipped" and probe.get("reason"):
        text += f": {probe['reason']}"
    return text


def title(probe: dict[str, Any]) -> str:
    name = probe["name"] + (f" ({probe['variant']})" if probe.get("variant") else "")
    return f"{name} on {probe['transport']}" if probe.get("transport") else name


def render_probe(probe: dict[str, Any], colour: bool = False, sources: bool = False) -> str:
    lines = [f"{heading(title(probe), colour)}: {verdict_text(probe, colour)}"]
    if probe["steps"]:
        headers = ["#", "action", "observed", "expected", "ok"] + (["source"] if sources else [])
        rows = []
        for i, s in enumerate(probe["steps"], start=1):
            row = [str(i), s["action"], show_value(s["observed"]), show_value(s["expected"], s["rule"]),
                   _ok(s, colour)]
            if sources:
                row.append(s.get("source", ""))
            rows.append(row)
        lines.append(table(rows, headers))
    if probe.get("note"):
        lines.append(f"note: {probe['note']}")
    return "\n".join(lines) + "\n"


def render_summary(doc: dict[str, Any], colour: bool = False) -> str:
    rows = []
    for p in doc["probes"]:
        steps = p["steps"]
        ok = sum(1 for s in steps if s["ok"])
        judged = sum(1 for s in steps if s["ok"] is not None)
        detail = ""
        if p["verdict"] == "deviates":
            detail = f"step {p['deviating_step']}: {p.get('deviating_action')}"
        elif p["verdict"] == "skipped":
            detail = p.get("reason") or ""
        elif judged < len(steps):
            detail = f"{len(steps) - judged} step(s) skipped"
        ms = p.get("elapsed_ms")
        rows.append([p["name"], p.get("variant") or "-", p.get("transport") or "-",
                     level(p["verdict"], _VERDICT_LEVEL.get(p["verdict"], ""), colour),
                     f"{ok}/{judged}" if steps else "-", f"{ms:.0f}" if ms is not None else "-", detail])
    s = doc["summary"]
    body = table(rows, ["probe", "variant", "transport", "verdict", "steps ok", "ms", "detail"])
    total = (f"{s['matches']} match, {s['deviates']} deviate, {s['skipped']} skipped "
             f"in {doc['elapsed_ms'] / 1000:.2f} s")
    return f"{heading('summary', colour)}\n{body}\n{total}\n"


def render_text(doc: dict[str, Any], colour: bool = False, sources: bool = False,
                summary: bool | None = None) -> str:
    """The whole report; the summary table appears when more than one probe ran (or if asked)."""
    parts = [f"fdscope probe: Linux {doc['kernel']} ({doc['machine']})\n"]
    for p in doc["probes"]:
        parts.append(render_probe(p, colour, sources))
    if summary if summary is not None else len(doc["probes"]) > 1:
        parts.append(render_summary(doc, colour))
    return "\n".join(parts)
