"""The Pulumi program (__main__.py runs ``main``): load the settings, build the stack, export its outputs."""

from __future__ import annotations

import pulumi

from infra import rollout_wait
from infra.settings import Settings
from infra.stack import build


def main(settle: rollout_wait.Settle = rollout_wait.settle) -> None:
    """The program; ``settle`` waits for the app's rollout (the cluster itself, but for the unit tests' mocks)."""
    for name, value in build(Settings.load(), settle).items():
        pulumi.export(name, value)
