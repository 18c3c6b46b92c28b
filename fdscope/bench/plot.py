"""Plots of fdscope.bench/1 documents with matplotlib (the optional extra fdscope[plot]).

Both are log-log: the sizes span four decades, and a straight line of slope 1 on them is
linear growth, a flat line no growth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fdscope.errors import Unsupported, UsageError
from fdscope.servers.core import FD_SETSIZE

FORMATS = {".png": "png", ".svg": "svg"}
MISSING = "--plot needs matplotlib, which is not installed (pip install 'fdscope[plot]')"


def plot_format(path: str) -> str:
    """'png' or 'svg' from the file's suffix; UsageError for anything else."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UsageError(f"--plot {path}: the file name must end in .png or .svg")
    return fmt


def require_matplotlib() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend; Unsupported (exit 5) if missing.
    Called before a benchmark starts, so a missing extra costs no wasted run."""
    try:
        import matplotlib
    except ImportError:
        raise Unsupported(MISSING) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str) -> None:
    fmt = plot_format(path)
    # No creation date in the SVG/PNG metadata and a fixed id salt: the same figures give the
    # same file, so a committed plot changes only when the data does.
    meta = {"Date": None} if fmt == "svg" else {"Software": None}
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "fdscope"}):
        fig.savefig(path, format=fmt, metadata=meta, bbox_inches="tight", dpi=110)


def _series(rows: list[dict[str, Any]], name: str, size_key: str, value: Any
            ) -> tuple[list[int], list[float]]:
    pts = sorted((r[size_key], v) for r in rows
                 if r["mechanism"] == name and r["status"] == "measured"
                 and (v := value(r)) is not None)
    return [max(p[0], 1) for p in pts], [p[1] for p in pts]


def _title(doc: dict[str, Any], what: str) -> str:
    m = doc["machine"]
    return (f"{what}\nLinux {m['kernel']}, Python {m['python']}, {m['cpus']} CPUs, "
            f"loadavg {m['loadavg'][0]:g}")


def plot_scaling(doc: dict[str, Any], path: str) -> None:
    """µs per delivered event (p50) and the wait call's own µs against idle fds."""
    plt = require_matplotlib()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5), sharex=True)
    for m in doc["mechanisms"]:
        name = m["name"]
        xs, ys = _series(doc["rows"], name, "idle_fds",
                         lambda r: r["event_us"]["median"] if r["event_us"] else None)
        if xs:
            ax1.plot(xs, ys, marker="o", label=name)
        xs, ys = _series(doc["rows"], name, "idle_fds",
                         lambda r: r["wait_us"]["median"] if r["wait_us"] else None)
        if xs:
            ax2.plot(xs, ys, marker="o", label=name)
    for ax, label in ((ax1, "µs per delivered event (median)"),
                      (ax2, "µs in the wait call (median)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("idle fds watched")
        ax.set_ylabel(label)
        ax.axvline(FD_SETSIZE, color="grey", linestyle=":", linewidth=1)
        ax.text(FD_SETSIZE, ax.get_ylim()[1], " FD_SETSIZE", color="grey", va="top",
                fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(_title(doc, f"bench scaling: {doc['config']['active']} active socketpair(s) "
                             f"among idle {doc['config']['idle_kind']} sockets"), fontsize=10)
    _save(fig, path)
    plt.close(fig)


def plot_register(doc: dict[str, Any], path: str) -> None:
    """µs per call and bytes copied per call against the set's size."""
    plt = require_matplotlib()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5), sharex=True)
    names = ("epoll", "poll", "poll (copy only)", "select")
    for name in names:
        xs, ys = _series(doc["rows"], name, "fds",
                         lambda r: r["call_us"]["median"] if r["call_us"] else None)
        if xs:
            ax1.plot(xs, ys, marker="o", label=f"{name}: one call")
        xs, ys = _series(doc["rows"], name, "fds",
                         lambda r: (r["bytes_in_per_call"] or 0) + (r["bytes_out_per_call"] or 0)
                         or None)
        if xs and name != "poll (copy only)":
            ax2.plot(xs, ys, marker="o", label=name)
    xs, ys = _series(doc["rows"], "epoll", "fds", lambda r: r["setup_us"])
    if xs:
        ax1.plot(xs, ys, marker="s", linestyle="--", label="epoll: epoll_ctl × N, once")
    xs, ys = _series(doc["rows"], "epoll", "fds", lambda r: r["bytes_once"] or None)
    if xs:
        ax2.plot(xs, ys, marker="s", linestyle="--", label="epoll: epoll_ctl × N, once")
    ax1.set_ylabel("µs (median)")
    ax2.set_ylabel("bytes copied between user and kernel per call")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("fds in the set")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(_title(doc, "bench register: the set passed on every call (timeout 0, nothing "
                             "ready) against registered once"), fontsize=10)
    _save(fig, path)
    plt.close(fig)
