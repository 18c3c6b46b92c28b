"""`fdscope exporter`: what it exports for fixture processes with known truth
(tests/exporter_support.py), checked by promtool and scraped by a real Prometheus server that
evaluates deploy/'s alert rules; the textfile is never seen half-written; bad input is one line
and exit 2; SIGTERM and Ctrl-C end it with 0.

prometheus and promtool come from the Debian package prometheus (scripts/ci-deps): missing,
their tests skip, or fail where CI is set."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fdscope.exporter.collector import METRICS, FdCollector
from fdscope.exporter.groups import KINDS, OTHER, Group, Grouper, fold
from fdscope.exporter.output import parse_listen, write_textfile
from fdscope.parse.cgroup import systemd_unit
from fdscope.proc import Proc
from tests.daemons_support import find_binary
from tests.exporter_support import (
    ROLES,
    SCRIPT,
    families,
    free_port,
    group,
    samples,
    series,
    value,
)
from tests.inspect_support import Target, wait_for

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "deploy" / "prometheus" / "fdscope-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "fdscope-rules.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "fdscope-dashboard.json"
DOC = REPO / "docs" / "exporter.md"
FDSCOPE = [sys.executable, "-m", "fdscope"]


def need(tool: str) -> str:
    """The path of `tool` (Debian package prometheus), or skip; in CI, fail."""
    path = find_binary(tool)
    if path is None:
        why = f"{tool} not found (Debian package prometheus; scripts/ci-deps installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


@pytest.fixture(scope="module")
def fixtures():
    targets: dict[str, Target] = {}
    try:
        for role in ROLES:
            targets[role] = Target(SCRIPT, role, f"fdsx-group={role}")
        for role in ("select", "stale", "idle", "holder", "near"):
            targets[role].wait_sleeping(timeout=20)
        yield targets
    finally:
        for t in targets.values():
            t.close()


# ---------------------------------------------------------------------------------------------
# What one scrape exports, against the fixtures' own accounts


def _scrape(collector: FdCollector) -> dict:
    return samples(collector.exposition().decode())


@pytest.mark.timeout(120)
def test_group_series_match_the_fixtures_own_counts(fixtures):
    got = _scrape(FdCollector(top_pids=0))
    holder = fixtures["holder"].info
    g = group("holder")
    assert value(got, "fdscope_group_processes", group=g) == 1
    assert value(got, "fdscope_group_open_fds", group=g) == holder["fds"]
    for kind in KINDS:
        assert value(got, "fdscope_group_open_fds_by_kind", group=g, kind=kind) == \
            holder["kinds"].get(kind, 0), kind
    socks = {(lab["protocol"], lab["state"]): v
             for lab, v in series(got, "fdscope_group_sockets_by_state") if lab["group"] == g}
    assert socks == {("unix", "CONNECTED"): 2, ("tcp", "LISTEN"): 1, ("tcp", "ESTABLISHED"): 2}
    near = fixtures["near"].info
    assert value(got, "fdscope_group_open_fds", group=group("near")) == near["fds"] == 62
    assert value(got, "fdscope_group_worst_fd_used_ratio", group=group("near")) == \
        pytest.approx(62 / 64)
    assert value(got, "fdscope_group_min_headroom_fds", group=group("near")) == 2
    # select() with fd 1500 and the stale registration: exactly their groups
    for role in ROLES:
        assert value(got, "fdscope_group_select_risk", group=group(role)) == \
            (1 if role == "select" else 0), role
        assert value(got, "fdscope_group_stale_epoll_registrations", group=group(role)) == \
            (1 if role == "stale" else 0), role
    # host figures as the kernel has them
    with open("/proc/sys/fs/nr_open") as f:
        assert value(got, "fdscope_host_nr_open") == int(f.read())
    with open("/proc/sys/fs/file-nr") as f:
        assert value(got, "fdscope_host_file_handles_max") == int(f.read().split()[2])
    assert value(got, "fdscope_host_file_handles_allocated") > 0
    assert value(got, "fdscope_scrape_errors_total") == 0
    assert value(got, "fdscope_scrape_duration_seconds") > 0
    # the first scrape has no growth; the groups' processes add up to the host's
    assert not series(got, "fdscope_group_fd_growth_per_second")
    assert sum(v for _lab, v in series(got, "fdscope_group_processes")) == \
        value(got, "fdscope_host_processes")


@pytest.mark.timeout(120)
def test_growth_per_second_from_the_previous_scrape(fixtures):
    # a leaker of its own: the module's stops at 600 fds, and this test may run late
    with Target(SCRIPT, "leaker"):
        c = FdCollector()
        first = _scrape(c)
        time.sleep(2.5)
        second = _scrape(c)
    leaker = value(second, "fdscope_group_fd_growth_per_second", group=group("leaker"))
    opened = value(second, "fdscope_group_open_fds", group=group("leaker")) - \
        value(first, "fdscope_group_open_fds", group=group("leaker"))
    assert opened > 0  # 2 fds every 0.5 s
    assert leaker is not None and leaker > 0
    # the rate is the change over the time between the two scans (about 2.5 s)
    assert opened / 10 < leaker < opened / 1
    for role in ("holder", "idle", "near", "select", "stale"):
        assert value(second, "fdscope_group_fd_growth_per_second", group=group(role)) == 0


@pytest.mark.timeout(120)
def test_group_by_cmdline_regex_and_systemd_unit(fixtures):
    proc = Proc()
    rx = re.compile(r"fdsx-group=(\w+)")
    got = _scrape(FdCollector(proc, grouper=Grouper(proc, "cmdline-regex", [rx])))
    for role, t in fixtures.items():
        assert value(got, "fdscope_group_open_fds", group=role) == t.info["fds"] \
            or role == "leaker", role
    # a named group wins over the first group; no match: the process name
    rx2 = re.compile(r"(fdsx)-group=(?P<group>holder)")
    g = Grouper(proc, "cmdline-regex", [rx2])
    assert g.group_of(fixtures["holder"].pid, "x") == "holder"
    assert g.group_of(fixtures["idle"].pid, "fdsx-idle") == "fdsx-idle"
    by_unit = Grouper(proc, "systemd-unit")
    with open(f"/proc/{fixtures['idle'].pid}/cgroup") as f:
        want = systemd_unit(f.read()) or "-"
    assert by_unit.group_of(fixtures["idle"].pid, "x") == want


@pytest.mark.timeout(120)
def test_groups_are_capped_and_the_rest_add_up_in_other(fixtures):
    got = _scrape(FdCollector(max_groups=2))
    groups = {lab["group"]: v for lab, v in series(got, "fdscope_group_processes")}
    assert len(groups) <= 3 and OTHER in groups
    assert sum(groups.values()) == value(got, "fdscope_host_processes")
    assert value(got, "fdscope_scrape_groups_folded") >= 1
    # at risk first: the near-limit and the select() fixtures are kept by name, whatever else
    # runs on this host, unless other groups at risk outrank them by fds
    kept = set(groups) - {OTHER}
    assert len(kept) == 2
    # series count does not depend on fds: every group family has at most 3 label sets
    for name in METRICS:
        if name.startswith("fdscope_group_") and "by_" not in name:
            assert len(series(got, name)) <= 3, name


@pytest.mark.timeout(120)
def test_top_pids_are_the_ones_nearest_their_limit(fixtures):
    got = _scrape(FdCollector(top_pids=3))
    rows = series(got, "fdscope_process_fd_used_ratio")
    assert 1 <= len(rows) <= 3
    assert len(series(got, "fdscope_process_open_fds")) == len(rows)
    near = fixtures["near"]
    ratios = {int(lab["pid"]): v for lab, v in rows}
    if near.pid not in ratios:  # only processes even nearer their limits may push it out
        assert min(ratios.values()) >= 62 / 64
    else:
        lab = next(lab for lab, _v in rows if int(lab["pid"]) == near.pid)
        assert lab == {"pid": str(near.pid), "name": "fdsx-near", "group": "fdsx-near"}
        assert value(got, "fdscope_process_fd_soft_limit", **lab) == 64
        assert value(got, "fdscope_process_open_fds", **lab) == 62


def test_a_failed_scrape_is_counted_and_logged_once(tmp_path):
    """No proc tree at the root: the scrape fails, the endpoint still answers with the
    exporter's own series, the error is counted on every scrape and logged once."""
    logged: list[str] = []
    c = FdCollector(Proc(str(tmp_path / "no-proc")), log=logged.append)
    for n in (1, 2):
        got = _scrape(c)
        assert value(got, "fdscope_scrape_errors_total") == n
        assert value(got, "fdscope_host_processes") is None
        assert value(got, "fdscope_scrape_duration_seconds") >= 0
    assert len(logged) == 1 and logged[0].startswith("scrape: "), logged

    def boom() -> None:
        raise RuntimeError("bug")

    c.scanner.scan = boom  # type: ignore[method-assign]
    assert value(_scrape(c), "fdscope_scrape_errors_total") == 3
    assert logged[-1] == "scrape: internal error: RuntimeError: bug"


