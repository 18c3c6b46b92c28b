"""Text rendering of the fdscope.limits/1 document."""

from __future__ import annotations

from typing import Any

from fdscope.render.escape import escape
from fdscope.render.style import heading, level
from fdscope.render.table import findings_table, fmt, table

_LABELS = {
    "fd_setsize": ("FD_SETSIZE (select)", "highest fd number + 1 that select() can watch"),
    "rlimit_nofile": ("RLIMIT_NOFILE", "per-process open-file limit, soft / hard"),
    "open_fds": ("open fds", "fds the process holds now"),
    "highest_fd": ("highest fd", "largest fd number in use"),
    "headroom": ("headroom", "soft limit minus open fds"),
    "file_max": ("fs.file-max", "system-wide file handle limit"),
    "file_nr": ("fs.file-nr", "allocated / unused / max system file handles"),
    "nr_open": ("fs.nr_open", "ceiling for any RLIMIT_NOFILE hard limit"),
    "epoll_max_user_watches": ("fs.epoll.max_user_watches", "epoll registrations per user"),
    "somaxconn": ("net.core.somaxconn", "cap on listen() backlog"),
    "inotify_max_user_watches": ("fs.inotify.max_user_watches", "inotify watches per user"),
    "inotify_max_user_instances": ("fs.inotify.max_user_instances", "inotify instances per user"),
}


def _value(doc: dict[str, Any], name: str) -> str:
    if name == "fd_setsize":
        s = doc["fd_setsize"]
        return f"{s['value']} ({'verified live' if s['verified'] else 'not verified'})"
    if name == "rlimit_nofile":
        r = doc["rlimit_nofile"]
        return f"{fmt(r['soft'] if r['soft'] is not None else 'unlimited')} / {fmt(r['hard'] if r['hard'] is not None else 'unlimited')}"
    if name == "file_nr":
        n = doc["file_nr"]
        if n is None:
            return "-"
        pct = f" ({n['allocated'] / n['max']:.1%})" if n["max"] else ""
        return f"{n['allocated']} / {n['unused']} / {n['max']}{pct}"
    return fmt(doc.get(name))


def render_text(doc: dict[str, Any], colour: bool = False) -> str:
    who = f"pid {doc['pid']} ({escape(str(doc['process_name']))})"
    if doc["pid_is_self"]:
        who += " - fdscope's own process; use --pid PID for another"
    rows = []
    for name, (label, meaning) in _LABELS.items():
        verdict = doc["verdicts"].get(name, "ok")
        shown = "-" if verdict is None else level(verdict, verdict, colour)
        rows.append((label, _value(doc, name), shown, meaning))
    out = [
        heading(f"fd limits - kernel {doc['kernel']} - {who}", colour),
        table(rows, ("figure", "value", "verdict", "meaning")),
        "",
        heading("FD_SETSIZE check", colour),
        doc["fd_setsize"]["how"],
        "",
        heading("findings", colour),
        findings_table(_findings(doc), colour),
    ]
    for note in doc.get("notes", []):
        out.append(f"note: {escape(note)}")
    return "\n".join(out) + "\n"


def _findings(doc: dict[str, Any]):
    from fdscope.model import Finding

    return [Finding(f["level"], f["code"], f["message"]) for f in doc["findings"]]
