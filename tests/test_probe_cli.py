"""`fdscope probe` through the CLI: JSON contract, text output, exit codes, usage errors."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

STEP_FIELDS = {"action", "observed", "expected", "ok"}
PROBE_FIELDS = {"name", "transport", "steps", "verdict", "note"}


def test_all_json_schema(invoke):
    res = invoke("probe", "--all", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["schema"] == "fdscope.probe/1"
    assert doc["kernel"] == os.uname().release
    assert doc["probes"]
    for p in doc["probes"]:
        assert PROBE_FIELDS <= set(p)
        assert p["verdict"] in ("matches", "deviates", "skipped")
        assert isinstance(p["note"], str)
        for s in p["steps"]:
            assert STEP_FIELDS <= set(s)
            assert s["ok"] in (True, False, None)
    assert sum(doc["summary"].values()) == len(doc["probes"])


def test_bare_probe_runs_trigger_both_modes(invoke):
    res = invoke("probe")
    assert res.exit_code == 0, res.output
    assert "trigger (level) on socketpair: matches" in res.output
    assert "trigger (edge) on socketpair: matches" in res.output
    assert res.output.startswith(f"fdscope probe: Linux {os.uname().release}")
    assert "summary" in res.output  # two runs -> summary table


def test_trigger_edge_pipe_text(invoke):
    res = invoke("probe", "--trigger", "edge", "--transport", "pipe")
    assert res.exit_code == 0, res.output
    assert "trigger (edge) on pipe: matches" in res.output
    assert "(level)" not in res.output
    assert "5.14" in res.output  # the pipe note names the kernel change


def test_single_probe_no_summary_and_sources(invoke):
    res = invoke("probe", "rdhup", "-v")
    assert res.exit_code == 0, res.output
    assert "rdhup on socketpair: matches" in res.output
    assert "epoll_ctl(2) EPOLLRDHUP" in res.output  # the source column
    assert "summary" not in res.output


def test_deviation_exits_1_and_names_step(invoke, monkeypatch):
    from fdscope.probes import rdhup
    from fdscope.probes.core import Expect

    real = rdhup.expectations

    def lying(ctx, kernel):
        exps = real(ctx, kernel)
        exps[3] = Expect("read_eof", "read again: bytes", 7, "a wrong claim")
        return exps

    monkeypatch.setattr(rdhup, "expectations", lying)
    res = invoke("probe", "rdhup")
    assert res.exit_code == 1
    assert "deviates at step 4 (read again: bytes)" in res.output
    res = invoke("probe", "rdhup", "--json")
    doc = json.loads(res.output)
    assert res.exit_code == 1
    assert doc["probes"][0]["deviating_step"] == 4


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--trigger", "sideways"], "'sideways' is not one of"),
        (["bogus"], "'bogus' is not one of"),
        (["--transport", "udp"], "'udp' is not one of"),
        (["oneshot", "--trigger", "edge"], "--trigger applies to the trigger probe"),
        (["fdsetsize", "--transport", "tcp"], "fdsetsize takes no --transport"),
        (["rdhup", "--transport", "pipe"], "rdhup runs on socketpair or tcp"),
        (["oneshot", "--all"], "not both"),
    ],
)
def test_usage_errors_one_line_exit_2(args, fragment):
    proc = subprocess.run([sys.executable, "-m", "fdscope", "probe", *args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fdscope: "), proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr


def test_help_lists_probes_and_examples(invoke):
    res = invoke("probe", "--help")
    assert res.exit_code == 0
    for name in ("trigger", "oneshot", "fdsetsize", "stale", "exclusive", "rdhup"):
        assert name in res.output
    assert "Examples:" in res.output and "fdscope probe --all" in res.output


def test_entry_point_fdsetsize_skipped_under_low_hard_limit():
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))

    proc = subprocess.run([sys.executable, "-m", "fdscope", "probe", "fdsetsize", "--json"],
                          capture_output=True, text=True, timeout=30, preexec_fn=low_limit)
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(proc.stdout)["probes"][0]
    assert probe["verdict"] == "skipped"
    assert "hard RLIMIT_NOFILE is 512" in probe["reason"]
