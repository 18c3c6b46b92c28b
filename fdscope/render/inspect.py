"""Text and JSON rendering of an inspect report (the dict from InspectReport.to_json())."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fdscope import speedups
from fdscope.render.escape import escape
from fdscope.render.json import chunks, utf8_safe
from fdscope.render.style import heading, level

SECTIONS = ("summary", "findings", "fds", "epoll", "io_uring", "threads", "io_model")
# Records printed one per line in --json (fast C encoder, greppable); the rest is indented.
_ROW_LISTS = ("fds", "threads", "findings")

_STATE_NAMES = {"R": "running", "S": "sleeping", "D": "disk sleep", "T": "stopped",
                "t": "tracing stop", "Z": "zombie", "X": "dead", "I": "idle", "P": "parked"}


def render_json(doc: dict[str, Any]) -> str:
    """The document as JSON: top level indented, one fd/thread/registration per line."""
    return "".join(_iter_items(doc, {}))


_Chunks = Callable[[], Iterator[str]]


def _iter_items(doc: dict[str, Any], prerendered: dict[str, _Chunks]) -> Iterator[str]:
    # Strings from the target may hold lone surrogates (bytes that are not UTF-8): chunks()
    # writes them as \udcXX escapes, so the document is valid UTF-8 (fdscope.render.json).
    special: dict[str, Callable[[Any], Iterator[str]]] = {
        "epoll": lambda sets: _epoll_json([(s["epfd"], [_enc(r) for r in s["registrations"]])
                                           for s in sets]) if sets else iter(["[]"])}
    special.update({key: lambda _value, chunks=chunks: chunks()
                    for key, chunks in prerendered.items()})
    yield from chunks(doc, _ROW_LISTS, special)
    yield "\n"


_raw_enc = json.JSONEncoder(ensure_ascii=False).encode


def _enc(value: Any) -> str:
    return utf8_safe(_raw_enc(value))


def _epoll_json(sets: Iterable[tuple[int, list[str]]]) -> Iterator[str]:
    # The registrations in pieces as they come: gluing them would copy megabytes each time.
    first = True
    for epfd, regs in sets:
        yield ("[\n    " if first else ",\n    ") + f'{{"epfd": {epfd}, "registrations": '
        if regs:
            yield "[\n        "
            yield ",\n        ".join(regs)  # the C text is one str, which join returns as is
            yield "\n      ]}"
        else:
            yield "[]}"
        first = False
    yield "[]" if first else "\n  ]"


def render_text(doc: dict[str, Any], sections: Iterable[str] | None = None,
                colour: bool = False) -> str:
    """The report as tables (tabulate via render.table), one section after another."""
    from fdscope.render.table import section

    shown = [s for s in SECTIONS if s in doc and (sections is None or s in set(sections))]
    out = [_header(doc, colour)]
    if doc.get("notes"):
        tag = "partial report" if doc.get("partial") else "notes"
        out.append(section(f"{tag}:", "\n".join(f"  - {escape(n)}" for n in doc["notes"]),
                           colour))
    for name in shown:
        text = _SECTION_RENDERERS[name](doc, colour)
        if text:
            out.append(text)
    if doc.get("peers") is not None:
        out.append(render_peers(doc["peers"], colour))
    return "\n".join(out)


def render_peers(peers: list[dict[str, Any]], colour: bool = False) -> str:
    """--peers: one line per holder, "fd 5 unix CONNECTED -> pid 812 (postgres) fd 9"."""
    from fdscope.render.table import section

    def who(h: dict[str, Any]) -> str:
        end = f" ({h['end']} end)" if h.get("end") else ""
        return f"pid {h['pid']} ({escape(str(h['name']))}) fd {h['fd']}{end}"

    lines = []
    for p in peers:
        what = f"fd {p['fd']} {p['type']}"
        if p["type"] == "pipe":
            what += f" ({p['state']} end)" if p["state"] else ""
        elif p["state"]:
            what += f" {p['state']}"
        arrow = {"peer": "->", "pipe": "<->", "shared": "shared with"}[p["relation"]]
        if not p["holders"]:
            lines.append(f"  {what} {arrow} peer inode {p['peer_inode']} (no readable holder)")
        for h in p["holders"]:
            lines.append(f"  {what} {arrow} {who(h)}")
    return section("peers:", "\n".join(lines) or "  (no pipe or socket shared with another fd)",
                   colour)


def _header(doc: dict[str, Any], colour: bool) -> str:
    from fdscope.render.table import fmt

    name = escape(str(doc.get("name")))
    cmd = " ".join(doc.get("cmdline") or []) or f"[{doc.get('name')}]"
    cmd = escape(" ".join(cmd.split()))  # a `python -c` script spans lines
    if len(cmd) > 100:
        cmd = cmd[:97] + "..."
    state = doc.get("state")
    st = f"{state} ({_STATE_NAMES.get(state, '?')})" if state else "?"
    uid = doc.get("uid")
    return heading(f"pid {doc['pid']} ({name}): {cmd}", colour) + \
        f"\nstate {st}, uid {fmt(uid)}\n"


def _summary(doc: dict[str, Any], colour: bool) -> str:
    from fdscope.render.table import fmt, section

    s = doc["summary"]
    pct = f" ({s['usage_percent']:g}% of soft limit)" if s.get("usage_percent") is not None else ""
    rows = [
        ("open fds", f"{s['open_fds']}{pct}"),
        ("highest fd", fmt(s["highest_fd"])),
        ("soft / hard limit", f"{fmt(s['soft_limit'])} / {fmt(s['hard_limit'])}"),
        ("headroom", fmt(s["headroom"])),
        ("by type", ", ".join(f"{k} {v}" for k, v in s["by_type"].items()) or "-"),
        ("socket states", ", ".join(f"{k} {v}" for k, v in s["socket_states"].items()) or "-"),
        ("epoll registrations", fmt(s.get("epoll_registrations"))),
        ("threads", fmt(s.get("threads"))),
    ]
    from tabulate import tabulate

    body = tabulate(rows, tablefmt="plain", disable_numparse=True)
    return section("summary", "\n".join(f"  {line}" for line in body.splitlines()), colour)


def _findings(doc: dict[str, Any], colour: bool) -> str:
    from fdscope.model import Finding
    from fdscope.render.table import findings_table, section

    fs = [Finding(f["level"], f["code"], f["message"]) for f in doc["findings"]]
    return section("findings", findings_table(fs, colour), colour)


def _fds(doc: dict[str, Any], colour: bool) -> str:
    from fdscope.render.table import fmt, section, table

    rows = []
    for e in doc["fds"]:
        sock = e.get("socket")
        if sock:
            what = f"{sock['proto']} {sock['state']}"
            addr = escape(fmt(sock["local"]))
            if sock.get("remote"):
                addr += f" -> {escape(sock['remote'])}"
            q = f"{fmt(sock['recv_q'])}/{fmt(sock['send_q'])}"
            target = f"{what} {addr}"
        else:
            q = ""
            target = escape(e["target"])
        flags = e.get("flags")
        rows.append((e["fd"], e["type"], _short_flags(flags), fmt(e.get("pos")), q,
                     fmt(e.get("inode")), target))
    body = table(rows, ("fd", "type", "flags", "pos", "recv/send-q", "inode", "target"))
    return section(f"fds ({len(doc['fds'])})", body, colour)


def _short_flags(flags: list[str] | None) -> str:
    if flags is None:
        return "-"
    short = {"O_RDONLY": "r", "O_WRONLY": "w", "O_RDWR": "rw", "O_PATH": "path"}
    return ",".join(short.get(f, f.removeprefix("O_").lower()) for f in flags)


def _epoll(doc: dict[str, Any], colour: bool) -> str:
    from fdscope.render.table import fmt, section, table

    if not doc["epoll"]:
        return section("epoll", "(no epoll fds)", colour)
    parts = []
    for s in doc["epoll"]:
        rows = []
        for r in s["registrations"]:
            status = r["status"]
            lvl = {"ok": "ok", "closed": "warn", "reused": "crit"}.get(status, "info")
            mark = status if r.get("verified", True) else f"{status}?"
            rows.append((r["tfd"], f"{r['mask']:#x}", _short_events(r["events"]),
                         f"{r['data']:#x}", fmt(r["inode"]), level(mark, lvl, colour),
                         ",".join(map(str, r["open_as"])) or "-"))
        body = table(rows, ("tfd", "mask", "events", "data", "inode", "status", "open_as"))
        n = len(s["registrations"])
        parts.append(section(f"epoll fd {s['epfd']} ({n} registration{'s' if n != 1 else ''})",
                             body, colour))
    legend = "  status ?: identity by shared anon inode, not verifiable\n"
    return "\n".join(parts) + (legend if any(not r.get("verified", True) for s in doc["epoll"]
                                             for r in s["registrations"]) else "")


def _short_events(events: list[str]) -> str:
    return "|".join(e.removeprefix("EPOLL") for e in events) or "-"


_IO_THREADS = {"iou-sqp-": "(io_uring SQ poll)", "iou-wrk-": "(io_uring worker)"}


def _threads(doc: dict[str, Any], colour: bool) -> str:
    from fdscope.render.table import fmt, section, table

    rows = []
    sampled = any(t.get("cpu_percent") is not None for t in doc["threads"])
    for t in doc["threads"]:
        args = escape(" ".join(f"{k}={v}" for k, v in (t.get("args") or {}).items()))
        call = fmt(t["syscall"])
        if t["name"].startswith(tuple(_IO_THREADS)):
            # io_uring's kernel threads: their syscall file shows the call that created them
            # (fdscope.inspect.uring), not a call they wait in.
            call, args = _IO_THREADS[t["name"][:8]], ""
        row = [t["tid"], escape(t["name"]), t["state"], call, args or "-",
               escape(fmt(t["wchan"]))]
        if sampled:
            row.append(fmt(t.get("cpu_percent")))
        rows.append(row)
    headers = ["tid", "name", "state", "syscall", "args", "wchan"] + (["cpu%"] if sampled else [])
    return section(f"threads ({len(doc['threads'])})", table(rows, headers), colour)


def _io_model(doc: dict[str, Any], colour: bool) -> str:
    from fdscope.render.table import section

    m = doc["io_model"]
    cpu = doc.get("cpu")
    line = f"  {m['kind']}: {m['summary']}"
    if cpu:
        how = (f"sampled over {cpu['window']:g} s" if cpu["source"] == "sample"
               else "average since start")
        line += f"\n  cpu: {cpu['percent']:g}% ({how})"
    return section("io model", line, colour)


def _io_uring(doc: dict[str, Any], colour: bool) -> str:
    """One line per ring and its unconsumed entries; nothing when the process has no ring."""
    from fdscope.render.table import section, table

    parts = []
    for r in doc["io_uring"]:
        sq, cq = r["sq"], r["cq"]
        head = (f"  SQ {sq['pending'] if sq['pending'] is not None else '?'}/"
                f"{sq['entries'] or '?'} pending (head {sq['head']}, tail {sq['tail']}); "
                f"CQ {cq['pending'] if cq['pending'] is not None else '?'}/{cq['entries'] or '?'} "
                f"unreaped (head {cq['head']}, tail {cq['tail']})")
        if r["form"] == "masked":
            head += "; indices masked (older kernel)"
        bits = []
        if r["sq_thread"] is not None and r["sq_thread"] > 0:
            bits.append(f"SQ poll thread {r['sq_thread']} on CPU {r['sq_thread_cpu']}")
        if r["user_files"]:
            used = sum(1 for f in r["files"] if f["name"] != "<none>")
            bits.append(f"{used}/{r['user_files']} fixed files")
        if r["user_bufs"]:
            bits.append(f"{r['user_bufs']} fixed buffers")
        if r["poll_list"]:
            bits.append(f"{len(r['poll_list'])} waiting for readiness")
        if r["cq_overflow_list"]:
            bits.append(f"{len(r['cq_overflow_list'])} overflowed CQEs")
        if r["waiters"]:
            bits.append(f"waited on by thread {', '.join(map(str, r['waiters']))}")
        body = head + ("\n  " + "; ".join(bits) if bits else "")
        rows = [("SQE", e["index"], escape(e["opcode"]), e["fd"], e["user_data"], "")
                for e in r["sqes"]]
        rows += [("CQE", e["index"], "", "", e["user_data"], e["res"]) for e in r["cqes"]]
        if rows:
            body += "\n" + table(rows, ("entry", "index", "opcode", "fd", "user_data", "res"))
        parts.append(section(f"io_uring fd {r['fd']}", body, colour))
    return "\n".join(parts)


_SECTION_RENDERERS = {"summary": _summary, "findings": _findings, "fds": _fds, "epoll": _epoll,
                      "io_uring": _io_uring,
                      "threads": _threads, "io_model": _io_model}


def render_watch_header(pid: int, name: str, interval: float) -> str:
    return f"watching pid {pid} ({escape(name)}) every {interval:g} s; Ctrl-C stops\n"


def render_watch_row(sample: dict[str, Any]) -> str:
    delta = ", ".join(f"{k} {v:+d}" for k, v in sample["delta"].items()) or "-"
    by_type = ", ".join(f"{k} {v}" for k, v in sample["by_type"].items())
    growth = sample["growth_per_min"]
    g = f"{growth:+g}/min" if growth is not None else "-"
    return (f"t={sample['t']:>8.1f}s  open {sample['open_fds']:>6} ({sample['delta_total']:+d})  "
            f"growth {g:>10}  by type: {by_type}  delta: {delta}")


def render_report_json(report: Any, sections: Iterable[str] | None = None) -> str:
    """Fast --json for an InspectReport: the same document as render_json(report.to_json()),
    formatted straight from the report's tuples (16,000 fds: no intermediate dicts)."""
    return "".join(iter_report_json(report, sections))