def test_tables_kept_for_20_scrape_intervals_unless_told():
    clock = [1000.0]
    auto, fixed = FdCollector(), FdCollector(full_every=0)
    for c in (auto, fixed):
        c.scanner.clock = lambda: clock[0]
    for gap, want in ((0, 300), (60, 1200), (5, 300), (3600, 72000)):
        clock[0] += gap
        for c in (auto, fixed):
            c.exposition()
        assert auto.scanner.full_every == want and fixed.scanner.full_every == 0


def test_fold_adds_sums_max_and_min():
    def g(procs, fds, ratio, head, risk=0):
        return Group(processes=procs, open_fds=fds, worst_ratio=ratio, min_headroom=head,
                     select_risk=risk, growth=1.0)

    groups = {"a": g(1, 500, 0.1, 900), "b": g(2, 100, 0.9, 10), "c": g(3, 50, 0.2, 800),
              "d": g(1, 40, 0.01, 5000, risk=1), OTHER: g(1, 7, 0.3, 100)}
    kept, folded = fold(groups, 2)
    # at risk first (b: 90% used, d: select), then the biggest (a is folded)
    assert set(kept) == {"b", "d", OTHER} and folded == 2
    o = kept[OTHER]
    assert (o.processes, o.open_fds, o.worst_ratio, o.min_headroom, o.growth) == \
        (5, 557, 0.3, 100, 3.0)
    kept, folded = fold(groups, 100)
    assert set(kept) == set(groups) and folded == 0


