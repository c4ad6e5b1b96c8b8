"""How many CPUs this process may really use: its affinity, capped by its cgroup CPU quota.

``os.cpu_count()`` counts the machine's CPUs; in a container limited to 2 CPUs on a 64-core
node it still says 64, and 64 workers would share 2 CPUs' worth of time. The quota is read
from cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), in the
process's own cgroup and every cgroup above it up to the mount point.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
OWN_CGROUPS = Path("/proc/self/cgroup")
#: Where cgroup v1 mounts the ``cpu`` controller, under the cgroup root.
V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, own_cgroups: Path = OWN_CGROUPS) -> int:
    """The CPUs this process may use: the smaller of its affinity's size and its cgroup CPU
    quota rounded up (1.5 CPUs count as 2), at least 1. ``cgroup_root`` is where the cgroup
    file systems are mounted and ``own_cgroups`` lists the process's cgroups (the
    ``/proc/self/cgroup`` format); tests point both at files of their own."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity call: every CPU is the process's.
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, own_cgroups)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, own_cgroups: Path = OWN_CGROUPS
) -> float | None:
    """The tightest CPU quota, in CPUs (quota / period), of the cgroups that hold this
    process; None when none sets one or none can be read."""
    quotas = [
        quota
        for folder in _cgroup_folders(cgroup_root, own_cgroups)
        if (quota := _folder_quota(folder)) is not None
    ]
    return min(quotas, default=None)


def _cgroup_folders(cgroup_root: Path, own_cgroups: Path) -> Iterator[Path]:
    """Every folder that may hold the CPU controller's files for this process: its own
    cgroup and each one above it, under the v2 mount and each v1 ``cpu`` mount. Inside a
    container the mount is usually the container's own cgroup, so the root is tried too."""
    paths = {"v2": PurePosixPath("/"), "v1": PurePosixPath("/")}
    try:
        lines = own_cgroups.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            paths["v2"] = PurePosixPath(path or "/")
        elif "cpu" in controllers.split(","):
            paths["v1"] = PurePosixPath(path or "/")
    mounts = [(cgroup_root, paths["v2"])]
    mounts += [(cgroup_root / name, paths["v1"]) for name in V1_CPU_MOUNTS]
    for mount, own in mounts:
        for ancestor in (own, *own.parents):
            yield mount / ancestor.relative_to("/")


def _folder_quota(folder: Path) -> float | None:
    """The CPU quota one cgroup folder sets, in CPUs; None for no limit, no files, or
    contents that do not parse."""
    try:
        if (folder / "cpu.max").is_file():
            quota, period = (folder / "cpu.max").read_text().split()
            if quota == "max":
                return None
        else:
            quota = (folder / "cpu.cfs_quota_us").read_text().strip()
            period = (folder / "cpu.cfs_period_us").read_text().strip()
        quota_us, period_us = int(quota), int(period)
    except (OSError, ValueError):
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us
