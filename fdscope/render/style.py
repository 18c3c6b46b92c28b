"""Colour only on a TTY and never when NO_COLOR is set to a non-empty value (https://no-color.org:
"when present and not an empty string"). The decision is made here only: off a terminal fdscope
writes no colour codes, and it writes its output with click.echo(color=True), so click never
strips anything from it (a name that holds escape codes is escaped, not stripped)."""

from __future__ import annotations

import os
import sys
from typing import TextIO

import click

_LEVEL_COLOURS = {"info": "cyan", "warn": "yellow", "crit": "red", "ok": "green"}


def colour_enabled(stream: TextIO | None = None) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    stream = stream if stream is not None else sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def level(text: str, lvl: str, colour: bool) -> str:
    """`text` coloured for a finding level (info, warn, crit) or 'ok'."""
    if not colour or lvl not in _LEVEL_COLOURS:
        return text
    return click.style(text, fg=_LEVEL_COLOURS[lvl], bold=lvl == "crit")


def heading(text: str, colour: bool) -> str:
    return click.style(text, bold=True) if colour else text
