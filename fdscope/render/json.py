"""JSON output: one document per command run, with a "schema" field (a public contract)."""

from __future__ import annotations

import json
from typing import Any


def dumps(doc: dict[str, Any]) -> str:
    if "schema" not in doc:
        raise ValueError("JSON documents must carry a schema field")
    return json.dumps(doc, indent=2, sort_keys=False, default=_default)


def dumps_line(doc: dict[str, Any]) -> str:
    """One-line JSON, for streams of events (serve, watch)."""
    return json.dumps(doc, separators=(",", ":"), default=_default)


def _default(obj: Any) -> Any:
    to_json = getattr(obj, "to_json", None)
    if callable(to_json):
        return to_json()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")
