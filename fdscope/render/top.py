"""Text rendering of the fdscope.top/1 document: the host line, one row per process, and the
flags' messages. Pure: a document in, text out (the live screen in fdscope.render.live draws
these lines)."""

from __future__ import annotations

from typing import Any

from fdscope.render.escape import escape
from fdscope.render.style import heading, level

# The type columns: fdscope.parse.fdlink.FD_TYPES grouped; OTHER is every type not shown.
TYPE_COLUMNS = (
    ("SOCK", ("socket",)),
    ("PIPE", ("pipe",)),
    ("FILE", ("file", "dir", "chr", "blk", "memfd")),
    ("EPOLL", ("epoll",)),
    ("EVFD", ("eventfd",)),
)
_SHOWN = frozenset(t for _, ts in TYPE_COLUMNS for t in ts)
HEADERS = ("PID", "USER", "NAME", "FDS", "SOFT", "HARD", "HEADROOM", "USED", "HIGH",
           "GROW/MIN", *(c for c, _ in TYPE_COLUMNS), "OTHER", "FLAGS")
# Columns that keep their width when the terminal is narrow; the others are cut from the right.
_RIGHT = frozenset(range(3, len(HEADERS) - 1)) | {0}


def _num(v: Any) -> str:
    return "-" if v is None else str(v)


def _limit(v: int | None, known: bool) -> str:
    return ("unlim" if known else "-") if v is None else str(v)


def host_line(doc: dict[str, Any]) -> str:
    h = doc["host"]
    nr = h["file_nr"]
    if nr is None:
        handles = "file-nr -"
    else:
        pct = f" ({nr['allocated'] / nr['max']:.1%})" if nr["max"] else ""
        handles = f"file-nr {nr['allocated']}/{nr['max']}{pct}"
    extra = [f"{h['denied']} denied"] if h["denied"] else []
    if h.get("vanished"):
        extra.append(f"{h['vanished']} vanished")
    extra.append(f"{h.get('kernel_threads', 0)} kernel threads skipped")
    return (f"host: {handles}  nr_open {_num(h['nr_open'])}  processes {h['processes']} "
            f"({', '.join(extra)})  fds {h['fds_total']}  scan {doc['elapsed_ms']:.0f} ms")


def row_cells(p: dict[str, Any], colour: bool = False) -> list[str]:
    used = p["used"]
    growth = p["growth_per_min"]
    known = p["fds"] is not None
    if p["denied"]:
        types = ["denied"] + ["-"] * len(TYPE_COLUMNS)
    else:
        t = p["types"] or {}
        types = [str(sum(t.get(x, 0) for x in ts)) for _, ts in TYPE_COLUMNS]
        types.append(str(sum(n for x, n in t.items() if x not in _SHOWN)))
    flags = ",".join(level(f["code"] + ("!" if f["level"] == "crit" else ""), f["level"], colour)
                     for f in p["flags"])
    return [str(p["pid"]), escape(p["user"]), escape(p["name"]), _num(p["fds"]),
            _limit(p["soft"], known), _limit(p["hard"], known), _num(p["headroom"]),
            "-" if used is None else f"{used:.0%}", _num(p["highest_fd"]),
            "-" if growth is None else f"{growth:+.0f}", *types, flags or "-"]


def table_lines(rows: list[dict[str, Any]], colour: bool = False,
                width: int | None = None) -> list[str]:
    """The header and one line per row, aligned; cut to `width` characters (colour codes do
    not count) when given."""
    cells = [row_cells(p, colour) for p in rows]
    plain = [row_cells(p, False) for p in rows] if colour else cells
    widths = [len(h) for h in HEADERS]
    for r in plain:
        for i, c in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(c))
    widths[2] = min(widths[2], 16)

    def line(r: list[str], shown: list[str]) -> str:
        parts = []
        for i, (c, s) in enumerate(zip(r, shown, strict=True)):
            if i == len(r) - 1:
                parts.append(c)
            elif i in _RIGHT:
                parts.append(" " * (widths[i] - len(s)) + c)
            else:
                if len(s) > widths[i]:
                    c = s = s[:widths[i] - 1] + "~"
                parts.append(c + " " * (widths[i] - len(s)))
        return " ".join(parts)

    out = [line(list(HEADERS), list(HEADERS))]
    out += [line(c, p) for c, p in zip(cells, plain, strict=True)]
    if width is not None:
        out = [cut(x, width) for x in out]
    return out


def cut(text: str, width: int) -> str:
    """`text` cut to `width` visible characters, keeping (and closing) SGR colour codes."""
    if len(text) <= width:
        return text
    out, shown, i, coloured = [], 0, 0, False
    while i < len(text) and shown < width:
        if text[i] == "\x1b":
            j = text.find("m", i)
            if j < 0:
                break
            out.append(text[i:j + 1])
            coloured = True
            i = j + 1
            continue
        out.append(text[i])
        shown += 1
        i += 1
    return "".join(out) + ("\x1b[0m" if coloured else "")


def flag_lines(rows: list[dict[str, Any]], colour: bool = False) -> list[str]:
    out = []
    for p in rows:
        for f in p["flags"]:
            out.append(f"  pid {p['pid']} ({escape(p['name'])}) "
                       f"{level(f['level'].upper(), f['level'], colour)} {f['code']}: "
                       f"{escape(f['message'])}")
    return out


def render_text(doc: dict[str, Any], colour: bool = False) -> str:
    """The --once output: host line, table, then every flag's message and the notes."""
    rows = doc["processes"]
    out = [heading(host_line(doc), colour), ""]
    out += table_lines(rows, colour) if rows else ["(no process matches)"]
    flagged = flag_lines(rows, colour)
    if flagged:
        out += ["", heading("flags:", colour), *flagged]
    if doc.get("notes"):
        out += ["", heading("notes:", colour), *(f"  - {escape(n)}" for n in doc["notes"])]
    return "\n".join(out) + "\n"
