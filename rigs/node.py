"""The local cluster's real node as tests and benchmarks reach it: its addresses, read once from
cluster/node.sh env, and URLs of Services that only ever lead into the node (node.sh routes decides)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

NODE_SH = Path(__file__).resolve().parents[1] / "cluster" / "node.sh"


def env(cluster: str | None = None) -> dict[str, str]:
    """The node of ``cluster`` (by default ROLLING_CLUSTER's): its namespace, addresses, ranges and state
    folder (node.sh env)."""
    environment = {**os.environ, "ROLLING_CLUSTER": cluster} if cluster else None
    out = subprocess.run([str(NODE_SH), "env"], capture_output=True, text=True, check=True, env=environment).stdout
    return dict(word.split("=", 1) for word in out.split())


def service_url(cluster_ip: str, path: str) -> str:
    """The URL of a Service on the node, reached from this machine through the node's link. Refuses an
    address outside the node's ranges: traffic to it would leave by the default route."""
    done = subprocess.run([str(NODE_SH), "routes", cluster_ip], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ValueError(done.stderr.strip() or f"{cluster_ip} is not the node's")
    return f"http://{cluster_ip}{path}"
