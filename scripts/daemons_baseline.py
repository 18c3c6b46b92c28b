#!/usr/bin/env python3
"""Run fdscope against the real-daemon corpus (tests/daemons_support.py) and print the table of
docs/daemons.md: per daemon, the WARN/CRIT findings idle and under churn (20 scans), what was
cross-checked against lsfd/ss/fdinfo and the mismatches; then the details behind each cell.

Needs root and the packages of scripts/ci-deps. Usage: scripts/daemons_baseline.py [NAME ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemons_support import (  # noqa: E402
    MARKDOWN_HEADER,
    SPECS,
    Daemon,
    markdown_rows,
    missing_binaries,
    observe,
)


def main(names: list[str]) -> int:
    rows, details = [], []
    for name in names or list(SPECS):
        spec = SPECS[name]
        if missing_binaries(spec):
            print(f"{name}: {', '.join(missing_binaries(spec))} not installed", file=sys.stderr)
            return 1
        with Daemon(spec) as d:
            obs = observe(d)
        rows.append(markdown_rows(obs))
        details.append(f"### {name}\n")
        details.append(f"clients under churn: {obs.clients}; {obs.seconds:.1f} s")
        for title, log in (("idle", obs.idle), ("churn", obs.churn)):
            details.append(f"- {title} io_model by process: {dict(log.io_models)}")
            for label in sorted(log.counts):
                details.append(f"- {title}: {label} in {log.counts[label]}/{log.scans} scans: "
                               f"{log.examples[label]}")
        for title, check in (("idle", obs.idle_check), ("churn", obs.churn_check)):
            details.append(f"- cross-check {title}: {check.summary()}")
            details += [f"  - MISMATCH {m}" for m in check.mismatches]
        details.append("")
        print(rows[-1], file=sys.stderr)
    print(MARKDOWN_HEADER)
    print("\n".join(rows))
    print()
    print("\n".join(details))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
