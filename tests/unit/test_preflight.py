"""The preflight (cluster/preflight.py): on a machine made to lack each thing, the line that names it and
says what to do; on a machine that has everything, none."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOSTS = Path(__file__).parent / "samples" / "hosts"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "cluster" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


preflight = _load("preflight")
EVERY_TOOL = {*preflight.TOOLS, "go", "modprobe"}
DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_CODENAME=bookworm\n'
UBUNTU = "ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n"


def cgroups(kind: str) -> tuple[str, str, str]:
    return tuple((HOSTS / f"{kind}.{p}").read_text() for p in ("mountinfo", "comm", "controllers"))  # type: ignore[return-value]


def ready(**changes: object) -> object:
    """A Debian 12 machine with everything, as root; ``changes`` take something away."""
    facts = preflight.Facts(
        uid=0,
        system="Linux",
        which=lambda tool: f"/usr/bin/{tool}" if tool in EVERY_TOOL else None,
        modules=frozenset({"br_netfilter", "overlay", "veth"}),
        os_release=DEBIAN,
        apt_sources="deb http://deb.debian.org/debian bookworm main\n",
        go_version="go version go1.26.6 linux/amd64\n",
        go_needed="1.26.6",
        free_gib=40.0,
        toolchain_built=False,
        memory_gib=24.0,
        cgroups=cgroups("ubuntu24-systemd-cgroup-v2"),
    )
    return dataclasses.replace(facts, **changes)


def lines(**changes: object) -> list[str]:
    return preflight.problems(ready(**changes))  # type: ignore[no-any-return]


def test_a_machine_with_everything_has_no_problem() -> None:
    assert lines() == []
    assert lines(cgroups=cgroups("debian12-vm-cgroup-v1-hybrid")) == []


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"uid": 1000}, "not root: the real node makes network and mount namespaces"),
        ({"modules": frozenset({"overlay"})}, "kernel module br_netfilter is not loaded (bridged pod traffic"),
        ({"modules": frozenset({"br_netfilter"})}, "run `modprobe overlay` as root"),
        ({"go_version": None}, "no `go` on PATH: install Go 1.26.6 or newer from https://go.dev/dl/"),
        ({"go_version": "go version go1.22.2 linux/amd64"}, "go1.22.2 linux/amd64: the toolchain needs Go 1.26.6"),
        ({"go_version": "go version go1.26.5 linux/amd64"}, "needs Go 1.26.6 or newer"),
        ({"free_gib": 6.0}, "6.0 GiB free for the cache folder; it needs about 10 GiB"),
        ({"memory_gib": 2.0}, "2.0 GiB of memory"),
        (
            {"os_release": UBUNTU, "apt_sources": "deb http://archive.ubuntu.com/ubuntu noble main"},
            "ROLLING_DEBIAN_MIRROR=http://deb.debian.org/debian",
        ),
        ({"os_release": "ID=fedora\n"}, "fedora has no apt: the real node's packages"),
        ({"cgroups": ("22 1 0:21 / /proc rw - proc proc rw\n", "init", "")}, "no cgroup file system at /sys/fs/cgroup"),
        ({"system": "Darwin"}, "runs on Linux, not Darwin"),
    ],
)
def test_each_missing_thing_is_one_line_saying_what_to_do(changes: dict[str, object], says: str) -> None:
    found = lines(**changes)
    assert len(found) == 1 and says in found[0], found


@pytest.mark.parametrize(
    ("tool", "package"), [("curl", "curl"), ("make", "make"), ("pgrep", "procps"), ("nsenter", "util-linux")]
)
def test_each_missing_tool_names_its_package(tool: str, package: str) -> None:
    (found,) = lines(which=lambda t: None if t == tool else f"/usr/bin/{t}")
    assert found == f"`{tool}` is not on PATH: apt-get install {package} (Debian/Ubuntu)"


def test_ubuntu_with_the_debian_mirror_set_is_ready() -> None:
    assert (
        lines(
            os_release=UBUNTU,
            apt_sources="deb http://archive.ubuntu.com/ubuntu noble main",
            mirror="http://deb.debian.org/debian",
        )
        == []
    )


def test_a_built_toolchain_needs_no_go_and_less_disk() -> None:
    assert lines(toolchain_built=True, go_version=None, free_gib=5.0) == []


def test_fake_nodes_need_neither_root_nor_the_nodes_packages() -> None:
    assert preflight.problems(ready(uid=1000, os_release="ID=fedora\n", modules=frozenset()), node="kwok") == []


def test_as_root_a_missing_module_is_loaded_and_then_no_problem() -> None:
    ran: list[list[str]] = []

    def run(args: list[str]) -> int:
        ran.append(list(args))
        return 0

    loaded = preflight.load_modules(ready(modules=frozenset({"overlay"})), run)
    assert ran == [["modprobe", "br_netfilter"]]
    assert preflight.problems(loaded) == []
    refused = preflight.load_modules(ready(modules=frozenset({"overlay"})), lambda args: 1)
    assert "run `modprobe br_netfilter` as root" in preflight.problems(refused)[0]
    assert preflight.load_modules(ready(uid=1000, modules=frozenset()), run).modules == frozenset()


def test_the_least_go_is_the_newest_go_line_of_the_pins() -> None:
    assert preflight.go_needed() == "1.26.6"


@pytest.mark.parametrize(
    ("found", "code"),
    [
        ([], 0),
        (["note: the node runs with cgroup v1 (hybrid)"], 0),
        (["note: a note", "kernel module overlay is not loaded (x): run `modprobe overlay` as root"], 1),
    ],
)
def test_notes_never_stop_make_test_and_every_other_line_does(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], found: list[str], code: int
) -> None:
    # The machine's facts as read, no module loaded (the real modprobe is not run here).
    monkeypatch.setattr(preflight, "read_facts", lambda cache: ready())
    monkeypatch.setattr(preflight, "load_modules", lambda facts, run: facts)
    monkeypatch.setattr(preflight, "problems", lambda facts, node: found)
    assert preflight.main([]) == code
    said = capsys.readouterr().err.splitlines()
    assert said[: len(found)] == [f"preflight: {line}" for line in found]
    assert ("preflight: this machine has what `make demo` and `make test` need" in said) is (code == 0)


def test_modules_are_found_by_what_the_node_uses_built_in_or_loaded(tmp_path: Path) -> None:
    proc, sys_module = tmp_path / "proc", tmp_path / "module"
    (proc / "sys" / "net" / "bridge").mkdir(parents=True)
    (proc / "filesystems").write_text("nodev\tsysfs\nnodev\toverlay\n")
    (sys_module / "veth").mkdir(parents=True)
    assert preflight.kernel_modules(proc, sys_module) == {"br_netfilter", "overlay", "veth"}
    (proc / "filesystems").write_text("nodev\tsysfs\n")
    (proc / "sys" / "net" / "bridge").rmdir()
    assert preflight.kernel_modules(proc, sys_module) == {"veth"}


def test_without_modprobe_the_line_says_how_to_get_it() -> None:
    (found,) = lines(modules=frozenset({"overlay"}), which=lambda t: None if t == "modprobe" else f"/usr/bin/{t}")
    assert found.endswith("apt-get install kmod, then `modprobe br_netfilter`")


def test_the_readme_lists_what_the_preflight_checks() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("> **Before you start**")
    prerequisites = readme[start : readme.index("## ", start)]
    for tool in preflight.TOOLS:
        assert f"`{tool}`" in prerequisites, tool
    for module in preflight.MODULES:
        assert f"`{module}`" in prerequisites, module
    assert f"Go {preflight.go_needed()}" in prerequisites
    assert f"{preflight.MEMORY_GIB:.0f} GiB" in prerequisites and f"{preflight.DISK_COLD_GIB:.0f} GB" in prerequisites
    assert "ROLLING_DEBIAN_MIRROR" in prerequisites and "`make preflight`" in prerequisites
