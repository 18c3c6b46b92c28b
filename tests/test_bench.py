"""`fdscope bench scaling|register`, the growth fit, the plots, the asyncio-uvloop server under
verified load, and `fdscope load --processes`.

What must be observed: select refused (not skipped) once an fd >= FD_SETSIZE is in the set, with
CPython's ValueError as the reason; poll's cost rising with idle fds while epoll's does not run
away; bytes per call as poll(2) and select(2) copy them; a plot file that is a real PNG or SVG;
one `fdscope:` line and exit 5 without matplotlib; totals over P load processes that add up
exactly, and a corrupted byte still caught when the load is split."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from fdscope.bench.fit import growth, least_squares
from fdscope.loadpool import shares
from tests.servers_support import server
from tests.test_load import bad_server, flip_at

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROW_KEYS = {"mechanism", "idle_fds", "status", "reason", "watched_fds", "max_fd", "events",
            "event_us", "wait_us", "seconds"}


def _rows(doc: dict[str, Any], mech: str) -> dict[int, dict[str, Any]]:
    return {r["idle_fds"]: r for r in doc["rows"] if r["mechanism"] == mech}


@pytest.fixture(scope="module")
def quick_scaling(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], Path]:
    """One `bench scaling --quick --json --plot X.png` run, shared by the tests below."""
    from click.testing import CliRunner

    from fdscope.cli.main import cli

    png = tmp_path_factory.mktemp("bench") / "scaling.png"
    result = CliRunner().invoke(cli, ["bench", "scaling", "--quick", "--json", "--plot", str(png)],
                                catch_exceptions=False)
    return result, json.loads(result.stdout), png


# -- the fit ---------------------------------------------------------------------------------
def test_fit_recovers_an_exact_line() -> None:
    sizes = [1, 10, 100, 1000, 10000]
    g = growth(sizes, [3 + 0.012 * n for n in sizes])
    assert g is not None
    assert g.per_1000 == pytest.approx(12.0)
    assert g.r2 == pytest.approx(1.0)
    assert g.ci95_per_1000 == pytest.approx(0.0, abs=1e-9)
    assert g.verdict == "grows"
    assert [s[3] for s in g.steps] == pytest.approx([12.0] * 4)
    assert [s[2] for s in g.steps] == pytest.approx([0.108, 1.08, 10.8, 108.0])


def test_fit_calls_noise_flat() -> None:
    # A constant cost with +-3% noise that happens to tilt: no growth to report.
    g = growth([1, 10, 100, 1000, 10000], [8.0, 8.2, 7.8, 8.1, 8.2])
    assert g is not None
    assert g.verdict == "flat"
    assert abs(g.per_1000) < 0.1


def test_fit_flat_when_the_rise_is_tiny_even_if_significant() -> None:
    # Perfectly linear but rising 1% over the range: real, and too small to call growth.
    g = growth([1, 1001, 2001], [100.0, 100.5, 101.0])
    assert g is not None and g.r2 == pytest.approx(1.0)
    assert g.verdict == "flat"


def test_fit_edge_cases() -> None:
    assert least_squares([1.0], [2.0]) is None
    assert least_squares([5.0, 5.0], [1.0, 2.0]) is None  # no spread in x
    two = least_squares([0.0, 10.0], [1.0, 3.0])
    assert two is not None and two.slope == pytest.approx(0.2) and two.slope_ci95 is None
    flat = least_squares([1.0, 2.0, 3.0], [4.0, 4.0, 4.0])
    assert flat is not None and flat.slope == 0 and flat.r2 is None


# -- bench scaling ---------------------------------------------------------------------------
@pytest.mark.slow
def test_scaling_quick_document(quick_scaling: tuple[Any, dict[str, Any], Path]) -> None:
    result, doc, _ = quick_scaling
    assert result.exit_code == 0, result.stderr
    assert doc["schema"] == "fdscope.bench/1" and doc["benchmark"] == "scaling"
    assert doc["ok"] is True and doc["problems"] == []
    assert doc["config"]["quick"] is True and doc["config"]["idle"] == [1, 100, 2000]
    assert doc["elapsed_s"] < 30  # the --quick promise is 10 s on an idle 2-core machine
    names = [m["name"] for m in doc["mechanisms"]]
    assert names == ["select", "poll", "epoll", "epoll-et", "selectors", "asyncio",
                     "asyncio-uvloop", "io_uring"]
    assert len(doc["rows"]) == len(names) * 3
    for r in doc["rows"]:
        assert set(r) == ROW_KEYS
        if r["status"] == "measured":
            assert r["events"] >= 30
            assert set(r["event_us"]) == {"count", "median", "p99", "mean"}
            assert 0 < r["event_us"]["median"] <= r["event_us"]["p99"]
            assert r["watched_fds"] == r["idle_fds"] + 1
    # uvloop's epoll_wait is inside libuv: no wait figure, and nothing pretends otherwise.
    assert all(r["wait_us"] is None for r in _rows(doc, "asyncio-uvloop").values())
    assert all(r["wait_us"] is not None for r in _rows(doc, "poll").values())
    for name in names:
        g = doc["growth"][name]
        if name == "select":
            assert g["from_idle"] == 1 and g["to_idle"] == 100  # 2000 was refused
        assert g["verdict"] in ("grows", "flat") and g["points"] >= 2


@pytest.mark.slow
def test_scaling_refuses_select_above_fd_setsize(
        quick_scaling: tuple[Any, dict[str, Any], Path]) -> None:
    _, doc, _ = quick_scaling
    row = _rows(doc, "select")[2000]
    assert row["status"] == "refused"
    assert row["max_fd"] >= 1024 and row["events"] == 0 and row["event_us"] is None
    assert "FD_SETSIZE 1024" in row["reason"] and "ValueError" in row["reason"]
    assert _rows(doc, "select")[100]["status"] == "measured"
    assert _rows(doc, "poll")[2000]["status"] == "measured"  # poll has no such ceiling


@pytest.mark.slow
def test_scaling_poll_grows_and_epoll_does_not(
        quick_scaling: tuple[Any, dict[str, Any], Path]) -> None:
    # Relative figures only (the machine is shared): poll scans 2000 idle fds per call, epoll
    # looks at its ready list.
    _, doc, _ = quick_scaling
    poll, epoll = _rows(doc, "poll"), _rows(doc, "epoll")
    assert poll[2000]["event_us"]["median"] > 5 * poll[1]["event_us"]["median"]
    assert epoll[2000]["event_us"]["median"] < 4 * epoll[1]["event_us"]["median"]
    assert epoll[2000]["event_us"]["median"] * 5 < poll[2000]["event_us"]["median"]
    assert doc["growth"]["poll"]["verdict"] == "grows"


@pytest.mark.slow
def test_scaling_plot_is_a_png(quick_scaling: tuple[Any, dict[str, Any], Path]) -> None:
    _, _, png = quick_scaling
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


@pytest.mark.slow
def test_plot_svg_is_valid_xml(quick_scaling: tuple[Any, dict[str, Any], Path],
                               tmp_path: Path) -> None:
    from fdscope.bench.plot import plot_scaling

    _, doc, _ = quick_scaling
    svg = tmp_path / "scaling.svg"
    plot_scaling(doc, str(svg))
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = svg.read_text()
    assert "poll" in text and "epoll" in text  # the legend names the mechanisms


def test_text_output_has_growth_lines(invoke) -> None:  # type: ignore[no-untyped-def]
    r = invoke("bench", "scaling", "--idle", "1,300", "--mechanisms", "poll,epoll",
               "--seconds", "0.02", "--min-events", "20")
    assert r.exit_code == 0, r.stderr
    assert "cost per delivered event" in r.stdout
    assert "poll: +" in r.stdout and "µs per 1,000 idle fds" in r.stdout
    assert "epoll: " in r.stdout


def test_missing_matplotlib_is_one_line_exit_5(invoke, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    out = tmp_path / "x.png"
    for cmd in ("scaling", "register"):
        r = invoke("bench", cmd, "--quick", "--plot", str(out))
        assert r.exit_code == 5
        assert r.stderr.startswith("fdscope: ") and r.stderr.count("\n") == 1
        assert "matplotlib" in r.stderr and "fdscope[plot]" in r.stderr
        assert r.stdout == ""  # refused before measuring anything
    assert not out.exists()


def test_missing_uvloop(invoke, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from fdscope.bench.scaling import ScalingConfig, run_scaling

    monkeypatch.setitem(sys.modules, "uvloop", None)
    # Asked for by name: exit 5 before running.
    r = invoke("bench", "scaling", "--mechanisms", "epoll,asyncio-uvloop")
    assert r.exit_code == 5 and "fdscope[uvloop]" in r.stderr
    # Part of the default set: a row that says why, and the rest runs.
    doc = run_scaling(ScalingConfig(idle=(1,), mechanisms=("epoll", "asyncio-uvloop"),
                                    seconds=0.01, min_events=10))
    row = _rows(doc, "asyncio-uvloop")[1]
    assert row["status"] == "unavailable" and "uvloop is not installed" in row["reason"]
    assert _rows(doc, "epoll")[1]["status"] == "measured" and doc["ok"]
    # The server model refuses to start, with one line and exit 5.
    r = invoke("serve", "asyncio-uvloop", "--port", "0")
    assert r.exit_code == 5
    assert r.stderr.startswith("fdscope: asyncio-uvloop needs uvloop") and r.stderr.count("\n") == 1


@pytest.mark.parametrize("args", [
    ["scaling", "--idle", "1,x"], ["scaling", "--idle", "0"], ["scaling", "--mechanisms", "kqueue"],
    ["scaling", "--plot", "out.gif"], ["register", "--fds", ""], ["scaling", "--active", "0"],
])
def test_bench_usage_errors(invoke, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    r = invoke("bench", *args)
    assert r.exit_code == 2
    assert r.stderr.startswith("fdscope: ") and r.stderr.count("\n") == 1


def _limited(soft: int, hard: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return apply


@pytest.mark.slow
def test_soft_limit_raised_and_hard_limit_reported() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2500:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} too low for this test")
    base = [sys.executable, "-m", "fdscope", "bench", "scaling", "--mechanisms", "poll,epoll",
            "--seconds", "0.02", "--min-events", "10", "--json"]
    # Soft 512: the run raises its own soft limit for 2000 idle fds, and says so.
    r = subprocess.run([*base, "--idle", "1,2000"], capture_output=True, text=True, timeout=60,
                       preexec_fn=_limited(512, hard))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["rlimit_nofile_raised_to"] >= 2000
    assert all(row["status"] == "measured" for row in doc["rows"])
    # Hard 600: 2000 idle fds cannot be had; those rows say why, the rest is measured, exit 1.
    r = subprocess.run([*base, "--idle", "1,2000"], capture_output=True, text=True, timeout=60,
                       preexec_fn=_limited(600, 600))
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    rows = {(x["mechanism"], x["idle_fds"]): x for x in doc["rows"]}
    assert rows[("poll", 1)]["status"] == "measured"
    for mech in ("poll", "epoll"):
        assert rows[(mech, 2000)]["status"] == "refused"
        assert "hard RLIMIT_NOFILE is 600" in rows[(mech, 2000)]["reason"]
    assert doc["ok"] is False and doc["problems"]


# -- bench register --------------------------------------------------------------------------
@pytest.mark.slow
def test_register_quick(invoke, tmp_path) -> None:  # type: ignore[no-untyped-def]
    svg = tmp_path / "register.svg"
    r = invoke("bench", "register", "--quick", "--json", "--plot", str(svg))
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "fdscope.bench/1" and doc["benchmark"] == "register"
    rows = {(x["mechanism"], x["fds"]): x for x in doc["rows"]}
    for n in (1, 100, 2000):
        assert rows[("poll", n)]["bytes_in_per_call"] == 8 * n
        assert rows[("poll", n)]["bytes_out_per_call"] == 2 * n
        assert rows[("poll (copy only)", n)]["bytes_in_per_call"] == 8 * n
        ep = rows[("epoll", n)]
        assert ep["bytes_in_per_call"] == 0 and ep["setup_syscalls"] == n
        assert ep["bytes_once"] == doc["epoll_event_size"] * n
    sel = rows[("select", 100)]
    # nfds = highest fd + 1 rounded up to whole longs, for each of the three sets, both ways.
    assert sel["bytes_in_per_call"] == sel["bytes_out_per_call"]
    assert sel["bytes_in_per_call"] % 24 == 0 and 3 * 16 <= sel["bytes_in_per_call"] <= 3 * 128
    assert rows[("select", 2000)]["status"] == "refused"
    assert "FD_SETSIZE" in rows[("select", 2000)]["reason"]
    # Looking at 2000 fds costs more than copying their 16 KB array in and 4 KB out.
    assert (rows[("poll", 2000)]["call_us"]["median"]
            > 3 * rows[("poll (copy only)", 2000)]["call_us"]["median"])
    assert [b["fds"] for b in doc["breakeven"]] == [1, 100, 2000]
    assert ET.parse(svg).getroot().tag.endswith("svg")


# -- the asyncio-uvloop server and load --processes ------------------------------------------
@pytest.mark.slow
def test_uvloop_server_under_verified_load_loses_nothing(invoke) -> None:  # type: ignore[no-untyped-def]
    with server("asyncio-uvloop") as srv:
        assert srv.listening["loop"].startswith("uvloop ")
        r = invoke("load", f"127.0.0.1:{srv.port}", "-c", "20", "-m", "25", "--size", "1-64k",
                   "--json", "--timeout", "10")
        code, stopped = srv.stop()
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["ok"], doc["verdict"]
    assert doc["messages_ok"] == doc["messages_expected"] == 500
    assert doc["bytes_lost"] == 0 and doc["bytes_verified"] == doc["bytes_sent"]
    assert code == 0 and stopped is not None
    assert stopped["bytes_in"] == stopped["bytes_out"] == doc["bytes_sent"]
    assert stopped["closed"] == {"eof": 20}


def test_shares_are_exact() -> None:
    for total in (1, 2, 7, 100, 1001):
        for parts in range(1, min(total, 9) + 1):
            s = shares(total, parts)
            assert sum(n for _, n in s) == total
            assert max(n for _, n in s) - min(n for _, n in s) <= 1
            assert [f for f, _ in s] == [sum(n for _, n in s[:i]) for i in range(parts)]


@pytest.mark.slow
def test_load_processes_totals_add_up(invoke) -> None:  # type: ignore[no-untyped-def]
    with server("epoll") as srv:
        r = invoke("load", f"127.0.0.1:{srv.port}", "-c", "7", "-m", "40", "--size", "1-20000",
                   "--processes", "2", "--json")
        code, stopped = srv.stop()
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["ok"], doc["verdict"]
    assert doc["processes"] == 2
    parts = doc["per_process"]
    assert [p["connections"] for p in parts] == [4, 3]
    assert [p["first_connection"] for p in parts] == [0, 4]
    assert len({p["pid"] for p in parts}) == 2
    assert doc["messages_ok"] == doc["messages_expected"] == 280
    assert doc["messages_ok"] == sum(p["messages_ok"] for p in parts)
    assert doc["bytes_verified"] == sum(p["bytes_verified"] for p in parts) == doc["bytes_sent"]
    assert doc["connections_ok"] == 7
    lat = doc["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    cpu = doc["client_cpu"]
    assert cpu["user_s"] + cpu["system_s"] > 0 and cpu["cores_usable"] >= 1
    assert isinstance(cpu["saturated"], bool)
    # The server saw exactly what the two processes sent.
    assert code == 0 and stopped is not None
    assert stopped["bytes_in"] == doc["bytes_sent"] and stopped["clients"] == 7


@pytest.mark.slow
def test_load_processes_still_catch_a_corrupted_byte(invoke) -> None:  # type: ignore[no-untyped-def]
    with bad_server(flip_at(150)) as port:
        r = invoke("load", f"127.0.0.1:{port}", "-c", "4", "-m", "3", "--size", "200-300",
                   "--processes", "2", "--json", "--timeout", "3")
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["ok"] is False
    assert doc["integrity_failures"] == 4  # one per connection: each stream has a byte 150
    assert sorted(f["connection"] for f in doc["failures"]) == [0, 1, 2, 3]  # global indices
    for f in doc["failures"]:
        assert f["kind"] == "corrupted byte" and f["offset"] == 150
        assert f["got"] == f["expected"] ^ 0x01


def test_load_processes_usage(invoke) -> None:  # type: ignore[no-untyped-def]
    r = invoke("load", "127.0.0.1:9", "-c", "2", "--processes", "3")
    assert r.exit_code == 2 and "--processes 3 is more than --connections 2" in r.stderr
    r = invoke("load", "127.0.0.1:9", "--processes", "0")
    assert r.exit_code == 2


@pytest.mark.parametrize("args", [["bench"], ["bench", "scaling"], ["bench", "register"]])
def test_bench_help_has_examples(invoke, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    r = invoke(*args, "--help")
    assert r.exit_code == 0
    assert "Examples:" in r.stdout and "fdscope bench" in r.stdout
