"""README stays the short user's page, and its Quick start test command is the one CI runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def quick_start_commands(text: str) -> list[str]:
    """The non-empty, non-comment lines of the first fenced block under '## Quick start'."""
    section = re.search(r"^## Quick start\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, "README has no '## Quick start' section"
    block = re.search(r"^```[^\n]*\n(.*?)^```", section.group(1), re.M | re.S)
    assert block, "README's Quick start has no fenced block"
    return [line.strip() for line in block.group(1).splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def shell_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_quick_start_has_the_main_job_then_the_test_command_ci_runs() -> None:
    commands = quick_start_commands(README.read_text())
    assert len(commands) == 2, commands
    assert commands[0].endswith("fdscope run"), commands[0]
    assert commands[1] == "scripts/test"
    # .ci/run must run that same command (not parse it out of README).
    runs = [line for line in shell_lines(ROOT / ".ci" / "run")
            if re.search(r"(^|[\s;&|(])" + re.escape(commands[1]) + r"($|[\s;&|)])", line)]
    assert runs, ".ci/run does not run " + commands[1]
    assert "README" not in "".join(shell_lines(ROOT / ".ci" / "run")), ".ci/run reads README"


def test_the_ci_scripts_are_executable_strict_bash() -> None:
    for name in ("scripts/test", "scripts/ci-deps", ".ci/run"):
        path = ROOT / name
        assert os.access(path, os.X_OK), f"{name} is not executable"
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), name
        assert "set -euo pipefail" in text, name
    test = shell_lines(ROOT / "scripts" / "test")
    assert any(re.search(r"pytest -q \"\$@\"", line) for line in test), test
    assert any(re.search(r"ruff check \.", line) for line in test), test
    ci = shell_lines(ROOT / ".ci" / "run")
    assert any(re.fullmatch(r"(bash )?scripts/ci-deps", line) for line in ci), ci


def test_readme_stays_short() -> None:
    size = README.stat().st_size
    assert size < 30_000, f"README.md is {size} bytes; move reference material to docs/"


def test_every_docs_link_resolves() -> None:
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    readme_links = re.findall(r"\]\((docs/[^)#\s]+\.md)(?:#[^)]*)?\)", README.read_text())
    assert readme_links, "README links to no docs/ page"
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"


def test_readme_links_every_docs_page() -> None:
    text = README.read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in text, f"README does not link docs/{page.name}"
