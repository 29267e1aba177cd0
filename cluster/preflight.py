"""What this machine lacks for `make demo` and `make test`, said before anything is built: one line per
problem, with what to do. `make preflight` runs it; `make demo` runs it first.

Each check is a pure function of the machine's facts (``Facts``), so that the unit tests show every line
on a machine made to lack it. The one thing it changes: a kernel module the node needs that is not
loaded is loaded when running as root (``modprobe``); otherwise the line says the command.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import host  # noqa: E402 (cluster/host.py, beside this file: the node's cgroup plan)

# The tools the project runs that neither it nor the node's packages install, and the Debian/Ubuntu
# package of each.
TOOLS = {
    "make": "make",
    "curl": "curl",
    "git": "git",
    "pgrep": "procps",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "ip": "iproute2",
    "sha256sum": "coreutils",
    "tar": "tar",
}
# The kernel modules the node needs: bridged pod traffic through iptables, and containerd's snapshotter.
MODULES = {
    "br_netfilter": "bridged pod traffic through kube-proxy's iptables rules",
    "overlay": "containerd's overlayfs snapshotter",
}
# Disk the cache folder needs on a machine that has built nothing yet, and when the toolchain is there.
DISK_COLD_GIB = 10.0
DISK_WARM_GIB = 3.0
# Memory for the toolchain's build and a cluster with its tests: the machine's used memory peaked at 4.3 GB
# while the provider piece built (a fresh-machine check on 2 cores), with the margin a system needs.
MEMORY_GIB = 6.0
# The Debian release the node's base image is made from (cluster/images.sh).
SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Facts:
    """What the checks read of the machine."""

    uid: int
    system: str  # platform.system(): "Linux"
    which: Callable[[str], str | None]
    modules: frozenset[str]  # loaded or built in (/sys/module)
    os_release: str  # /etc/os-release
    apt_sources: str  # every apt source line the machine has
    go_version: str | None  # `go version`'s output, None without go
    go_needed: str  # the newest `go` line of tools/*/go.mod
    free_gib: float  # free disk where the cache goes
    toolchain_built: bool
    memory_gib: float
    cgroups: tuple[str, str, str]  # host.read_facts()
    mirror: str = ""  # ROLLING_DEBIAN_MIRROR, when set


def os_field(os_release: str, key: str) -> str:
    found = re.search(rf"^{key}=\"?([^\"\n]*)\"?$", os_release, re.M)
    return found.group(1) if found else ""


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def problems(f: Facts, *, node: str = "real") -> list[str]:
    """Every problem, one line each, with what to do; none when the machine is ready."""
    found: list[str] = []
    if f.system != "Linux":
        return [f"the local cluster runs on Linux, not {f.system}: use a Linux machine or VM"]
    if node == "real" and f.uid != 0:
        found.append(
            "not root: the real node makes network and mount namespaces, cgroups and iptables rules; run as "
            "root (sudo make demo), or ROLLING_NODE=kwok for fake nodes"
        )
    for tool, package in TOOLS.items():
        if f.which(tool) is None:
            found.append(f"`{tool}` is not on PATH: apt-get install {package} (Debian/Ubuntu)")
    found += _go(f)
    if node == "real":
        found += _kernel(f)
        found += _distribution(f)
    found += _resources(f)
    return found


def _go(f: Facts) -> list[str]:
    if f.toolchain_built:
        return []  # Go builds the toolchain; once built, nothing else needs it
    install = (
        f"install Go {f.go_needed} or newer from https://go.dev/dl/ (tar -C /usr/local -xzf go{f.go_needed}"
        ".linux-amd64.tar.gz; PATH=/usr/local/go/bin:$PATH): Debian's and Ubuntu's packages are older"
    )
    if f.go_version is None:
        return [f"no `go` on PATH: {install}"]
    have = re.search(r"go(\d+\.\d+(?:\.\d+)?)", f.go_version)
    if have is None or version_tuple(have.group(1)) < version_tuple(f.go_needed):
        return [f"{f.go_version.strip()}: the toolchain needs Go {f.go_needed} or newer (tools/*/go.mod); {install}"]
    return []


def _kernel(f: Facts) -> list[str]:
    found = []
    for module, why in MODULES.items():
        if module not in f.modules:
            how = (
                f"run `modprobe {module}` as root"
                if f.which("modprobe")
                else f"apt-get install kmod, then `modprobe {module}`"
            )
            found.append(f"kernel module {module} is not loaded ({why}): {how}")
    try:
        plan = host.plan(*f.cgroups, name="preflight")
        found += [f"note: {n}" for n in plan.notes]
    except host.HostError as err:
        found.append(str(err))
    return found


def _distribution(f: Facts) -> list[str]:
    ident, like = os_field(f.os_release, "ID"), os_field(f.os_release, "ID_LIKE")
    codename = os_field(f.os_release, "VERSION_CODENAME")
    if ident != "debian" and "debian" not in like.split():
        return [
            f"{ident or 'this distribution'} has no apt: the real node's packages (containerd, runc, the CNI "
            "plugins, a registry, debootstrap, buildah) come from Debian's archive; use Debian 12, or "
            "ROLLING_NODE=kwok for fake nodes"
        ]
    if f.mirror:
        return []
    if ident == "debian" and codename == SUITE:
        return []
    if SUITE in f.apt_sources:
        return []
    return [
        f"{ident} {codename}: the node's base image is Debian {SUITE}, made with debootstrap from this machine's "
        f"apt mirror, which has no {SUITE}: set ROLLING_DEBIAN_MIRROR={DEBIAN_MIRROR} and apt-get install "
        "debian-archive-keyring (the node's packages themselves come from this machine's own archive)"
    ]


def _resources(f: Facts) -> list[str]:
    found = []
    need = DISK_WARM_GIB if f.toolchain_built else DISK_COLD_GIB
    if f.free_gib < need:
        found.append(
            f"{f.free_gib:.1f} GiB free for the cache folder; it needs about {need:.0f} GiB "
            f"({'images and state' if f.toolchain_built else 'the toolchain, images and state'}): free some, "
            "or point XDG_CACHE_HOME at a larger disk"
        )
    if f.memory_gib < MEMORY_GIB:
        found.append(
            f"{f.memory_gib:.1f} GiB of memory; building the toolchain and running the cluster and its tests "
            f"need about {MEMORY_GIB:.0f} GiB"
        )
    return found


def go_needed(tools: Path = ROOT / "tools") -> str:
    versions = [m.group(1) for p in tools.glob("*/go.mod") if (m := re.search(r"^go (\S+)$", p.read_text(), re.M))]
    return max(versions, key=version_tuple) if versions else "1.26.6"


def read_facts(cache: Path) -> Facts:
    """This machine's facts."""
    import platform

    def go_version() -> str | None:
        if shutil.which("go") is None:
            return None
        done = subprocess.run(["go", "version"], capture_output=True, text=True, check=False)
        return done.stdout or done.stderr

    sources = ""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.is_file():
            sources += path.read_text(errors="replace")
    where = cache
    while not where.exists():
        where = where.parent
    usage = shutil.disk_usage(where)
    memory = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    os_release = Path("/etc/os-release")
    return Facts(
        uid=os.getuid(),
        system=platform.system(),
        which=shutil.which,
        modules=kernel_modules(),
        os_release=os_release.read_text() if os_release.exists() else "",
        apt_sources=sources,
        go_version=go_version(),
        go_needed=go_needed(),
        free_gib=usage.free / 2**30,
        toolchain_built=(cache / "toolchain").is_dir(),
        memory_gib=(int(memory.group(1)) / 2**20) if memory else 0.0,
        cgroups=host.read_facts(),
        mirror=os.environ.get("ROLLING_DEBIAN_MIRROR", ""),
    )


