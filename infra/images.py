"""Container image references: repository, tag and digest grammar (no Pulumi here)."""

from __future__ import annotations

import re
from typing import NamedTuple

# Docker's tag grammar: a word character first, then word characters, dots and
# dashes, at most 128 characters in all.
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
# A registry host (with an optional port) is a first component that has a dot
# or a colon in it, or is "localhost".
_HOST_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?"
)
# A path component: lowercase letters and digits, joined by '.', '_', '__' or dashes.
_PATH_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
MAX_REPOSITORY = 255
# Where the app's container image sits in its Deployment's spec (one container): the one property a
# rollout changes.
CONTAINER_IMAGE_PATH = "spec.template.spec.containers[0].image"


class ImageError(ValueError):
    """An image reference part that Docker or Kubernetes would not accept."""


def check_tag(tag: str) -> str:
    """Return ``tag`` if it is a pinned Docker tag, else raise ImageError saying why."""
    if tag == "":
        raise ImageError("is empty: set a version such as 1.16.1")
    if tag.lower() == "latest":
        raise ImageError(
            f"'{tag}' is not allowed: it names no fixed version, so a rollout could not "
            "be previewed or rolled back; pin a version such as 1.16.1"
        )
    if len(tag) > 128:
        raise ImageError(f"is {len(tag)} characters long; a tag has at most 128")
    if not TAG_RE.fullmatch(tag):
        raise ImageError(
            f"'{tag}' is not a Docker tag: it must start with a letter, digit or '_' and "
            "contain only letters, digits, '_', '.' and '-' (for example 1.16.1, v2, a1b2c3d)"
        )
    return tag


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:`` and 64 lowercase hex digits."""
    if not DIGEST_RE.fullmatch(digest):
        raise ImageError(f"'{digest}' is not a digest: expected sha256: followed by 64 lowercase hex digits")
    return digest


def check_repository(repository: str) -> str:
    """Return ``repository`` if it is a registry/repository reference with no tag or digest."""
    if repository == "":
        raise ImageError(
            "is empty: name a repository such as nginx or 123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/web"
        )
    if "@" in repository:
        raise ImageError(f"'{repository}' carries a digest: set imageDigest instead")
    if len(repository) > MAX_REPOSITORY:
        raise ImageError(f"is {len(repository)} characters long; a repository has at most {MAX_REPOSITORY}")
    parts = repository.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        if not _HOST_RE.fullmatch(first):
            raise ImageError(f"'{repository}' has an invalid registry host '{first}'")
        parts = parts[1:]
    for part in parts:
        if ":" in part:
            raise ImageError(f"'{repository}' carries a tag: set imageTag instead")
        if not _PATH_RE.fullmatch(part):
            raise ImageError(
                f"'{repository}' is not a repository reference: component '{part}' must be lowercase "
                "letters and digits, joined by '.', '_', '__' or '-'"
            )
    return repository


def reference(repository: str, tag: str, digest: str | None = None) -> str:
    """The image reference a pod runs: ``repo:tag``, or ``repo@digest`` when pinned by digest."""
    if digest:
        return f"{repository}@{digest}"
    return f"{repository}:{tag}"


class Reference(NamedTuple):
    """An image reference in its parts (``parse``'s result; it unpacks as ``repository, tag, digest``)."""

    repository: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        """What a pod runs: pinned by digest when there is one, else by tag (``reference``)."""
        return reference(self.repository, self.tag or "", self.digest)


def parse(image: str) -> Reference:
    """Split a reference into ``(repository, tag, digest)``, the inverse of ``reference``.

    A missing tag or digest is None. The repository is checked; the tag and digest are
    returned as written, for the caller to judge (``check_tag``, ``check_digest``).
    """
    rest, _, digest = image.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag = None
    # A colon after the last slash separates the tag; one before it belongs to a registry port.
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    return Reference(check_repository(rest), tag, digest or None)
