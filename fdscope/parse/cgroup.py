"""The systemd unit of a process from the text of /proc/PID/cgroup (pure: text in, name out).

/proc/PID/cgroup has one line per hierarchy, `ID:CONTROLLERS:PATH` (cgroups(7), "/proc/[pid]/
cgroup"). On a unified (v2) host there is one line, `0::/system.slice/nginx.service`; on a
hybrid or v1 host systemd keeps its own named hierarchy, `1:name=systemd:/system.slice/...`.
systemd names each cgroup after its unit (systemd.unit(5)): slices (`.slice`) nest, and
processes live in services and scopes (`.service`, `.scope`, and `.socket`, `.mount`, `.swap`
while those run a command). A service may delegate a subtree (`foo.service/payload`), and a
user's manager nests units below `user@UID.service`, so the unit is the innermost path
component with a unit suffix other than `.slice`; a process directly in a slice (only the root
slice, `-.slice`, holds processes that way: `0::/` in a container) is named by that slice.
"""

from __future__ import annotations

UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap")
ROOT_SLICE = "-.slice"


def cgroup_path(text: str) -> str | None:
    """The path of systemd's hierarchy: the `name=systemd` line (v1, hybrid), else the unified
    `0::` line; None when neither is there."""
    unified = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hid, controllers, path = parts
        if "name=systemd" in controllers.split(","):
            return path
        if parts[0] == "0" and controllers == "" and unified is None:
            unified = path
    return unified


def systemd_unit(text: str) -> str | None:
    """The unit that holds the process (module docstring), None when the text names no cgroup
    path. A path outside any unit (not systemd's tree) gives its last component."""
    path = cgroup_path(text)
    if path is None or not path.startswith("/"):
        return None
    parts = [p for p in path.split("/") if p]
    if not parts:
        return ROOT_SLICE
    for part in reversed(parts):
        if part.endswith(UNIT_SUFFIXES):
            return part
    for part in reversed(parts):
        if part.endswith(".slice"):
            return part
    return parts[-1]
