"""The local node's cgroups on each kind of machine (cluster/host.py), decided from recorded host facts:
the mounts, PID 1's name and the unified root's controllers (tests/unit/samples/hosts/). Only the
cgroup v1 machine's plan also runs on a real node here (this machine kind); the others are decisions."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOSTS = Path(__file__).parent / "samples" / "hosts"


def _host() -> ModuleType:
    spec = importlib.util.spec_from_file_location("host", ROOT / "cluster" / "host.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["host"] = module
    spec.loader.exec_module(module)
    return module


host = _host()


def facts(kind: str) -> tuple[str, str, str]:
    return tuple((HOSTS / f"{kind}.{part}").read_text() for part in ("mountinfo", "comm", "controllers"))  # type: ignore[return-value]


def test_this_machine_kind_cgroup_v1_hybrid_without_systemd() -> None:
    made = host.plan(*facts("debian12-vm-cgroup-v1-hybrid"), name="e2e")
    assert (made.version, made.systemd, made.scope, made.root) == (1, False, "", "rolling-e2e")
    assert made.fail_cgroup_v1 is False, "kubelet 1.35 and later refuse v1 unless told"
    assert "/sys/fs/cgroup/memory" in made.hierarchies and "/sys/fs/cgroup/unified" in made.hierarchies
    assert "/sys/fs/cgroup" not in made.hierarchies, "the tmpfs holding the hierarchies is not one"
    assert made.controllers == () and made.notes == ()


def test_cgroup_v2_with_systemd_runs_the_node_in_a_delegated_scope() -> None:
    made = host.plan(*facts("ubuntu24-systemd-cgroup-v2"), name="rolling")
    assert (made.version, made.systemd, made.driver) == (2, True, "cgroupfs")
    assert made.scope == "rolling-rolling.scope" and made.root == "rolling.slice/rolling-rolling.scope"
    assert made.hierarchies == ("/sys/fs/cgroup",)
    assert made.controllers == ("cpuset", "cpu", "io", "memory", "hugetlb", "pids")
    assert made.enable_in == (), "systemd enables the delegated controllers down to the scope, not us"
    assert made.fail_cgroup_v1 is True


def test_cgroup_v2_without_systemd_makes_its_tree_under_the_root() -> None:
    made = host.plan(*facts("alpine-openrc-cgroup-v2"), name="rolling")
    assert (made.version, made.systemd, made.scope, made.root) == (2, False, "", "rolling-rolling")
    assert made.enable_in == ("",), "the root's subtree_control first, then the node's own"
    assert made.controllers == ("cpuset", "cpu", "io", "memory", "pids")


def test_cgroup_v1_with_systemd_is_done_the_v1_way_and_said() -> None:
    made = host.plan(*facts("centos8-systemd-cgroup-v1"), name="rolling")
    assert (made.version, made.systemd, made.scope) == (1, True, "")
    assert "/sys/fs/cgroup/cpu,cpuacct" in made.hierarchies and "/sys/fs/cgroup/systemd" in made.hierarchies
    assert made.notes and "systemd" in made.notes[0]


def test_a_unified_root_without_the_controllers_kubelet_needs_is_refused_naming_them() -> None:
    mountinfo, comm, _ = facts("alpine-openrc-cgroup-v2")
    with pytest.raises(host.HostError, match=r"offers no memory, pids controller \(it has: cpu io\)"):
        host.plan(mountinfo, comm, "cpu io", name="rolling")


def test_no_cgroup_file_system_is_refused() -> None:
    with pytest.raises(host.HostError, match="no cgroup file system at /sys/fs/cgroup"):
        host.plan("22 1 0:21 / /proc rw - proc proc rw\n", "init", "", name="rolling")


def test_the_plan_is_shell_assignments_the_node_evaluates() -> None:
    made = host.plan(*facts("ubuntu24-systemd-cgroup-v2"), name="e2e")
    script = made.shell() + 'printf "%s|%s|%s" "$CGROUP_ROOT" "$KUBELET_FAIL_CGROUP_V1" "$CGROUP_CONTROLLERS"'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout == "rolling.slice/rolling-e2e.scope|true|cpuset cpu io memory hugetlb pids"


def test_the_script_plans_this_machine() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "cluster" / "host.py"), "plan", "x"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "CGROUP_VERSION=" in done.stdout and "CGROUP_ROOT='" in done.stdout