def test_unix_states_dump_agrees_with_the_full_dump(tmp_path):
    from fdscope import netdiag

    a, b = socket.socketpair()
    lst = socket.socket(socket.AF_UNIX)
    lst.bind(str(tmp_path / "s"))
    lst.listen()
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b, lst, dgram:
        mine = {os.fstat(s.fileno()).st_ino: s for s in (a, b, lst, dgram)}
        fast, full = netdiag.unix_states(), netdiag.unix_sockets()
        got = {netdiag.UNIX_STATES[fast[ino]] for ino in (os.fstat(a.fileno()).st_ino,
                                                          os.fstat(b.fileno()).st_ino)}
        assert got == {"CONNECTED"}
        assert netdiag.UNIX_STATES[fast[os.fstat(lst.fileno()).st_ino]] == "LISTEN"
        assert netdiag.UNIX_STATES[fast[os.fstat(dgram.fileno()).st_ino]] == "UNCONNECTED"
        for ino in mine:
            assert fast[ino] == full[ino][1]


def test_kinds_are_the_documented_six():
    from fdscope.exporter.groups import kinds_of
    from fdscope.parse.fdlink import FD_TYPES

    assert set(kinds_of({t: 1 for t in FD_TYPES})) == set(KINDS)
    assert sum(kinds_of({t: 1 for t in FD_TYPES}).values()) == len(FD_TYPES)


# ---------------------------------------------------------------------------------------------
# Parsers: --listen, /proc/PID/cgroup


@pytest.mark.parametrize("text,want", [
    ("127.0.0.1:9790", ("127.0.0.1", 9790)), ("0.0.0.0:0", ("0.0.0.0", 0)),
    ("[::1]:9790", ("::1", 9790)), ("[::]:65535", ("::", 65535)),
    ("localhost:80", ("localhost", 80)),
])
def test_parse_listen(text, want):
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", [
    "9790", ":9790", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:٣", "127.0.0.1:-1",
    "::1:9790", "[::1]9790", "[::1", "127.0.0.1:9790\n", "host name:1", "", "127.0.0.1:+80",
    "127.0.0.1:0x50", "a\x1b:1",
])
def test_parse_listen_refuses(text):
    with pytest.raises(ValueError):
        parse_listen(text)


