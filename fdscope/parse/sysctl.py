"""Values of /proc/sys files: single integers and fs.file-nr's three fields."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fdscope.errors import ParseError

_INT = re.compile(r"-?[0-9]+")


def parse_int(text: str, what: str) -> int:
    value = text.strip()
    if not _INT.fullmatch(value):
        raise ParseError(what, f"expected an integer, got {text[:40]!r}")
    return int(value)


@dataclass(frozen=True)
class FileNr:
    """fs.file-nr: allocated file handles, allocated-but-unused (always 0 since 2.6), max."""

    allocated: int
    unused: int
    max: int


def parse_file_nr(text: str) -> FileNr:
    fields = text.split()
    if len(fields) != 3 or not all(_INT.fullmatch(f) and f[0] != "-" for f in fields):
        raise ParseError("fs.file-nr", f"expected three integers, got {text[:60]!r}")
    return FileNr(*(int(f) for f in fields))
