"""The load balancer stand-in for canaryTraffic weights on the local target (tools/aws-emulator/alb.py),
started for the namespaces given and stopped afterwards, pass or fail; the environment the rollout command
reads its ELBv2 API in (the AWS CLI of the emulator's virtualenv, pointed at the stand-in)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rigs import aws_emulator

STANDIN = Path(__file__).resolve().parents[1] / "tools" / "aws-emulator" / "alb.py"


@dataclass(frozen=True)
class Standin:
    """A running stand-in: its ELBv2 endpoint and region."""

    endpoint: str
    region: str

    def env(self) -> dict[str, str]:
        """What the rollout command needs to read the weights back: the CLI, the endpoint, keys for it."""
        return {
            "PATH": f"{aws_emulator.venv() / 'bin'}:{os.environ.get('PATH', '')}",
            "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "standin",
            "AWS_SECRET_ACCESS_KEY": "standin",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
        }


@contextmanager
def running(
    namespaces: Sequence[str], log: Path, propagation_s: float = 5.0, lifetime_s: float = 1800
) -> Iterator[Standin]:
    """The stand-in serving the Ingresses of ``namespaces``, its own messages in ``log``."""
    args = [f"--namespace={ns}" for ns in namespaces]
    command = [
        str(aws_emulator.venv() / "bin" / "python"),
        str(STANDIN),
        *args,
        f"--propagation-seconds={propagation_s}",
        f"--lifetime-seconds={lifetime_s}",
        "--stop-on-eof",
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as said:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=said, text=True, start_new_session=True
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(
                f"the load balancer stand-in exited at start ({process.wait()}): {log.read_text()[-2000:]}"
            )
        ready = json.loads(line)
        yield Standin(str(ready["elbv2"]), str(ready["region"]))
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
