"""serve.cpus: the CPUs a process may use, from its affinity and faked cgroup files."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve import cpus

MANY = set(range(64))


@pytest.fixture(autouse=True)
def many_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64-CPU affinity, whatever this machine has."""
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: MANY)


def write(folder: Path, files: dict[str, str], own: str = "0::/\n") -> Path:
    """Fake cgroup files under ``folder``/root and a /proc/self/cgroup listing ``own``;
    returns the listing's path."""
    for name, text in files.items():
        (folder / "root" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "root" / name).write_text(text)
    (folder / "root").mkdir(exist_ok=True)
    (folder / "cgroup").write_text(own)
    return folder / "cgroup"


def usable(tmp_path: Path, files: dict[str, str], own: str = "0::/\n") -> int:
    own_cgroups = write(tmp_path, files, own)
    return cpus.usable_cpus(tmp_path / "root", own_cgroups)


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("200000 100000\n", 2),
        ("150000 100000\n", 2),  # 1.5 CPUs of time: 2 workers, not 1.
        ("50000 100000\n", 1),  # Half a CPU: still at least one worker.
        ("max 100000\n", 64),
    ],
)
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, expected: int) -> None:
    assert usable(tmp_path, {"cpu.max": cpu_max}) == expected


def test_cgroup_v2_quota_of_the_own_cgroup_and_its_parents(tmp_path: Path) -> None:
    """Without a cgroup namespace the process's cgroup is a folder below the mount; the
    tightest quota on the way up counts."""
    files = {
        "kubepods/cpu.max": "400000 100000\n",
        "kubepods/pod1/cpu.max": "max 100000\n",
        "kubepods/pod1/app/cpu.max": "300000 100000\n",
    }
    assert usable(tmp_path, files, "0::/kubepods/pod1/app\n") == 3


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    files = {
        "cpu,cpuacct/cpu.cfs_quota_us": "250000\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    }
    own = "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n0::/\n"
    assert usable(tmp_path, files, own) == 3


def test_cgroup_v1_no_quota(tmp_path: Path) -> None:
    files = {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert usable(tmp_path, files, "1:cpu:/\n") == 64


def test_affinity_below_the_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {0, 1})
    assert usable(tmp_path, {"cpu.max": "800000 100000\n"}) == 2


def test_missing_files_leave_the_affinity(tmp_path: Path) -> None:
    assert cpus.usable_cpus(tmp_path / "nowhere", tmp_path / "no-cgroup-file") == 64


@pytest.mark.parametrize(
    "files",
    [
        {"cpu.max": "lots\n"},
        {"cpu.max": "200000 zero\n"},
        {"cpu.max": "200000 0\n"},
        {"cpu.max": ""},
        {"cpu/cpu.cfs_quota_us": "two\n", "cpu/cpu.cfs_period_us": "100000\n"},
        {"cpu/cpu.cfs_quota_us": "200000\n"},
    ],
)
def test_garbage_leaves_the_affinity(tmp_path: Path, files: dict[str, str]) -> None:
    assert usable(tmp_path, files, "1:cpu:/\n0::/\n") == 64


def test_garbled_cgroup_listing_is_ignored(tmp_path: Path) -> None:
    assert usable(tmp_path, {"cpu.max": "200000 100000\n"}, "nonsense\n\n::\n") == 2


def test_this_machine() -> None:
    """On the real files: a whole number between 1 and the affinity's size."""
    assert 1 <= cpus.usable_cpus() <= len(MANY)
