"""`fdscope run`: the main job starts a server, loads it, inspects it and cleans up."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

pytest.importorskip("fdscope.inspect", reason="fdscope.inspect not available")


def _children_named_serve() -> list[int]:
    me = psutil.Process()
    return [p.pid for p in me.children(recursive=True)
            if "serve" in " ".join(p.cmdline())]


@pytest.mark.slow
@pytest.mark.parametrize("model,kind,section", [("epoll", "epoll", "epoll"),
                                                ("threads", "threads", "threads")])
def test_run_json(invoke, model: str, kind: str, section: str) -> None:  # type: ignore[no-untyped-def]
    r = invoke("run", model, "--connections", "10", "--duration", "1", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["schema"] == "fdscope.run/1"
    assert doc["ok"] is True
    assert doc["server"]["model"] == model and doc["server"]["exit_code"] == 0
    assert doc["inspection"]["schema"] == "fdscope.inspect/1"
    assert doc["inspection"]["pid"] == doc["server"]["pid"]
    assert doc["inspection"]["io_model"]["kind"] == kind
    assert 0 < doc["inspected_at_s"] < 1.0
    load = doc["load"]
    assert load["ok"] and load["messages_ok"] > 0 and load["connections_ok"] == 10
    totals = doc["server_totals"]
    assert totals["clients"] == 10
    assert totals["bytes_in"] == totals["bytes_out"] == load["bytes_sent"] == load["bytes_verified"]
    assert not psutil.pid_exists(doc["server"]["pid"]) or \
        psutil.Process(doc["server"]["pid"]).status() == psutil.STATUS_ZOMBIE


@pytest.mark.slow
def test_run_text_is_the_main_job() -> None:
    r = subprocess.run([sys.executable, "-m", "fdscope", "run", "--duration", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "model      epoll" in out
    model = out[out.find("io model"):][:400]
    assert "epoll: epoll event loop" in out, model  # the io_model line from inspect
    assert "OK: every reply byte verified" in out
    assert "fdscope serve: stopped: 20 clients served" in out
    assert _children_named_serve() == []


def test_run_usage_errors(invoke) -> None:  # type: ignore[no-untyped-def]
    assert invoke("run", "kqueue").exit_code == 2
    assert invoke("run", "--size", "9-1").exit_code == 2
    assert invoke("run", "--duration", "0").exit_code == 2
