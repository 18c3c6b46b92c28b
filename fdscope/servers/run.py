"""`fdscope run`: start a reference server as a child, load it, inspect it mid-load, stop both.

The result is one document (schema fdscope.run/1) holding the server, the inspection report
(fdscope.inspect/1) and the load result (fdscope.load/1)."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from fdscope.errors import FdscopeError
from fdscope.load import LoadConfig, run_load

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# Snapshots taken without CPU sampling before falling back to a sampled one: under load a
# server thread is often on CPU, and only a thread caught waiting shows how the server waits.


@dataclass
class RunConfig:
    """What `fdscope run` starts and how hard it loads it."""

    model: str = "epoll"
    connections: int = 20
    duration: float = 3.0
    size_min: int = 1
    size_max: int = 4096
    seed: int | None = None


def inspection_sections(doc: dict[str, Any] | None) -> list[str]:
    """summary, io_model, then epoll (when the server has an epoll set) or threads, its
    io_uring rings when it has any, findings."""
    middle = "epoll" if doc and doc.get("epoll") else "threads"
    rings = ["io_uring"] if doc and doc.get("io_uring") else []
    return ["summary", "io_model", middle, *rings, "findings"]


def _start_server(model: str, stderr: Any) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    cmd = [sys.executable, "-m", "fdscope", "serve", model, "--json", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    ready = sel.select(START_TIMEOUT)
    sel.close()
    line = proc.stdout.readline() if ready else ""
    try:
        event = json.loads(line) if line else None
    except json.JSONDecodeError:
        event = None
    if not event or event.get("event") != "listening":
        proc.kill()
        proc.wait()
        raise FdscopeError(f"server {model} did not start: "
                           + (_tail(stderr) or line.strip() or "no listening line"))
    return proc, event


def _tail(f: Any, lines: int = 5) -> str:
    try:
        f.flush()
        f.seek(0)
        text = f.read()
    except (OSError, ValueError, AttributeError):
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


def stopped_event(out: str) -> dict[str, Any] | None:
    """The `stopped` event among a `serve --json` process's stdout lines, or None."""
    stopped = None
    for line in out.splitlines():
        if line.startswith("{"):
            ev = json.loads(line)
            if ev.get("event") == "stopped":
                stopped = ev
    return stopped


def _inspect(pid: int) -> dict[str, Any]:
    """One inspection; when the server is caught on CPU, inspect samples its CPU and which calls
    its threads block in, so a loaded event loop still reads as what it is."""
    from fdscope.inspect import inspect_process

    return inspect_process(pid).to_json()


def run_job(cfg: RunConfig) -> dict[str, Any]:
    """Run the whole job; never leaves the server behind."""
    with tempfile.TemporaryFile(mode="w+") as err:
        proc, listening = _start_server(cfg.model, err)
        result: dict[str, Any] = {}
        stopped: dict[str, Any] | None = None
        inspection: dict[str, Any] | None = None
        inspection_error = None
        inspected_at = None
        exit_code: int | None = None
        try:
            load_cfg = LoadConfig(host=listening["host"], port=listening["port"],
                                  connections=cfg.connections, messages=None,
                                  size_min=cfg.size_min, size_max=cfg.size_max,
                                  duration=cfg.duration, stall_timeout=max(5.0, cfg.duration),
                                  seed=cfg.seed)

            def drive() -> None:
                try:
                    result["load"] = run_load(load_cfg)
                except FdscopeError as e:
                    result["error"] = e
            t0 = time.monotonic()
            loader = threading.Thread(target=drive, name="load", daemon=True)
            loader.start()
            loader.join(cfg.duration / 2)
            if loader.is_alive():
                inspected_at = time.monotonic() - t0
                try:
                    inspection = _inspect(proc.pid)
                except ImportError:
                    inspection_error = "fdscope.inspect is not available in this build"
                except FdscopeError as e:
                    inspection_error = str(e)
                except Exception as e:  # noqa: BLE001 - the load result still stands
                    inspection_error = f"inspection failed: {type(e).__name__}: {e}"
            else:
                inspection_error = "the load ended before the inspection"
            loader.join(cfg.duration + load_cfg.stall_timeout + 5)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=STOP_TIMEOUT)
                exit_code = proc.returncode
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                exit_code = None
            stopped = stopped_event(out)
            server_stderr = _tail(err, 10)
    if "error" in result:
        raise result["error"]
    if "load" not in result:
        raise FdscopeError("the load did not finish")
    load = result["load"]
    ok = load["ok"] and exit_code == 0
    return {
        "schema": "fdscope.run/1",
        "model": cfg.model,
        "server": {**{k: v for k, v in listening.items() if k != "event"},
                   "exit_code": exit_code, "stderr_tail": server_stderr or None},
        "inspected_at_s": round(inspected_at, 3) if inspected_at is not None else None,
        "inspection": inspection,
        "inspection_error": inspection_error,
        "load": load,
        "server_totals": {k: v for k, v in stopped.items() if k != "event"} if stopped else None,
        "ok": ok,
    }
