"""An AWS emulator for the aws tier: moto's server on a loopback port, with IAM enforced, and the AWS CLI.

After the three unauthenticated calls that make its administrator (a user with an access key and an
allow-all policy), moto authorises every request against the caller's own policies, as AWS does
(moto's INITIAL_NO_AUTH_ACTION_COUNT). The CI roles' sessions come from sts:AssumeRole by that
administrator: the stand-in for the OIDC exchange configure-aws-credentials makes
(AssumeRoleWithWebIdentity, which moto's authorisation layer cannot take unsigned: it fails reading the
missing Authorization header). moto checks a role's trust policy on AssumeRole, so `trust_administrator`
first replaces the role's trust (the documented one trusts GitHub's OIDC provider alone); the role's
permission policies, which are what the sessions are held to, are untouched.

The emulator and the CLI live in a virtualenv of their own (tools/aws-emulator/requirements.txt, made by
`make aws-emulator`), named by ROLLING_AWS_VENV.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ACCOUNT = "123456789012"  # moto's account
# moto's server, its S3 requests authorised by the IAM actions AWS checks for them.
SERVER = Path(__file__).resolve().parents[1] / "tools" / "aws-emulator" / "server.py"
REGION = "ap-northeast-2"
# The calls that make the administrator, before moto starts authorising: create-user, put-user-policy,
# create-access-key.
_SETUP_CALLS = 3


def venv() -> Path:
    found = os.environ.get("ROLLING_AWS_VENV")
    if not found or not (Path(found) / "bin" / "moto_server").exists():
        raise RuntimeError(
            "the aws tier needs the emulator's virtualenv: `make aws-emulator` makes it and sets ROLLING_AWS_VENV"
        )
    return Path(found)


@dataclass(frozen=True)
class Credentials:
    """One principal's keys."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def env(self) -> dict[str, str]:
        found = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token:
            found["AWS_SESSION_TOKEN"] = self.session_token
        return found


@dataclass(frozen=True)
class Emulator:
    """A running emulator: its endpoint and its administrator."""

    endpoint: str
    admin: Credentials

    def env(self, who: Credentials) -> dict[str, str]:
        """The environment a command runs in as ``who``: the CLI on PATH, pointed at the emulator (the
        AWS SDKs' AWS_ENDPOINT_URL), no profile or credentials of the machine's."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return {
            **base,
            "PATH": f"{venv() / 'bin'}:{base.get('PATH', '')}",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            **who.env(),
        }

    def aws(self, who: Credentials, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`aws ARGS --output json` as ``who``."""
        done = subprocess.run(
            ["aws", *args, "--output", "json"],
            env=self.env(who),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"aws {' '.join(args)}: {done.stderr.strip()}")
        return done

    def trust_administrator(self, role_name: str) -> None:
        """Let the administrator assume ``role_name`` (see the module's docstring)."""
        principal = f"arn:aws:iam::{ACCOUNT}:user/admin"
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}],
        }
        self.aws(
            self.admin, "iam", "update-assume-role-policy", "--role-name", role_name, "--policy-document",
            json.dumps(trust),
        )  # fmt: skip

    def assume(self, role_name: str, session: str = "GitHubActions") -> Credentials:
        """A session of the role, as the workflows' configure-aws-credentials step gives them."""
        arn = f"arn:aws:iam::{ACCOUNT}:role/{role_name}"
        found = json.loads(
            self.aws(self.admin, "sts", "assume-role", "--role-arn", arn, "--role-session-name", session).stdout
        )["Credentials"]
        return Credentials(found["AccessKeyId"], found["SecretAccessKey"], found["SessionToken"])

    def backend_url(self, documented: str) -> str:
        """The documented `s3://` backend URL with the emulator's endpoint parameters (gocloud.dev's s3blob:
        endpoint, use_path_style, region), the path kept as written."""
        return f"{documented}?endpoint={self.endpoint}&use_path_style=true&region={REGION}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the AWS emulator exited at start ({process.returncode})")
        with socket.socket() as probe:
            # A connection only: an HTTP request could count as one of the unauthenticated calls.
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the AWS emulator did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


@contextmanager
def running(log: Path, pidfile: Path | None = None) -> Iterator[Emulator]:
    """An emulator with its administrator, stopped (and its pid file removed) afterwards, pass or fail."""
    port = _free_port()
    # AWS's managed policies (PowerUserAccess, which the infrastructure role is given) exist, as in AWS.
    env: Mapping[str, str] = {
        **os.environ,
        "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_CALLS),
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(venv() / "bin" / "python"), str(SERVER), "-H", "127.0.0.1", "-p", str(port)],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if pidfile:
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{process.pid}\n")
    try:
        _wait_listening(port, process)
        nobody = Emulator(f"http://127.0.0.1:{port}", Credentials("setup", "setup"))
        everything = json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        )
        nobody.aws(nobody.admin, "iam", "create-user", "--user-name", "admin")
        nobody.aws(
            nobody.admin, "iam", "put-user-policy", "--user-name", "admin", "--policy-name", "all",
            "--policy-document", everything,
        )  # fmt: skip
        key = json.loads(nobody.aws(nobody.admin, "iam", "create-access-key", "--user-name", "admin").stdout)
        admin = Credentials(key["AccessKey"]["AccessKeyId"], key["AccessKey"]["SecretAccessKey"])
        yield Emulator(nobody.endpoint, admin)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if pidfile:
            pidfile.unlink(missing_ok=True)
