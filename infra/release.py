"""Why an image runs: the cause each release writes on the Deployment (``kubernetes.io/change-cause``, the
column `kubectl rollout history` shows) and on the engine's update (its message, in `pulumi stack history`).
One line, the same grammar everywhere, so that the release history can be read back from either:

    ship localhost:5000/rolling-app:1.1.0 by alice
    rollback localhost:5000/rolling-app:1.1.0 by alice; localhost:5000/rolling-app:1.2.0 rolled back: <why>
    undo localhost:5000/rolling-app:1.0.0 by alice; to revision 1
    promote 1234.dkr.ecr.../rolling-prod@sha256:… by octocat (run https://github.com/…/actions/runs/42); from dev
    up localhost:5000/rolling-app:1.3.0          (a plain `pulumi up` that changed the image)

No Pulumi here: the program, the rollout command and the history read it alike.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

CHANGE_CAUSE = "kubernetes.io/change-cause"
# Where it sits in the Deployment, as the engine names properties (PropertyPath.String in pulumi/sdk
# go/common/resource/properties_path.go: a key with '.' or '/' is quoted): in a preview's detailed diff
# and in ignoreChanges.
CHANGE_CAUSE_PATH = f'metadata.annotations["{CHANGE_CAUSE}"]'
# What a release did: the rollout command's four, and a plain `pulumi up` that changed the image.
VERBS = ("ship", "promote", "undo", "rollback", "up")
# Long enough for a workflow run's URL and a failure's first line; a cause is a line, not a log.
MAX_CAUSE = 500
_CAUSE_RE = re.compile(r"(ship|promote|undo|rollback|up) (\S+)(?: by (.+?))?(?:; (.*))?")


@dataclass(frozen=True)
class Cause:
    """One release's cause: what was done, the image it put in place, who did it, and a note."""

    verb: str
    image: str
    who: str = ""
    note: str = ""

    def text(self) -> str:
        line = f"{self.verb} {self.image}" + (f" by {self.who}" if self.who else "")
        line += f"; {self.note}" if self.note else ""
        line = " ".join(line.split())  # one line, whatever a note held
        return line if len(line) <= MAX_CAUSE else line[: MAX_CAUSE - 1] + "…"


def parse(text: str | None) -> Cause | None:
    """The cause ``text`` says, or None when it is not one of this grammar (a hand-written one)."""
    found = _CAUSE_RE.fullmatch((text or "").strip())
    if not found:
        return None
    verb, image, who, note = found.groups()
    return Cause(verb, image, who or "", note or "")


def check(text: str) -> str:
    """A cause a person or the command may set: one line of printable text, at most MAX_CAUSE characters."""
    if "\n" in text or "\r" in text or not text.isprintable():
        raise ValueError("must be one line of printable text")
    if len(text) > MAX_CAUSE:
        raise ValueError(f"is {len(text)} characters long; at most {MAX_CAUSE}")
    return text


def annotation(cause: str | None, image: str, keeps_running_image: bool) -> str | None:
    """The Deployment's change-cause: the configured cause when it is about ``image`` (the rollout command
    writes one with every release); else, for a plain `pulumi up` that names an image, ``up IMAGE``, so
    the annotation never tells of another image than the one the template runs. A stack that names no
    image keeps the cause of the release that runs (None: there is none yet)."""
    said = parse(cause)
    if keeps_running_image:
        return cause or None
    if cause and (said is None or said.image == image):
        return cause
    return Cause("up", image).text()


def who(env: Mapping[str, str] | None = None) -> str:
    """Who releases: the GitHub actor and the workflow run when in GitHub Actions, else the local user."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true" and env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        run = f"{server}/{env.get('GITHUB_REPOSITORY', '')}/actions/runs/{env['GITHUB_RUN_ID']}"
        return f"{env.get('GITHUB_ACTOR') or 'github-actions'} (run {run})"
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return f"uid {os.getuid()}"
