"""Options shared by several commands, and the parameter types every numeric option uses.

Every number on fdscope's command line goes through one of the types here: ASCII digits only
(`int()` and click's own types also take '٣' or '²' as digits), finite (no nan/inf) and within
a range, so a bad value is a usage error (exit 2) and never a hang or an overflow later on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

# pid_max can be set up to PID_MAX_LIMIT, 4194304 on 64-bit (include/linux/threads.h), so no
# larger pid can exist.
PID_MAX_LIMIT = 4 * 1024 * 1024
# The ceiling of every SECONDS option: one week. Far beyond any useful interval, and below the
# ~24.8 days that poll()/epoll_wait() take as milliseconds in an int.
MAX_SECONDS = 7 * 86400.0

_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def _range_text(lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    def num(x: float) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    parts = []
    if lo is not None:
        parts.append(f"{'more than' if lo_open else 'at least'} {num(lo)}")
    if hi is not None:
        parts.append(f"at most {num(hi)}")
    return ", ".join(parts) or "any"


class AsciiInt(click.ParamType):
    """An integer written in ASCII digits (optional sign), within [min, max]."""

    name = "INTEGER"

    def __init__(self, min: int | None = None, max: int | None = None,
                 metavar: str | None = None) -> None:
        self.min, self.max = min, max
        if metavar:
            self.name = metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            # 20 digits hold any 64-bit value; longer input is out of range without int()
            # (which refuses over 4,300 digits with a ValueError of its own).
            if not _INT.fullmatch(text) or len(text.lstrip("+-").lstrip("0")) > 20:
                if _INT.fullmatch(text):
                    self.fail(f"{value!r} is out of range ({self._range()})", param, ctx)
                self.fail(f"{value!r} is not an integer (ASCII digits)", param, ctx)
            number = int(text)
        if (self.min is not None and number < self.min) or \
                (self.max is not None and number > self.max):
            self.fail(f"{value!r} is out of range ({self._range()})", param, ctx)
        return number

    def _range(self) -> str:
        return _range_text(self.min, self.max)


class FiniteFloat(click.ParamType):
    """A finite decimal number in ASCII (no nan, inf or hex), within its range."""

    name = "NUMBER"

    def __init__(self, min: float | None = None, max: float | None = None, *,
                 min_open: bool = False, metavar: str | None = None) -> None:
        self.min, self.max, self.min_open = min, max, min_open
        if metavar:
            self.name = metavar

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            text = str(value).strip()
            if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
                self.fail(f"{value!r} is not a finite number ({self._range()})", param, ctx)
            if not _FLOAT.fullmatch(text):
                self.fail(f"{value!r} is not a number (ASCII digits, e.g. 0.5)", param, ctx)
            number = float(text)
        if not math.isfinite(number):
            self.fail(f"{value!r} is out of range ({self._range()})", param, ctx)
        lo, hi = self.min, self.max
        if (lo is not None and (number <= lo if self.min_open else number < lo)) or \
                (hi is not None and number > hi):
            self.fail(f"{value!r} is out of range ({self._range()})", param, ctx)
        return number

    def _range(self) -> str:
        return _range_text(self.min, self.max, self.min_open)


def seconds(min: float = 0.0, *, min_open: bool = False) -> FiniteFloat:
    """A duration in seconds: finite, at least `min` (more than, with min_open), one week at most."""
    return FiniteFloat(min, MAX_SECONDS, min_open=min_open, metavar="SECONDS")


class PidType(click.ParamType):
    """A process id: ASCII digits only, 1 to PID_MAX_LIMIT; anything else is a usage error."""

    name = "PID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            pid = value
        else:
            text = str(value).strip()
            # str.isdigit() and int() accept '²', '①' and '٣' too; only ASCII digits are a pid.
            if not (text.isascii() and text.isdigit()) or len(text) > 10:
                self.fail(f"PID must be a positive integer, not {value!r}", param, ctx)
            pid = int(text)
        if not 0 < pid <= PID_MAX_LIMIT:
            self.fail(f"PID must be a positive integer up to {PID_MAX_LIMIT}, not {value!r}",
                      param, ctx)
        return pid


class ParsedType(click.ParamType):
    """A value `parse(text)` turns into what the command takes; its ValueError is the usage
    error's message."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):  # a default already converted
            return value
        try:
            return self.parse(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


def _parse_size(text: str) -> tuple[int, int]:
    from fdscope.load import parse_size

    return parse_size(text)


PID = PidType()
# A message size in bytes or a MIN-MAX range, k/m suffixes (fdscope.load.parse_size).
SIZE = ParsedType("B|MIN-MAX", _parse_size)
PORT = AsciiInt(0, 65535, metavar="PORT")
# Seeds are handed to random.Random, which takes any int; 64 bits are plenty.
SEED = AsciiInt(-(2**63), 2**64 - 1, metavar="SEED")
# Connections (each one fd; the kernel's own ceiling, fs.nr_open, is at most 2**30) and counts.
CONNECTIONS = AsciiInt(1, 1_000_000, metavar="N")
COUNT = AsciiInt(1, 10**9, metavar="N")


def json_option(f: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document (fields: see docs/ in the fdscope source)."
    )(f)


def out(text: str, nl: bool = True) -> None:
    """Write data to stdout as is. click.echo() drops what looks like colour codes when stdout is
    not a terminal; fdscope decides colour itself (fdscope.render.style) and escapes target
    text (fdscope.render.escape), so nothing may be stripped from it."""
    click.echo(text, nl=nl, color=True)


def echo_doc(doc: dict[str, Any], as_json: bool, render_text: Callable[[dict[str, Any]], str]) -> None:
    """Print `doc` as JSON or through its text renderer."""
    if as_json:
        from fdscope.render.json import dumps

        out(dumps(doc))
    else:
        out(render_text(doc), nl=False)
