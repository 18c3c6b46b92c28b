#!/usr/bin/env python3
"""Run fdscope against the real-daemon corpus (tests/daemons_support.py) and print the tables of
docs/daemons.md: per daemon, the WARN/CRIT findings idle and under churn (20 scans), what was
cross-checked against lsfd/ss/fdinfo and the mismatches; the provoked faults as fdscope reports
them; then the details behind each cell.

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
    provoke_overflow,
    provoke_reset,
    provoke_slow_reader,
)

FAULTS_HEADER = (
    "| daemon | slow reader: fdscope send_q (ss Send-Q) | backlog + 4 connects while stopped | "
    "connection reset while stopped: fdscope (lsfd) |\n| --- | --- | --- | --- |")


def faults_row(d: Daemon) -> tuple[str, list[str]]:
    notes = []
    slow = "-"
    if d.spec.big_request or d.spec.protocol == "pg":
        res = provoke_slow_reader(d)
        if res.entry:
            slow = (f"{res.entry['socket']['send_q']} ({res.ss_before and res.ss_before['send_q']})"
                    f", pid {res.pid}")
        else:
            slow = "not found"
    over = provoke_overflow(d)
    full = over.full
    overflow = (f"{full['level'].upper()} {full['code']} (backlog {over.backlog}, "
                f"ListenOverflows +{over.overflows})" if full else
                f"no finding (backlog {over.backlog}, {dict(over.connect_errors)})")
    reset = provoke_reset(d)
    if reset.after:
        sock = reset.after["socket"] or {}
        lsfd = [m.split("lsfd says ")[-1] for m in reset.check.mismatches
                if f"fd {reset.after['fd']} " in m]
        said = f"{sock.get('proto')} {sock.get('state')}"
        reset_cell = f"{said} ({lsfd[0] if lsfd else 'agrees'})"
        notes += [f"  - reset: {m}" for m in reset.check.mismatches]
    else:
        reset_cell = "connection not found"
    return f"| {d.spec.name} | {slow} | {overflow} | {reset_cell} |", notes


def main(names: list[str]) -> int:
    rows, faults, details = [], [], []
    for name in names or list(SPECS):
        spec = SPECS[name]
        if missing_binaries(spec):
            print(f"{name}: {', '.join(missing_binaries(spec))} not installed", file=sys.stderr)
            return 1
        with Daemon(spec) as d:
            obs = observe(d)
            row, notes = faults_row(d)
        rows.append(markdown_rows(obs))
        faults.append(row)
        details.append(f"### {name}\n")
        details.append(f"- clients under churn: {obs.clients}; {obs.seconds:.1f} s")
        for title, log in (("idle", obs.idle), ("churn", obs.churn)):
            details.append(f"- {title} io_model by process: {dict(log.io_models)}")
            for label in sorted(log.counts):
                details.append(f"- {title}: {label} in {log.counts[label]}/{log.scans} scans: "
                               f"{log.examples[label]}")
        for title, check in (("idle", obs.idle_check), ("churn", obs.churn_check)):
            details.append(f"- cross-check {title}: {check.summary()}")
            details += [f"  - MISMATCH {m}" for m in check.mismatches]
        details += notes
        details.append("")
        print(rows[-1], faults[-1], sep="\n", file=sys.stderr)
    print(MARKDOWN_HEADER, *rows, "", FAULTS_HEADER, *faults, "", *details, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