def iter_report_json(report: Any, sections: Iterable[str] | None = None,
                     batch: int = 2048) -> Iterator[str]:
    """render_report_json in chunks of `batch` rows, for writing straight to stdout (no
    multi-megabyte intermediate strings)."""
    doc = report.to_json(sections=sections, rows=False)
    pre: dict[str, _Chunks] = {}

    def fds() -> Iterator[str]:
        entries = report.listed_fds()
        if not entries:
            yield "[]"
            return
        caches: tuple[dict[Any, str], dict[Any, str]] = ({}, {None: "null"})
        for start in range(0, len(entries), batch):
            part = entries[start:start + batch]
            text = speedups.backend.rows_json(part, FD_KEYS, ",\n    ")
            if text is None:  # the Python backend, or lone surrogates (C leaves those rows)
                text = ",\n    ".join(_fd_rows(part, *caches))
            yield "[\n    " if start == 0 else ",\n    "
            yield text
        yield "\n  ]"

    def epoll() -> Iterator[tuple[int, list[str]]]:
        for s in report.epoll:
            text = speedups.backend.rows_json(list(s.registrations), REG_KEYS, ",\n        ") \
                if s.registrations else None
            yield s.epfd, [text] if text is not None else _reg_rows(s.registrations)

    if "fds" in doc:
        pre["fds"] = fds
    if "epoll" in doc:
        pre["epoll"] = lambda: _epoll_json(epoll())
    return _iter_items(doc, pre)


