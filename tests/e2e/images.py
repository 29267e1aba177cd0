"""The app images the end-to-end tier deploys, built from app/ into the test cluster's registry.

`make test-e2e` runs this module after the cluster is up (`python -m tests.e2e.images`); the tests
name the images through the same constants.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "localhost:5000/rolling-app"
VERSIONS = ("1.14.2", "1.15.0", "1.16.1")
# Real failures: a server that never answers its probe, and one that exits at start.
NEVER_READY = "1.16.1-never-ready"
CRASHING = "1.16.1-crash"
# Serves, but ignores the stack's keep-alive limits (as an image with its own nginx configuration does).
UNLIMITED = "1.14.2-unlimited"
# Ready (their probes pass) while users get a server error, or a slow page (about 2 s).
ERRORS = "1.16.1-errors"
SLOW = "1.16.1-slow"
# Ready, and failing a share of users' requests: 5 % answered 500, or 10 % of connections closed unanswered.
PARTIAL = "1.16.1-partial"
RESETS = "1.16.1-resets"
# Ready, and answering users 500 for its first 10 s: a release that fails while it warms up.
COLD = "1.16.1-cold"
BROKEN = {
    NEVER_READY: "never-ready",
    CRASHING: "crash",
    UNLIMITED: "unlimited",
    ERRORS: "errors",
    SLOW: "slow",
    PARTIAL: "partial",
    RESETS: "resets",
    COLD: "cold",
}
# Never built: pulling it fails (ErrImagePull, then ImagePullBackOff).
MISSING = "1.16.1-missing"


def image(tag: str) -> str:
    return f"{REPOSITORY}:{tag}"


def main() -> None:
    # The cluster's watchdog over judged releases (pushed with every cluster up; again here for a cluster that
    # was already running when its source changed).
    subprocess.run([str(ROOT / "cluster" / "images.sh"), "watchdog"], check=True, stdout=subprocess.DEVNULL)
    for tag in VERSIONS:
        subprocess.run([str(ROOT / "cluster" / "images.sh"), "app", tag], check=True, stdout=subprocess.DEVNULL)
    for tag, kind in BROKEN.items():
        subprocess.run([str(ROOT / "cluster" / "images.sh"), "app", tag, kind], check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
