"""Image reference grammar."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra import images

# Docker's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
FIRST = string.ascii_letters + string.digits + "_"
TAG_CHARS = FIRST + ".-"


@given(st.text(alphabet=FIRST, min_size=1, max_size=1), st.text(alphabet=TAG_CHARS, max_size=127))
def test_every_docker_tag_is_accepted_except_latest(first: str, rest: str) -> None:
    tag = first + rest
    if tag.lower() == "latest":
        with pytest.raises(images.ImageError):
            images.check_tag(tag)
    else:
        assert images.check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["latest", "LATEST", "Latest", "lAtEsT"])
def test_latest_in_any_case_is_refused(tag: str) -> None:
    # Apart from the property above: a random tag is almost never "latest".
    with pytest.raises(images.ImageError, match="is not allowed"):
        images.check_tag(tag)


@given(st.text(max_size=140))
def test_accepted_tags_match_docker_grammar(tag: str) -> None:
    try:
        images.check_tag(tag)
    except images.ImageError:
        return
    assert re.fullmatch(r"[\w][\w.-]{0,127}", tag, flags=re.ASCII)
    assert tag.lower() != "latest"


def test_reference_prefers_digest() -> None:
    digest = "sha256:" + "f" * 64
    assert images.reference("nginx", "1.16.1") == "nginx:1.16.1"
    assert images.reference("nginx", "1.16.1", digest) == f"nginx@{digest}"


@pytest.mark.parametrize("repository", ["", "a//b", "UPPER/case", "registry.io:bad/x", "trailing-/x"])
def test_bad_repositories(repository: str) -> None:
    with pytest.raises(images.ImageError):
        images.check_repository(repository)


REPOSITORIES = st.sampled_from(
    ["nginx", "library/nginx", "localhost:5000/a/b-c", "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/web"]
)


@given(REPOSITORIES, st.text(alphabet="abcXYZ019_", min_size=1, max_size=1), st.text(alphabet=TAG_CHARS, max_size=20))
def test_parse_is_the_inverse_of_reference(repository: str, first: str, rest: str) -> None:
    tag = first + rest
    assert images.parse(images.reference(repository, tag)) == (repository, tag, None)
    digest = "sha256:" + "ab" * 32
    assert images.parse(images.reference(repository, tag, digest)) == (repository, None, digest)


def test_parse_without_tag_and_with_registry_port() -> None:
    assert images.parse("localhost:5000/web") == ("localhost:5000/web", None, None)
    assert images.parse("nginx:1.16.1@sha256:" + "0" * 64) == ("nginx", "1.16.1", "sha256:" + "0" * 64)
    with pytest.raises(images.ImageError, match="is not a repository reference"):
        images.parse("Nginx:1.16.1")


def test_the_app_build_context_holds_every_file_its_dockerfile_copies() -> None:
    # app/.dockerignore admits files one by one: a file the Dockerfile copies but the list leaves out
    # breaks every build of the app (the deploy workflow's and the local node's) at that COPY.
    app = Path(__file__).resolve().parents[2] / "app"
    admitted = {line[1:] for line in (app / ".dockerignore").read_text().split() if line.startswith("!")}
    copied = {m for line in (app / "Dockerfile").read_text().splitlines() for m in re.findall(r"^COPY (\S+)", line)}
    assert copied and copied <= admitted, copied - admitted
    assert all((app / name).is_file() for name in copied)


def test_a_parsed_reference_names_its_parts_and_prints_as_a_pod_runs_it() -> None:
    digest = "sha256:" + "b" * 64
    pinned = images.parse(f"localhost:5000/web:1.2@{digest}")
    assert (pinned.repository, pinned.tag, pinned.digest) == ("localhost:5000/web", "1.2", digest)
    assert str(pinned) == f"localhost:5000/web@{digest}"
    assert str(images.parse("localhost:5000/web:1.2")) == "localhost:5000/web:1.2"