_jstr = json.encoder.encode_basestring  # the C implementation when available
# Keys of FdEntry and Registration rows in field order, for the C encoder (speedups rows_json):
# None drops a field, (key, keys) nests a NamedTuple. _fd_rows/_reg_rows write the same text.
FD_KEYS = ("fd", "type", "target", "inode", "flags", "pos",
           ("socket", ("proto", "state", "local", "remote", "recv_q", "send_q")), None)
REG_KEYS = ("tfd", "mask", "events", "data", "inode", "sdev", "status", "open_as", "verified")


def _jv(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, str):
        return _jstr(v)
    return str(v)


# The twins of the C encoder: one f-string per row, the repeated parts (socket objects, flag
# and event lists) rendered once per distinct value.
def _fd_rows(entries: Iterable[Any], socks: dict[Any, str],
             flag_lists: dict[Any, str]) -> list[str]:
    js = _jstr
    out: list[str] = []
    append = out.append
    for fd, typ, target, inode, flags, pos, s, _raw in entries:
        if s is None:
            sock = "null"
        else:
            sock = socks.get(s)
            if sock is None:
                sock = socks[s] = (
                    f'{{"proto": {js(s.proto)}, "state": {js(s.state)}, "local": {_jv(s.local)}, '
                    f'"remote": {_jv(s.remote)}, "recv_q": {_jv(s.recv_q)}, '
                    f'"send_q": {_jv(s.send_q)}}}')
        fl = flag_lists.get(flags)
        if fl is None:
            fl = flag_lists[flags] = "[" + ", ".join(js(f) for f in flags) + "]"
        append(f'{{"fd": {fd}, "type": "{typ}", "target": {js(target)}, '
               f'"inode": {"null" if inode is None else inode}, "flags": {fl}, '
               f'"pos": {"null" if pos is None else pos}, "socket": {sock}}}')
    return _utf8_rows(out)


def _utf8_rows(rows: list[str]) -> list[str]:
    """Rows with lone surrogates written as \\udcXX escapes (fdscope.render.json.utf8_safe);
    all-ASCII rows, the usual case, are checked in C (str.isascii is O(1))."""
    if all(map(str.isascii, rows)):
        return rows
    return list(map(utf8_safe, rows))


def _reg_rows(regs: Iterable[Any]) -> list[str]:
    out: list[str] = []
    append = out.append
    event_lists: dict[tuple[str, ...], str] = {}
    for tfd, mask, events, data, inode, sdev, status, open_as, verified in regs:
        ev = event_lists.get(events)
        if ev is None:
            ev = event_lists[events] = "[" + ", ".join(map(_jstr, events)) + "]"
        # str() of a list of ints is its JSON text.
        append(f'{{"tfd": {tfd}, "mask": {mask}, "events": {ev}, "data": {data}, '
               f'"inode": {"null" if inode is None else inode}, '
               f'"sdev": {"null" if sdev is None else sdev}, "status": {_jstr(status)}, '
               f'"open_as": {list(open_as)}, "verified": {"true" if verified else "false"}}}')
    return _utf8_rows(out)