@pytest.mark.parametrize("text,want", [
    ("0::/system.slice/nginx.service\n", "nginx.service"),
    ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service\n", "foo.service"),
    ("0::/system.slice/docker-3f2a.scope\n", "docker-3f2a.scope"),
    ("0::/system.slice/postgresql@15-main.service/payload\n", "postgresql@15-main.service"),
    ("0::/init.scope\n", "init.scope"),
    ("0::/\n", "-.slice"),
    ("0::/user.slice\n", "user.slice"),
    ("12:pids:/x\n1:name=systemd:/system.slice/cron.service\n0::/other.service\n", "cron.service"),
    ("0::/docker/3f2a\n", "3f2a"),
    ("11:memory:/x\n", None), ("", None), ("garbage", None), ("0::relative\n", None),
])
def test_systemd_unit(text, want):
    assert systemd_unit(text) == want


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_systemd_unit_fuzz(text):
    got = systemd_unit(text)
    assert got is None or (isinstance(got, str) and got and "/" not in got)


# ---------------------------------------------------------------------------------------------
# The contract: names, types, help, docs, rules and dashboard agree


def test_every_metric_documented_and_every_used_name_exists():
    doc = DOC.read_text()
    for name, m in METRICS.items():
        assert f"`{name}`" in doc, f"{name} is not in docs/exporter.md"
        assert m.help and m.help.endswith("."), name
        assert name.startswith("fdscope_") and m.kind in ("gauge", "counter")
        assert (m.kind == "counter") == name.endswith("_total"), name
    used = set(re.findall(r"\bfdscope_[a-z_]+", RULES.read_text() + DASHBOARD.read_text()))
    assert used and used <= set(METRICS), used - set(METRICS)
    json.loads(DASHBOARD.read_text())


def test_exposition_has_each_family_with_help_and_type(fixtures):
    c = FdCollector(top_pids=2)
    c.exposition()
    text = c.exposition().decode()  # the second: growth present
    fams = families(text)
    for name, m in METRICS.items():
        base = name.removesuffix("_total")
        assert base in fams, name
        assert fams[base].type == m.kind and fams[base].documentation == m.help
        for s in fams[base].samples:
            assert set(s.labels) == set(m.labels), (name, s.labels)


# ---------------------------------------------------------------------------------------------
# promtool


@pytest.mark.timeout(120)
def test_promtool_check_metrics_is_clean(fixtures):
    promtool = need("promtool")
    once = subprocess.run(FDSCOPE + ["exporter", "--once", "--top-pids", "3"],
                          capture_output=True, timeout=90, check=True)
    assert once.stderr == b""
    c = FdCollector(top_pids=3, max_groups=3)
    c.exposition()
    for text in (once.stdout, c.exposition()):
        assert b"fdscope_group_open_fds{" in text
        res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             timeout=60)
        assert res.returncode == 0 and res.stdout == b"" and res.stderr == b"", res


@pytest.mark.timeout(120)
def test_promtool_rule_unit_tests_pass():
    promtool = need("promtool")
    res = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


# ---------------------------------------------------------------------------------------------
# A real Prometheus server scrapes the exporter and evaluates the rules


