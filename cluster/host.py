"""How the local node fits the machine's cgroups: decided from the machine's facts, by pure functions.

The facts are three texts: the machine's mounts (/proc/self/mountinfo), its PID 1's name (/proc/1/comm)
and the controllers of the unified hierarchy's root (cgroup.controllers, empty when there is none).
``plan`` turns them into what cluster/node.sh does; the unit tests hold every decision on recorded
facts of each kind of machine (tests/unit/samples/hosts/).

- **cgroup v1** (every controller on a v1 hierarchy, the unified one mounted beside them or not): the node's
  tree is a folder in each hierarchy; kubelet's cgroupfs driver, and `failCgroupV1: false`, which kubelet
  1.35 and later need to start on v1 at all (KubeletConfiguration, kubernetes.io/docs/reference/config-api/
  kubelet-config.v1beta1). With systemd as PID 1 on v1 the same is done, and said: systemd does not hand
  v1 controllers to others safely (systemd.io/CGROUP_DELEGATION), and such machines are few and old.
- **cgroup v2 without systemd** (containers, OpenRC): the node's tree is a folder under the unified root,
  the controllers it needs enabled in the root's and its own cgroup.subtree_control, its processes in a
  leaf ("no internal processes": docs.kernel.org/admin-guide/cgroup-v2.html), cgroupfs driver.
- **cgroup v2 with systemd** (Debian 12, Ubuntu 22.04 and 24.04, Fedora, GitHub's runners): systemd owns
  the tree, and only a subtree it delegates may be managed by anyone else. The node runs in a transient
  scope with `Delegate=yes` (systemd.resource-control(5); `systemd-run --scope`), its processes moved
  into a leaf of it before controllers are enabled below (systemd/systemd#26311 meets the same rule).
  kubelet and containerd both use the cgroupfs driver inside that delegated subtree: one manager per
  subtree, which is what the Kubernetes docs ask when they say kubelet and the runtime must agree and
  systemd must not be a second manager of the same cgroups (kubernetes.io/docs/setup/production-
  environment/container-runtimes/#cgroup-drivers). The systemd driver would need systemd's D-Bus inside
  the node's mount namespace, for cgroups systemd would then own outside the node's tree.

Run as a script it reads this machine's facts and prints the plan as shell assignments:
`python3 cluster/host.py plan NAME`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

UNIFIED_ROOT = "/sys/fs/cgroup"
# The controllers kubelet and runc use on the unified hierarchy: enabled for the node's tree when the
# machine has them (kubelet needs cpu, memory and pids; cpuset, io and hugetlb when present).
WANTED = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids")
# The systemd slice the node's scope is made in.
SLICE = "rolling.slice"


class HostError(Exception):
    """This machine's cgroups cannot take the node: the message says why and what to do."""


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    options: tuple[str, ...]  # the super block's options (after the " - fstype source ")


def mounts(mountinfo: str) -> list[Mount]:
    """The mounts of a /proc/PID/mountinfo text (proc(5)): the mount point is field 5, the file system
    type and the super options follow the " - " separator."""
    found = []
    for line in mountinfo.splitlines():
        if " - " not in line:
            continue
        before, after = line.split(" - ", 1)
        fields, rest = before.split(), after.split()
        if len(fields) < 5 or len(rest) < 2:
            continue
        options = tuple(rest[2].split(",")) if len(rest) > 2 else ()
        found.append(Mount(fields[4].replace("\\040", " "), rest[0], options))
    return found


