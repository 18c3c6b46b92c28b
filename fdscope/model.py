"""Frozen dataclasses shared across fdscope (findings, limits). Other modules add their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["info", "warn", "crit"]
LEVELS: tuple[Level, ...] = ("info", "warn", "crit")


@dataclass(frozen=True)
class Finding:
    """A verdict: `code` is stable (documented), `message` is for humans, `fds` the fds it is
    about (so that scripts need not parse messages)."""

    level: Level
    code: str
    message: str
    fds: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "code": self.code, "message": self.message,
                "fds": list(self.fds)}


def worst_level(findings: list[Finding] | tuple[Finding, ...]) -> Level | None:
    worst: Level | None = None
    for f in findings:
        if worst is None or LEVELS.index(f.level) > LEVELS.index(worst):
            worst = f.level
    return worst
