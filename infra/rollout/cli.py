"""The `rollout` console command's entry point (pyproject.toml); the command is infra/rollout/command/."""

from infra.rollout.command.run import main

__all__ = ["main"]
