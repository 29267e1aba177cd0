"""The registries images come from, behind one script per target with the same verbs: on eks ECR
(scripts/registry.sh, logged in by docker), on local the node's registry (cluster/images.sh).

    revision REF          the commit REF was built from (its revision label); exit 3: REF is absent
    push REF VERSION REV  build the app as REF and push it
    digest REF            REF's manifest digest (sha256:…); exit 3: REF is absent
    copy SRC DST          copy SRC (every platform, every layer) to DST, the manifest's bytes unchanged,
                          so DST has SRC's digest
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from infra import images

ROOT = Path(__file__).resolve().parents[2]


class RegistryError(RuntimeError):
    """The registry could not be read or written (not reached, credentials, a refusal)."""


class Registry(Protocol):
    """Where a stack pulls its images from."""

    def revision(self, reference: str) -> str | None:
        """The commit ``reference`` was built from ("" when it carries no label), or None when it is absent."""

    def push(self, reference: str, version: str, revision: str) -> None:
        """Build the app as ``reference`` from ``revision`` and push it."""

    def digest(self, reference: str) -> str | None:
        """The digest of ``reference``'s manifest, or None when it is absent."""

    def copy(self, source: str, destination: str) -> None:
        """Copy ``source`` to ``destination`` byte for byte (the same digest)."""


@dataclass(frozen=True)
class ScriptRegistry:
    """A registry behind a script with the verbs above."""

    script: Path

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.script), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )

    def revision(self, reference: str) -> str | None:
        done = self._run("revision", reference)
        if done.returncode == 3:
            return None
        if done.returncode != 0:
            raise RegistryError(f"could not read {reference} from the registry: {done.stderr.strip()}")
        return done.stdout.strip()

    def push(self, reference: str, version: str, revision: str) -> None:
        done = self._run("push", reference, version, revision)
        if done.returncode != 0:
            raise RegistryError(f"could not build and push {reference}: {done.stderr.strip()}")

    def digest(self, reference: str) -> str | None:
        done = self._run("digest", reference)
        if done.returncode == 3:
            return None
        if done.returncode != 0:
            raise RegistryError(f"could not read {reference} from the registry: {done.stderr.strip()}")
        try:
            return images.check_digest(done.stdout.strip())
        except images.ImageError as err:
            raise RegistryError(f"the registry's digest of {reference}: {err}") from None

    def copy(self, source: str, destination: str) -> None:
        done = self._run("copy", source, destination)
        if done.returncode != 0:
            raise RegistryError(f"could not copy {source} to {destination}: {done.stderr.strip()}")


def registry_for(target: str) -> Registry:
    if target == "local":
        return ScriptRegistry(ROOT / "cluster" / "images.sh")
    return ScriptRegistry(ROOT / "scripts" / "registry.sh")
