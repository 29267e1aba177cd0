"""Every tier: the engines the tests start stop their plugins in a moment, however pytest was started."""

from __future__ import annotations

import pytest

from infra.rollout.engine import interruptible_children


def pytest_configure(config: pytest.Config) -> None:
    # Started in the background (SIGINT ignored), each engine run would wait 5 s for its language host.
    interruptible_children()
