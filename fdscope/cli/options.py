"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class PidType(click.ParamType):
    """A positive integer pid; anything else is a usage error (exit 2)."""

    name = "PID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            pid = value
        else:
            text = str(value).strip()
            if not text.isdigit():
                self.fail(f"PID must be a positive integer, not {value!r}", param, ctx)
            pid = int(text)
        if pid <= 0:
            self.fail(f"PID must be a positive integer, not {value!r}", param, ctx)
        return pid


PID = PidType()


def json_option(f: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document (fields: see docs/ in the fdscope source)."
    )(f)


def echo_doc(doc: dict[str, Any], as_json: bool, render_text: Callable[[dict[str, Any]], str]) -> None:
    """Print `doc` as JSON or through its text renderer."""
    if as_json:
        from fdscope.render.json import dumps

        click.echo(dumps(doc))
    else:
        click.echo(render_text(doc), nl=False)
