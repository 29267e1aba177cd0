"""The toolchain recipe on a machine that has built nothing: modules are fetched before their files are read,
and a failed step stops the recipe before anything is built on an empty path."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLCHAIN = ROOT / "tools" / "toolchain.sh"


def run(args: list[str], cache: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GO")}
    env["XDG_CACHE_HOME"] = str(cache)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        ["bash", str(TOOLCHAIN), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_module_lookup_downloads_into_an_empty_module_cache(tmp_path: Path) -> None:
    result = run(["--module-dir", "actionlint", "github.com/rhysd/actionlint"], tmp_path)
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip())
    assert folder.is_relative_to(tmp_path / "rolling" / "toolchain" / "go" / "mod")
    assert (folder / "go.mod").is_file()
    # Only the module asked for was fetched, not the piece's whole build list.
    fetched = {p.name for p in (tmp_path / "rolling/toolchain/go/mod/cache/download/github.com").iterdir()}
    assert fetched == {"rhysd"}


def test_module_not_pinned_by_the_piece_is_refused_by_name(tmp_path: Path) -> None:
    result = run(["--module-dir", "actionlint", "github.com/pulumi/pulumi/sdk/v3"], tmp_path)
    assert result.returncode != 0
    assert "could not download github.com/pulumi/pulumi/sdk/v3 (pinned in tools/actionlint/go.mod)" in result.stderr


FAKE_GO = """#!/usr/bin/env bash
# A stand-in for go: answers what the recipe asks before building, records any build.
case "$1 $2" in
  "env GOVERSION")
    shift
    for v in "$@"; do
      case $v in GOVERSION) echo "${FAKE_GOVERSION:-go1.26.8}" ;; GOOS) echo linux ;; GOARCH) echo amd64 ;; esac
    done ;;
  "mod download") [ "$FAKE_DOWNLOAD" = ok ] || { echo "proxy unreachable" >&2; exit 1; } ;;
  "list -m") echo "" ;;
  "clean -cache") ;;
  *) echo "$*" >>"$FAKE_CALLS"; ;;
esac
"""


def fake_go(tmp_path: Path) -> tuple[Path, Path]:
    """A folder holding the stand-in go, and the file it records builds in."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "go").write_text(FAKE_GO)
    (fake / "go").chmod(stat.S_IRWXU)
    return fake, tmp_path / "calls"


@pytest.mark.parametrize(
    ("download", "says"),
    [
        ("fails", "could not download github.com/pulumi/pulumi-kubernetes/provider/v4"),
        ("ok", "is not in the module cache: '' holds no go.mod"),
    ],
)
def test_failed_module_lookup_stops_the_provider_recipe_before_any_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, download: str, says: str
) -> None:
    fake, calls = fake_go(tmp_path)
    monkeypatch.setenv("FAKE_DOWNLOAD", download)
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    result = run(["--piece", "kubernetes-provider"], tmp_path / "cache", path=f"{fake}:/usr/bin:/bin")
    assert result.returncode == 1
    assert says in result.stderr
    assert "toolchain: building kubernetes-provider failed" in result.stderr
    # Nothing ran after the failed lookup: no generator on an empty path, no go build.
    assert "schema.json" not in result.stderr
    assert not calls.exists(), calls.read_text()
    assert not list((tmp_path / "cache/rolling/toolchain/pieces").glob("kubernetes-provider-*/.done"))


def test_a_go_older_than_the_pins_need_is_refused_before_any_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, calls = fake_go(tmp_path)
    # 1.26.6, as the README and docs/toolchain.md say: the newest `go` line of tools/*/go.mod.
    monkeypatch.setenv("FAKE_GOVERSION", "go1.26.5")
    monkeypatch.setenv("FAKE_DOWNLOAD", "ok")
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    result = run(["--piece", "pause"], tmp_path / "cache", path=f"{fake}:/usr/bin:/bin")
    assert result.returncode == 1
    assert f"toolchain: Go 1.26.5 is on PATH ({fake}/go); the pinned modules need Go 1.26.6 or newer" in result.stderr
    assert not calls.exists(), calls.read_text()