def _start_exporter(*args: str) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen(FDSCOPE + ["exporter", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()  # type: ignore[union-attr]
    m = re.fullmatch(r"fdscope exporter: serving http://(\S+)/metrics\n", line)
    if m is None:
        p.kill()
        _out, err = p.communicate(timeout=10)
        raise AssertionError(f"exporter did not start: {line}{err}")
    return p, m.group(1)


def _stop(p: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[int, str]:
    if p.poll() is None:
        p.send_signal(sig)
    try:
        _out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        _out, err = p.communicate(timeout=10)
        raise AssertionError("exporter did not stop within 30 s") from None
    return p.returncode, err


def _get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


class Prometheus:
    def __init__(self, binary: str, tmp: Path, target: str, rules: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = tmp / "prometheus.yml"
        conf.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {rules}\n"
            f"scrape_configs:\n  - job_name: fdscope\n    static_configs:\n"
            f"      - targets: ['{target}']\n")
        self.log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed in close()
        self.p = subprocess.Popen(
            [binary, f"--config.file={conf}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            if self.p.poll() is not None:
                raise AssertionError(f"prometheus exited: {(tmp / 'prometheus.log').read_text()}")
            try:
                return _get(self.url + "/-/ready", timeout=2) is not None
            except OSError:
                return False

        if not wait_for(ready, timeout=60, interval=0.2):
            self.close()
            raise AssertionError("prometheus not ready in 60 s")

    def query(self, expr: str) -> list[dict]:
        body = json.loads(_get(self.url + "/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr})))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def alerts(self) -> list[dict]:
        return json.loads(_get(self.url + "/api/v1/alerts"))["data"]["alerts"]

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
        self.log.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_prometheus_scrapes_and_alerts(fixtures, tmp_path):
    binary = need("prometheus")
    # the rules as shipped, with every `for:` cut to 1 s: the test cannot wait 15 minutes
    rules = tmp_path / "rules.yml"
    rules.write_text(re.sub(r"(?m)^(\s+for:) \S+$", r"\1 1s", RULES.read_text()))
    exporter, target = _start_exporter("--listen", "127.0.0.1:0", "--top-pids", "3")
    prom = None
    try:
        prom = Prometheus(binary, tmp_path, target, rules)
        holder = fixtures["holder"].info
        g = group("holder")

        def holder_seen() -> list[dict]:
            return prom.query(f'fdscope_group_open_fds{{group="{g}"}}')

        got = wait_for(holder_seen, timeout=90, interval=0.5)
        assert got, "no fdscope_group_open_fds series for the holder fixture in 90 s"
        assert float(got[0]["value"][1]) == holder["fds"]
        assert got[0]["metric"]["job"] == "fdscope" and got[0]["metric"]["instance"] == target
        kinds = {r["metric"]["kind"]: float(r["value"][1]) for r in
                 prom.query(f'fdscope_group_open_fds_by_kind{{group="{g}"}}')}
        assert kinds == {k: holder["kinds"].get(k, 0) for k in KINDS}
        assert prom.query('up{job="fdscope"} == 1')

        want = {group("near"): {("FdHeadroomLow", "warning"), ("FdHeadroomLow", "critical")},
                group("select"): {("SelectFdSetsizeRisk", "critical")},
                group("stale"): {("StaleEpollRegistrations", "warning")}}

        def firing() -> dict[str, set[tuple[str, str]]]:
            out: dict[str, set[tuple[str, str]]] = {}
            for a in prom.alerts():
                if a["state"] == "firing" and a["labels"].get("group", "").startswith("fdsx-"):
                    out.setdefault(a["labels"]["group"], set()).add(
                        (a["labels"]["alertname"], a["labels"]["severity"]))
            return out

        def all_fired() -> bool:
            now = firing()
            return all(want[k] <= now.get(k, set()) for k in want)

        assert wait_for(all_fired, timeout=90, interval=1), firing()
        now = firing()
        # no false alarm: the quiet fixtures have none, the others only theirs (the leaker
        # may also be predicted to run out, and be called a leak)
        for role in ("holder", "idle"):
            assert group(role) not in now, now
        for k, alerts in want.items():
            assert now[k] == alerts, (k, now[k])
        assert now.get(group("leaker"), set()) <= {("FdLeak", "warning"),
                                                   ("FdExhaustionPredicted", "warning")}
        # the near fixture's per-pid series, and the dashboard's queries run on a real server
        near = prom.query(f'fdscope_process_fd_used_ratio{{pid="{fixtures["near"].pid}"}}')
        assert not near or float(near[0]["value"][1]) == pytest.approx(62 / 64)
        dash = json.loads(DASHBOARD.read_text())
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        for expr in exprs:
            prom.query(expr.replace("$instance", ".*").replace("$group", ".*"))
        assert prom.query("fdscope_scrape_duration_seconds > 0")
    finally:
        if prom is not None:
            prom.close()
        code, err = _stop(exporter)
    assert code == 0, err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Textfile mode


def test_textfile_replacement_is_atomic(tmp_path):
    """A reader racing a writer sees one whole version or the other, never a mix or a part:
    payloads of 4 MB (many write() calls each) alternate as fast as they can be written."""
    path = str(tmp_path / "fdscope.prom")
    payloads = [(f"# v{i}\n".encode() + bytes([65 + i]) * (4 << 20)) for i in range(2)]
    write_textfile(path, payloads[0])
    stop = threading.Event()
    writes = [0]

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i ^= 1
            write_textfile(path, payloads[i])
            writes[0] += 1

    t = threading.Thread(target=writer)
    t.start()
    reads = 0
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline or writes[0] < 5:
            with open(path, "rb") as f:
                data = f.read()
            assert data in payloads, (len(data), data[:8])
            reads += 1
    finally:
        stop.set()
        t.join()
    assert reads > 5 and writes[0] >= 5
    assert os.listdir(tmp_path) == ["fdscope.prom"]  # no temporary file left
    assert os.stat(path).st_mode & 0o777 == 0o644


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_textfile_mode_writes_whole_files_until_sigterm(tmp_path, fixtures):
    out = tmp_path / "collector"
    out.mkdir()
    p = subprocess.Popen(FDSCOPE + ["exporter", "--textfile", str(out), "--interval", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = out / "fdscope.prom"
    seen: set[int] = set()
    try:
        assert wait_for(path.exists, timeout=60, interval=0.05)
        deadline = time.monotonic() + 60
        while len(seen) < 3 and time.monotonic() < deadline:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise AssertionError("the textfile disappeared between versions") from None
            with os.fdopen(fd, "rb") as f:
                seen.add(os.fstat(f.fileno()).st_ino)
                text = f.read().decode()
            # whole: ends with the last family, every sample parses
            assert text.endswith("\n") and "fdscope_scrape_errors_total " in text
            got = samples(text)
            assert value(got, "fdscope_group_open_fds", group=group("holder")) == \
                fixtures["holder"].info["fds"]
            time.sleep(0.05)
        assert len(seen) >= 3, "fewer than 3 versions in 60 s at --interval 1"
    finally:
        code, err = _stop(p)
    assert code == 0 and err == "", err
    assert sorted(os.listdir(out)) == ["fdscope.prom"]


def test_once_with_textfile_writes_one_file(tmp_path):
    res = subprocess.run(FDSCOPE + ["exporter", "--once", "--textfile", str(tmp_path)],
                         capture_output=True, text=True, timeout=90)
    assert res.returncode == 0 and res.stdout == "" and res.stderr == "", res
    text = (tmp_path / "fdscope.prom").read_text()
    assert value(samples(text), "fdscope_host_processes") >= 1


# ---------------------------------------------------------------------------------------------
# Serving: loopback by default, signals, bad input


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_metrics_and_stops_cleanly_on_signal(sig):
    p, addr = _start_exporter("--listen", "127.0.0.1:0")
    try:
        body = _get(f"http://{addr}/metrics", timeout=60).decode()
        assert "fdscope_host_processes " in body
        assert addr.startswith("127.0.0.1:")
    finally:
        code, err = _stop(p, sig)
    assert code == 0 and err == "", (code, err)


@pytest.mark.timeout(60)
def test_default_listen_is_loopback():
    p = subprocess.Popen(FDSCOPE + ["exporter"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stderr.readline()  # type: ignore[union-attr]
    code, err = _stop(p)
    if line.startswith("fdscope: "):  # 9790 taken on this machine: still loopback, exit 2
        assert code == 2 and "127.0.0.1:9790" in line and err == "", (line, err)
    else:
        assert line == "fdscope exporter: serving http://127.0.0.1:9790/metrics\n"
        assert code == 0


def _bad(*args: str) -> str:
    res = subprocess.run(FDSCOPE + ["exporter", *args], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2, (args, res.returncode, res.stderr)
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fdscope: "), (args, res.stderr)
    return lines[0]


@pytest.mark.timeout(120)
def test_bad_input_is_one_line_and_exit_2(tmp_path):
    assert "no port" in _bad("--listen", "9790")
    _bad("--listen", "127.0.0.1:99999")
    _bad("--listen", ":9790")
    _bad("--listen", "127.0.0.1:٣")
    _bad("--listen", "192.0.2.1:9790")  # TEST-NET-1: not an address of this host
    _bad("--once", "--listen", "127.0.0.1:0")
    _bad("--interval", "5")
    _bad("--textfile", str(tmp_path), "--interval", "nan")
    _bad("--group-by", "cmdline-regex")
    _bad("--group-by", "cmdline-regex", "--group-regex", "(")
    _bad("--group-regex", "x")
    _bad("--top-pids", "-1")
    _bad("--max-groups", "0")
    _bad("--group-by", "uid")


@pytest.mark.timeout(60)
def test_port_in_use_is_exit_2():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = _bad("--listen", f"127.0.0.1:{port}")
    assert f"127.0.0.1:{port}" in line and "in use" in line


@pytest.mark.timeout(60)
def test_unwritable_textfile_dir_is_exit_2(tmp_path):
    assert "not a directory" in _bad("--textfile", str(tmp_path / "missing"))
    (tmp_path / "file").write_text("")
    assert "not a directory" in _bad("--textfile", str(tmp_path / "file"))
    assert "cannot write" in _bad("--textfile", "/proc")  # no files there, not even for root
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert "cannot write" in _bad("--textfile", str(ro))