def kernel_modules(proc: Path = Path("/proc"), sys_module: Path = Path("/sys/module")) -> frozenset[str]:
    """The modules the node needs that this kernel has, loaded or built in: br_netfilter by its sysctls
    (what the node sets), overlay by its file system; a built-in module need not show in /sys/module."""
    found = {p.name for p in sys_module.iterdir()} if sys_module.is_dir() else set()
    if (proc / "sys" / "net" / "bridge").is_dir():
        found.add("br_netfilter")
    filesystems = proc / "filesystems"
    if filesystems.exists() and re.search(r"\boverlay$", filesystems.read_text(), re.M):
        found.add("overlay")
    return frozenset(found)


def load_modules(f: Facts, run: Callable[[Sequence[str]], int]) -> Facts:
    """As root, load the modules the node needs that are not loaded; the facts after (a failed load stays
    a problem, said with its command)."""
    if f.uid != 0 or f.which("modprobe") is None:
        return f
    loaded = set(f.modules)
    for module in MODULES:
        if module not in loaded and run(["modprobe", module]) == 0:
            loaded.add(module)
    return dataclasses.replace(f, modules=frozenset(loaded))


def main(argv: Sequence[str]) -> int:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rolling"
    node = os.environ.get("ROLLING_NODE", "real")
    facts = load_modules(read_facts(cache), lambda args: subprocess.run(list(args), check=False).returncode)
    found = problems(facts, node=node)
    for line in found:
        print(f"preflight: {line}", file=sys.stderr)
    blocking = [line for line in found if not line.startswith("note: ")]
    if not blocking:
        print("preflight: this machine has what `make demo` and `make test` need", file=sys.stderr)
    return 1 if blocking else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
