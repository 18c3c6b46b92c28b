"""Plain-text tables and sections built on tabulate."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tabulate import tabulate

from fdscope.model import Finding
from fdscope.render.escape import escape
from fdscope.render.style import heading, level


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    rows = list(rows)
    if not rows:
        return "(none)"
    return tabulate(rows, headers=list(headers), tablefmt="simple", disable_numparse=True)


def section(title: str, body: str, colour: bool = False) -> str:
    return f"{heading(title, colour)}\n{body}\n"


def findings_table(findings: Iterable[Finding], colour: bool = False) -> str:
    # Messages quote target text (names, paths): escaped, never raw (fdscope.render.escape).
    rows = [(level(f.level.upper(), f.level, colour), f.code, escape(f.message))
            for f in findings]
    if not rows:
        return "no findings"
    return table(rows, ("level", "code", "message"))


def fmt(value: Any) -> str:
    """A cell: None as '-', ints with thousands separators left alone for grep-ability."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
