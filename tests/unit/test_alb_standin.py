"""The load balancer stand-in (tools/aws-emulator/alb.py) reads the Ingress the program writes as the controller
does, names its target groups so the command tells them apart, and answers as an ALB does when a target group
has no ready target or its target fails. Its moto and Kubernetes sides run in the e2e tier (test_weighted.py)."""

from __future__ import annotations

import http.client
import http.server
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from infra.identity import CANARY_SERVICE, SERVICE
from infra.weights import ACTION, ACTION_ANNOTATION, USE_ANNOTATION, forward_action, service_of
from tests.unit.loopback import serving

STANDIN = Path(__file__).resolve().parents[2] / "tools" / "aws-emulator" / "alb.py"


def standin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("alb_standin", STANDIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ALB = standin()


def ingress(weight: int | None) -> dict[str, Any]:
    """The Ingress as the program makes it: weighted (with ``weight``) or the app's Service alone."""
    if weight is None:
        backend = {"service": {"name": SERVICE, "port": {"name": "http"}}}
        return {"metadata": {"annotations": {}}, "spec": {"defaultBackend": backend}}
    backend = {"service": {"name": ACTION, "port": {"name": USE_ANNOTATION}}}
    annotations = {ACTION_ANNOTATION: forward_action(weight)}
    return {"metadata": {"annotations": annotations}, "spec": {"defaultBackend": backend}}


def test_the_forward_action_the_program_writes_is_the_one_the_standin_serves() -> None:
    assert ALB.forward_of(ingress(25)) == ((SERVICE, 75), (CANARY_SERVICE, 25))
    assert ALB.forward_of(ingress(0)) == ((SERVICE, 100), (CANARY_SERVICE, 0))
    assert ALB.forward_of(ingress(None)) == ((SERVICE, 1),)
    broken = ingress(5)
    broken["metadata"]["annotations"][ACTION_ANNOTATION] = "{not json"
    assert ALB.forward_of(broken) is None


def test_its_target_groups_are_told_apart_by_the_commands_own_reading_of_the_controllers_names() -> None:
    for service in (SERVICE, CANARY_SERVICE):
        name = ALB.aws_name("rolling-e2e-namespace", service, "http", "nginx")[:32]
        assert service_of(name) == service, name


@contextmanager
def target(status: int) -> Iterator[int]:
    """A target that answers ``status``; its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"from the target\n"
            self.send_response(status)
            self.send_header("X-App-Version", "1.16.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    with serving(Handler) as url:
        yield int(url.rsplit(":", 1)[1])


@contextmanager
def listener(targets: dict[str, Any], weights: tuple[tuple[str, int], ...]) -> Iterator[int]:
    """The stand-in's listener on loopback with ``targets`` and ``weights`` applied; its port."""
    # The balancer's own server is the stand-in's to run; here the test's loopback server runs its handler.
    balancer = ALB.Balancer("ns", "nginx", "127.0.0.1", "arn", None, applied=weights, targets=targets)
    with serving(type("Bound", (ALB.Handler,), {"balancer": balancer})) as url:
        yield int(url.rsplit(":", 1)[1])


def get(port: int) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/version.txt")
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        connection.close()


def test_requests_go_to_the_weighted_groups_target_with_its_answer_as_it_gave_it() -> None:
    with target(500) as port:
        targets = {SERVICE: ALB.Target("127.0.0.1", 1, ready=0), CANARY_SERVICE: ALB.Target("127.0.0.1", port, 1)}
        with listener(targets, ((SERVICE, 0), (CANARY_SERVICE, 100))) as front:
            status, headers, body = get(front)
    assert (status, headers["X-App-Version"], body) == (500, "1.16.1", b"from the target\n")


def test_a_group_with_no_ready_target_is_503_and_a_target_that_cannot_be_reached_502() -> None:
    closed = ALB.Target("127.0.0.1", 1, ready=1)  # port 1: nothing listens
    with listener({SERVICE: ALB.Target("127.0.0.1", 1, ready=0)}, ((SERVICE, 100),)) as front:
        assert get(front)[0] == 503
    with listener({SERVICE: closed}, ((SERVICE, 100),)) as front:
        assert get(front)[0] == 502
    with listener({SERVICE: closed}, ((SERVICE, 0),)) as front:
        assert get(front)[0] == 503, "a listener whose weights send nowhere"
