"""The end-to-end tier needs the built toolchain and a running local cluster: `make test-e2e` provides both."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import LocalStack, local_stack


def pytest_configure(config: pytest.Config) -> None:
    missing = [name for name in ("pulumi", "kubectl") if shutil.which(name) is None]
    own_home = os.environ.get("ROLLING_SYSTEM_PULUMI") != "1"  # else the pulumi on PATH, its home its own
    if missing or not os.environ.get("KUBECONFIG") or (own_home and not os.environ.get("PULUMI_HOME")):
        raise pytest.UsageError(
            "the end-to-end tier runs through `make test-e2e` (or `make test`), which builds the toolchain, "
            f"starts a cluster and sets PATH, KUBECONFIG and PULUMI_HOME; missing: {missing or 'environment'}"
        )


# The longest tests (a minute and more: docs/development.md), started first: one of them started last would
# keep its worker busy while the others have nothing left to do.
LONGEST = (
    "test_a_dead_daemon_stops_the_node",
    "test_sha_tags_ship",
    "test_promote_ships_the_digest",
    "test_a_deploy_waits_for_another_update",
    "test_the_first_day_as_written",
    "test_history_tells_each_release",
    "test_a_runner_lost_during",
    "test_a_weighted_canary_that_breaches",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.name.startswith(LONGEST))


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[LocalStack]:
    """The app deployed at version 1.14.2 with 3 replicas in a namespace of its own."""
    with local_stack(tmp_path, imageTag="1.14.2") as stack:
        stack.up()
        yield stack
