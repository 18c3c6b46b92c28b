"""JSON output: one document per command run, with a "schema" field (a public contract).

Every document is valid UTF-8. Strings read from a target keep the bytes that are not UTF-8 as
lone surrogates (fdscope.proc decodes with surrogateescape); they are written as the JSON escape
`\\udcXX` (XX: the byte), so `os.fsencode(json.loads(text)[...])` gives the exact bytes back.
Everything else stays as UTF-8 text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterator
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def utf8_safe(text: str) -> str:
    """JSON text (from json.dumps(..., ensure_ascii=False)) with every lone surrogate written as
    a \\uXXXX escape. Outside strings JSON text is ASCII, so they can only be inside strings."""
    if text.isascii():  # O(1) in CPython: the usual case costs nothing
        return text
    return _SURROGATE.sub(_escape_surrogate, text)


def dumps(doc: dict[str, Any], rows: Collection[str] = ()) -> str:
    """The document indented; the lists under the keys `rows` one element per line (see
    chunks())."""
    if not rows:
        _check(doc)
        return utf8_safe(json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False,
                                    default=_default))
    return "".join(chunks(doc, rows))


def chunks(doc: dict[str, Any], rows: Collection[str] = (),
           special: dict[str, Callable[[Any], Iterator[str]]] | None = None) -> Iterator[str]:
    """The document in pieces: the top level indented, the lists under the keys `rows` one
    element per line (a table stays a table to the eye and to grep, and json's C encoder
    writes it: indent makes json fall back to its Python encoder), the value of a key in
    `special` written by special[key](value)."""
    _check(doc)
    raw_enc = json.JSONEncoder(ensure_ascii=False, default=_default).encode

    def enc(v: Any) -> str:
        return utf8_safe(raw_enc(v))

    yield "{\n"
    keys = list(doc)
    for i, key in enumerate(keys):
        value = doc[key]
        yield f"  {enc(key)}: "
        if special is not None and key in special:
            yield from special[key](value)
        elif key in rows and isinstance(value, list) and value:
            yield "[\n    " + ",\n    ".join(map(enc, value)) + "\n  ]"
        else:
            yield utf8_safe(json.dumps(value, indent=2, ensure_ascii=False,
                                       default=_default)).replace("\n", "\n  ")
        yield ",\n" if i < len(keys) - 1 else "\n"
    yield "}"


def _check(doc: dict[str, Any]) -> None:
    if "schema" not in doc:
        raise ValueError("JSON documents must carry a schema field")


def dumps_line(doc: dict[str, Any]) -> str:
    """One-line JSON, for streams of events (serve, watch)."""
    return utf8_safe(json.dumps(doc, separators=(",", ":"), ensure_ascii=False,
                                default=_default))


def _default(obj: Any) -> Any:
    to_json = getattr(obj, "to_json", None)
    if callable(to_json):
        return to_json()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")