@dataclass(frozen=True)
class Plan:
    """What cluster/node.sh does on this machine."""

    version: int  # 1 or 2
    systemd: bool  # systemd is PID 1
    # The folders, one per hierarchy, the node's tree is made in (its root below each).
    hierarchies: tuple[str, ...]
    # The node's tree below each hierarchy, as kubelet's cgroupRoot names it (no leading slash).
    root: str
    # The transient systemd scope the node runs in ("" when none), and its slice.
    scope: str
    # Controllers to enable (v2): in each of ``enable_in`` (relative to the unified root, "" for the
    # root itself), then in the node's root.
    controllers: tuple[str, ...]
    enable_in: tuple[str, ...]
    driver: str = "cgroupfs"
    notes: tuple[str, ...] = ()

    @property
    def fail_cgroup_v1(self) -> bool:
        return self.version == 2

    def shell(self) -> str:
        """The plan as shell assignments (values quoted for `eval`)."""
        values = {
            "CGROUP_VERSION": str(self.version),
            "CGROUP_SYSTEMD": "1" if self.systemd else "0",
            "CGROUP_HIERARCHIES": " ".join(self.hierarchies),
            "CGROUP_ROOT": self.root,
            "CGROUP_SCOPE": self.scope,
            "CGROUP_SLICE": SLICE,
            "CGROUP_CONTROLLERS": " ".join(self.controllers),
            "CGROUP_ENABLE_IN": " ".join(p or "." for p in self.enable_in),
            "CGROUP_DRIVER": self.driver,
            "KUBELET_FAIL_CGROUP_V1": "true" if self.fail_cgroup_v1 else "false",
            "CGROUP_NOTES": " | ".join(self.notes),
        }
        return "".join(f"{k}='{v}'\n" for k, v in values.items())


def plan(mountinfo: str, pid1: str, controllers: str, name: str) -> Plan:
    """The node ``rolling-NAME``'s cgroups on a machine with these facts (HostError when it has none the
    node can use)."""
    found = mounts(mountinfo)
    v1 = [m for m in found if m.fstype == "cgroup"]
    unified = [m for m in found if m.fstype == "cgroup2"]
    systemd = pid1.strip() == "systemd"
    if v1:
        # Hybrid or legacy: the controllers are on v1; the unified mount, if any, is one more hierarchy
        # (systemd's process tracking, or none), where the node's processes must also be kept together.
        hierarchies = tuple(sorted({m.point for m in v1} | {m.point for m in unified}))
        notes = (
            ("cgroup v1 with systemd as PID 1: the node's folders are made beside systemd's own",) if systemd else ()
        )
        return Plan(1, systemd, hierarchies, f"rolling-{name}", "", (), (), notes=notes)
    root_mounts = [m for m in unified if m.point == UNIFIED_ROOT]
    if not root_mounts:
        raise HostError(
            f"no cgroup file system at {UNIFIED_ROOT} (mounts: {', '.join(m.point for m in unified) or 'none'}): "
            "the node needs the unified hierarchy (cgroup v2) or the v1 hierarchies there"
        )
    available = set(controllers.split())
    missing = [c for c in ("cpu", "memory", "pids") if c not in available]
    if missing:
        raise HostError(
            f"the unified cgroup hierarchy at {UNIFIED_ROOT} offers no {', '.join(missing)} controller "
            f"(it has: {controllers.strip() or 'none'}); kubelet needs cpu, memory and pids. In a container, "
            "run it with its own cgroup namespace and these controllers delegated"
        )
    wanted = tuple(c for c in WANTED if c in available)
    if systemd:
        scope = f"rolling-{name}.scope"
        # systemd enables the delegated controllers down to the scope; below it the node enables them.
        return Plan(2, True, (UNIFIED_ROOT,), f"{SLICE}/{scope}", scope, wanted, ())
    return Plan(2, False, (UNIFIED_ROOT,), f"rolling-{name}", "", wanted, ("",))


def read_facts(proc: Path = Path("/proc"), cgroup: Path = Path(UNIFIED_ROOT)) -> tuple[str, str, str]:
    """This machine's facts: its mounts, its PID 1's name, the unified root's controllers ("" if none)."""
    controllers = cgroup / "cgroup.controllers"
    return (
        (proc / "self" / "mountinfo").read_text(),
        (proc / "1" / "comm").read_text() if (proc / "1" / "comm").exists() else "",
        controllers.read_text() if controllers.exists() else "",
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "plan":
        print("usage: host.py plan NAME", file=sys.stderr)
        return 2
    try:
        print(plan(*read_facts(), name=argv[2]).shell(), end="")
    except HostError as err:
        print(f"node: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
