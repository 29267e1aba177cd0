"""A stand-in for the AWS Load Balancer Controller and its ALB on the local target (canaryTraffic weights).

For each Ingress of class `alb` (in the namespaces given, else all), as the controller would:
- a load balancer: an HTTP listener on port 80 of a loopback address of its own (127.77.x.y), which it
  writes into the Ingress's status (`status.loadBalancer.ingress[0].ip`: the stack's url); the address the
  status has from an earlier run of the stand-in is taken again when free, so a stack's url outlives it;
- its listener's default action from the Ingress's default backend: one Service, or with the port
  `use-annotation` the forward action of the annotation `alb.ingress.kubernetes.io/actions.<name>`, whose
  target groups are Services and whose weights split the requests;
- a change of that action taking effect `--propagation-seconds` after the API server has it (the controller
  reconciles, then the ALB applies: seconds, on AWS), on the listener and in the ELBv2 API at once;
- each request sent to one target group drawn by weight, a new connection to the Service's cluster address
  (kube-proxy picks a ready pod); `503` when the group's Service has no ready endpoint, `502` when the
  target cannot be reached or does not answer;
- the same load balancer, target groups and listener in moto's ELBv2, served on a loopback port, so the
  rollout command reads them back (DescribeLoadBalancers, DescribeTargetGroups, DescribeListeners,
  DescribeRules) as it reads an ALB's. Its DNS name is its loopback address (an ALB's is a name under
  elb.amazonaws.com, which nothing here resolves).

What is the controller's and what is the stand-in's own is in docs/upstream.md. Not modelled: listener rules
other than the default, HTTPS, health checks of its own (kube-proxy's ready endpoints stand for healthy
targets), registered targets, readiness gates, deregistration delay, the ALB's access logs and metrics.

Run with the emulator's virtualenv (tools/aws-emulator/requirements.txt), root (port 80), kubectl and a
KUBECONFIG: python alb.py [--namespace NS ...] [--propagation-seconds S] [--lifetime-seconds L]. It prints
one JSON line once it serves, `{"elbv2": ENDPOINT, "region": REGION}`: the rollout command reaches it with
AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2=ENDPOINT and AWS_DEFAULT_REGION=REGION. It stops by itself after
its lifetime, on SIGTERM, or (--stop-on-eof) when its input closes.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import http.client
import http.server
import json
import logging
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"  # moto's account
REGION = "ap-northeast-2"
INGRESS_CLASS = "alb"
ACTIONS = "alb.ingress.kubernetes.io/actions."
USE_ANNOTATION = "use-annotation"
# How often the Ingresses and the Services' endpoints are read.
LOOP_S = 0.5
# An ALB's idle timeout, its default: how long a target may take to answer.
TARGET_TIMEOUT_S = 60.0
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
UNAVAILABLE = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>\n"
BAD_GATEWAY = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"
Weights = tuple[tuple[str, int], ...]


class Kube:
    """The API server through `kubectl proxy` on a loopback port (the kubeconfig's credentials stay kubectl's)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["kubectl", "proxy", "--port=0", "--address=127.0.0.1"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "Starting to serve on 127.0.0.1:PORT"
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not found:
            self.process.kill()
            raise SystemExit(f"alb: kubectl proxy did not start: {line.strip()!r}")
        self.base = f"http://127.0.0.1:{found.group(1)}"

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.base + path, timeout=10) as answer:
            return dict(json.load(answer))

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        request = urllib.request.Request(
            f"{self.base}/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses/{name}/status",
            data=json.dumps({"status": status}).encode(),
            method="PATCH",
            headers={"Content-Type": "application/merge-patch+json"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def name_part(name: str) -> str:
    """A name as the controller writes it into an AWS name: letters and digits, at most 8."""
    return re.sub(r"[^A-Za-z0-9]", "", name)[:8]


def aws_name(namespace: str, name: str, *salt: str) -> str:
    """`k8s-<namespace>-<name>-<hash>`, the controller's form for load balancers and target groups."""
    digest = hashlib.sha256("/".join((namespace, name, *salt)).encode()).hexdigest()[:10]
    return f"k8s-{name_part(namespace)}-{name_part(name)}-{digest}"


def forward_of(ingress: dict[str, Any]) -> Weights | None:
    """The default action's target groups (Service, weight), as the Ingress asks; None when it asks nothing
    this stand-in serves (no default backend, an action that does not forward)."""
    backend = ((ingress.get("spec") or {}).get("defaultBackend") or {}).get("service") or {}
    name, port = backend.get("name"), (backend.get("port") or {})
    if not name:
        return None
    if port.get("name") != USE_ANNOTATION:
        return ((str(name), 1),)
    text = ((ingress.get("metadata") or {}).get("annotations") or {}).get(ACTIONS + str(name))
    try:
        action = json.loads(text or "")
    except ValueError:
        return None
    if action.get("type") != "forward":
        return None
    groups = (action.get("forwardConfig") or {}).get("targetGroups") or []
    return tuple((str(g["serviceName"]), int(g.get("weight", 1))) for g in groups if g.get("serviceName"))


@dataclass
class Target:
    """A target group's Service: where its requests go, and whether any endpoint is ready."""

    address: str | None = None
    port: int | None = None
    ready: int = 0


@dataclass
class Balancer:
    """One Ingress's load balancer."""

    namespace: str
    name: str
    address: str
    arn: str
    server: http.server.ThreadingHTTPServer
    groups: dict[str, str] = field(default_factory=dict)  # Service -> target group ARN
    listener_arn: str | None = None
    applied: Weights = ()
    asked: Weights = ()
    due: float = 0.0
    targets: dict[str, Target] = field(default_factory=dict)

    def pick(self) -> tuple[str | None, Target | None]:
        """The Service a request goes to, drawn by the applied weights, and its target."""
        weights = self.applied
        total = sum(w for _, w in weights)
        if total <= 0:
            return None, None
        service = random.choices([s for s, _ in weights], weights=[w for _, w in weights])[0]
        return service, self.targets.get(service)


class Handler(http.server.BaseHTTPRequestHandler):
    """The listener: each request to one target group, drawn by weight."""

    protocol_version = "HTTP/1.1"
    balancer: Balancer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def answer(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        for key, value in headers or [("Content-Type", "text/html")]:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        _, target = self.balancer.pick()
        if target is None or not target.ready or target.address is None or target.port is None:
            self.answer(503, UNAVAILABLE)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = self.client_address[0]
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-Port"] = "80"
        upstream = http.client.HTTPConnection(target.address, target.port, timeout=TARGET_TIMEOUT_S)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            content = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}]
        except (OSError, http.client.HTTPException):
            self.answer(502, BAD_GATEWAY)
            return
        finally:
            upstream.close()
        self.answer(response.status, content, kept)

    def do_GET(self) -> None:
        self.forward()

    def do_HEAD(self) -> None:
        self.forward()

    def do_POST(self) -> None:
        self.forward()

    def do_PUT(self) -> None:
        self.forward()

    def do_DELETE(self) -> None:
        self.forward()

    def do_PATCH(self) -> None:
        self.forward()

    def do_OPTIONS(self) -> None:
        self.forward()


def listen(taken: set[str], prefer: str | None = None) -> tuple[str, http.server.ThreadingHTTPServer]:
    """A loopback address of the load balancer's own, listening on port 80: ``prefer`` (the address the Ingress
    has from an earlier run of the stand-in, so its stack's url stays) when it is free, else a new one."""
    wanted = [prefer] if prefer and prefer.startswith("127.77.") else []
    for attempt in range(200):
        address = wanted[0] if attempt == 0 and wanted else f"127.77.{random.randint(0, 255)}.{random.randint(1, 254)}"
        if address in taken:
            continue
        try:
            server = http.server.ThreadingHTTPServer((address, 80), Handler)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                continue
            raise
        server.daemon_threads = True
        return address, server
    raise SystemExit("alb: no free loopback address in 127.77.0.0/16")


class Standin:
    """The controller's loop over the Ingresses, and the ALBs it makes."""

    def __init__(self, kube: Kube, elbv2: Any, ec2: Any, namespaces: list[str], propagation_s: float) -> None:
        self.kube, self.elbv2, self.namespaces, self.propagation_s = kube, elbv2, namespaces, propagation_s
        self.balancers: dict[tuple[str, str], Balancer] = {}
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.vpc = vpc
        self.subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
                "SubnetId"
            ]
            for i, zone in enumerate("ac")
        ]

    def ingresses(self) -> list[dict[str, Any]]:
        paths = [f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses" for ns in self.namespaces] or [
            "/apis/networking.k8s.io/v1/ingresses"
        ]
        found: list[dict[str, Any]] = []
        for path in paths:
            found.extend(self.kube.get(path).get("items") or [])
        return [i for i in found if (i.get("spec") or {}).get("ingressClassName") == INGRESS_CLASS]

    def reconcile(self) -> None:
        seen = set()
        for ingress in self.ingresses():
            meta = ingress["metadata"]
            key = (str(meta["namespace"]), str(meta["name"]))
            seen.add(key)
            if meta.get("deletionTimestamp"):
                continue
            had = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [{}]
            balancer = self.balancers.get(key) or self.make(*key, prefer=had[0].get("ip"))
            asked = forward_of(ingress)
            if asked is not None and asked != balancer.asked:
                balancer.asked, balancer.due = asked, time.monotonic() + self.propagation_s
            if balancer.asked != balancer.applied and time.monotonic() >= balancer.due:
                self.apply(balancer)
            self.read_targets(balancer)
        for key in set(self.balancers) - seen:
            self.remove(self.balancers.pop(key))

    def make(self, namespace: str, name: str, prefer: str | None = None) -> Balancer:
        address, server = listen({b.address for b in self.balancers.values()}, prefer)
        made = self.elbv2.create_load_balancer(
            Name=aws_name(namespace, name)[:32], Subnets=self.subnets, Scheme="internal", Type="application"
        )["LoadBalancers"][0]
        # moto names it under elb.amazonaws.com; here the name users reach is the listener's address.
        from moto.elbv2.models import elbv2_backends

        elbv2_backends[ACCOUNT][REGION].load_balancers[made["LoadBalancerArn"]].dns_name = address
        balancer = Balancer(namespace, name, address, str(made["LoadBalancerArn"]), server)
        server.RequestHandlerClass = type("BoundHandler", (Handler,), {"balancer": balancer})
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.kube.patch_status(namespace, name, {"loadBalancer": {"ingress": [{"ip": address}]}})
        self.balancers[(namespace, name)] = balancer
        say(f"{namespace}/{name} at http://{address}")
        return balancer

    def group(self, balancer: Balancer, service: str) -> str:
        if service not in balancer.groups:
            made = self.elbv2.create_target_group(
                Name=aws_name(balancer.namespace, service, "http", balancer.name)[:32],
                Protocol="HTTP",
                Port=80,
                VpcId=self.vpc,
                TargetType="ip",
            )["TargetGroups"][0]
            balancer.groups[service] = str(made["TargetGroupArn"])
        return balancer.groups[service]

    def apply(self, balancer: Balancer) -> None:
        """The asked action on the listener, in the API and for the requests at once."""
        groups = [{"TargetGroupArn": self.group(balancer, s), "Weight": w} for s, w in balancer.asked]
        actions = [
            {
                "Type": "forward",
                "ForwardConfig": {"TargetGroups": groups, "TargetGroupStickinessConfig": {"Enabled": False}},
            }
        ]
        if balancer.listener_arn is None:
            made = self.elbv2.create_listener(
                LoadBalancerArn=balancer.arn, Protocol="HTTP", Port=80, DefaultActions=actions
            )
            balancer.listener_arn = str(made["Listeners"][0]["ListenerArn"])
        else:
            self.elbv2.modify_listener(ListenerArn=balancer.listener_arn, DefaultActions=actions)
        # Every Service's target read before a request can be sent to it.
        for service, _ in balancer.asked:
            balancer.targets.setdefault(service, Target())
        self.read_targets(balancer)
        balancer.applied = balancer.asked
        shares = ", ".join(f"{s} {w}" for s, w in balancer.applied)
        say(f"{balancer.namespace}/{balancer.name} forwards {shares}")

    def read_targets(self, balancer: Balancer) -> None:
        for service in {s for s, _ in balancer.asked} | {s for s, _ in balancer.applied}:
            target = balancer.targets.setdefault(service, Target())
            base = f"/api/v1/namespaces/{balancer.namespace}/services/{service}"
            try:
                spec = self.kube.get(base).get("spec") or {}
            except urllib.error.HTTPError:
                target.ready = 0
                continue
            ports = spec.get("ports") or []
            port = next((p for p in ports if p.get("name") == "http"), ports[0] if ports else None)
            selector = urllib.parse.quote(f"kubernetes.io/service-name={service}")
            slices = (
                self.kube.get(
                    f"/apis/discovery.k8s.io/v1/namespaces/{balancer.namespace}/endpointslices?labelSelector={selector}"
                ).get("items")
                or []
            )
            ready = sum(
                1
                for piece in slices
                for endpoint in piece.get("endpoints") or []
                if (endpoint.get("conditions") or {}).get("ready") is not False
            )
            target.address, target.port = spec.get("clusterIP"), (port or {}).get("port")
            target.ready = ready

    def remove(self, balancer: Balancer) -> None:
        balancer.server.shutdown()
        balancer.server.server_close()
        if balancer.listener_arn:
            self.elbv2.delete_listener(ListenerArn=balancer.listener_arn)
        self.elbv2.delete_load_balancer(LoadBalancerArn=balancer.arn)
        for arn in balancer.groups.values():
            self.elbv2.delete_target_group(TargetGroupArn=arn)
        say(f"{balancer.namespace}/{balancer.name} removed")


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} alb: {line}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", action="append", default=[], help="serve this namespace's Ingresses only")
    parser.add_argument("--propagation-seconds", type=float, default=5.0, help="a new action's delay (5)")
    parser.add_argument("--lifetime-seconds", type=float, default=7200.0, help="stop after this long (7200)")
    parser.add_argument("--stop-on-eof", action="store_true", help="stop when the input closes (its starter went)")
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server would log every request

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    keys = {"aws_access_key_id": "standin", "aws_secret_access_key": "standin", "region_name": REGION}
    elbv2 = boto3.client("elbv2", endpoint_url=endpoint, **keys)
    ec2 = boto3.client("ec2", endpoint_url=endpoint, **keys)
    kube = Kube()
    standin = Standin(kube, elbv2, ec2, args.namespace, args.propagation_seconds)
    closed = threading.Event()

    def watch_input() -> None:
        sys.stdin.read()  # whoever started it went away
        closed.set()

    signal.signal(signal.SIGTERM, lambda *_: closed.set())
    if args.stop_on_eof:
        threading.Thread(target=watch_input, daemon=True).start()
    print(json.dumps({"elbv2": endpoint, "region": REGION}), flush=True)
    deadline = time.monotonic() + args.lifetime_seconds
    try:
        while time.monotonic() < deadline and not closed.is_set():
            try:
                standin.reconcile()
            except (OSError, urllib.error.URLError) as err:
                say(f"the API server did not answer ({err}); again in {LOOP_S}s")
            closed.wait(LOOP_S)
    finally:
        for balancer in standin.balancers.values():
            balancer.server.shutdown()
        kube.close()
        moto.stop()


if __name__ == "__main__":
    main()
