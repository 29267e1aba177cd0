"""A copy of the Pulumi program in another folder, so stacks made by tests and benchmarks leave no files here."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "infra")
# What the deploy pipeline runs besides the program (the registry scripts, the app's build context, the
# toolchain's lookup), shared with this checkout as the virtualenv is.
SHARED = ("app", "cluster", "scripts", "tools")


def copy_project(dest: Path) -> Path:
    """Copy the program to ``dest`` (made here), sharing this checkout's virtualenv."""
    dest.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    for name in SHARED:
        (dest / name).symlink_to(ROOT / name)
    return dest
