"""The real node: the pod spec runs under its security context, probes gate traffic, Services route,
and the node's network and files stay apart from the machine's."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pulumi.automation as auto
from kubernetes import client

from infra.identity import DEPLOYMENT_REF, SELECTOR, SERVICE
from rigs import load, node
from rigs.project import copy_project
from tests.e2e.harness import ROOT, LocalStack, api_client, local_stack, service_url, wait_for
from tests.e2e.images import NEVER_READY, image


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as response:
        return str(response.read().decode()).strip()


def pod_shell(stack: LocalStack, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "-n", stack.namespace, "exec", DEPLOYMENT_REF, "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_request_through_the_service_names_the_version(deployed: LocalStack) -> None:
    # kube-proxy programs a Service's endpoints up to a second after the pods are Ready.
    wait_for(lambda: get(service_url(deployed, "/version.txt")) == "1.14.2", 10, "the Service to route")
    assert "Version <code>1.14.2</code>" in get(service_url(deployed, "/"))


def test_the_url_output_serves_the_deployed_version(deployed: LocalStack) -> None:
    # What a user runs: curl $(pulumi stack output url)/version.txt, before and after a rollout.
    def served() -> str | None:
        url = str(deployed.stack.outputs()["url"].value)
        # Only an address in the node's Service range is ever requested.
        return load.fetch_version(node.service_url(str(urllib.parse.urlsplit(url).hostname), "/version.txt"))

    wait_for(lambda: served() == "1.14.2", 15, "the url output to serve 1.14.2")
    deployed.set(imageTag="1.16.1")
    deployed.up()
    wait_for(lambda: served() == "1.16.1", 15, "the url output to serve 1.16.1")


def test_the_pod_runs_under_its_security_context(deployed: LocalStack) -> None:
    # Every process of the app, the nginx master first, as uid and gid 10001 with no capability at all.
    status = pod_shell(deployed, "for p in /proc/[0-9]*; do cat $p/status; echo; done")
    assert status.returncode == 0, status.stderr
    processes = [
        dict((key, value.split()) for key, value in (line.split(":", 1) for line in block.splitlines() if ":" in line))
        for block in status.stdout.split("\n\n")
        if block.strip()
    ]
    nginx = [p for p in processes if p["Name"] == ["nginx"]]
    assert len(nginx) >= 2, processes  # the master and its worker
    for process in processes:
        assert process["Uid"] == ["10001"] * 4 and process["Gid"] == ["10001"] * 4, process
        for field in ("CapEff", "CapPrm", "CapBnd"):
            assert int(process[field][0], 16) == 0, (field, process)
        assert process["NoNewPrivs"] == ["1"]
        assert process["Seccomp"] == ["2"]  # a filter: the runtime's default profile
    # Nothing but the scratch folders can be written.
    refused = pod_shell(deployed, "touch /usr/share/nginx/html/x")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert pod_shell(deployed, "touch /var/cache/nginx/x /tmp/x").returncode == 0


def test_a_pod_that_is_not_ready_gets_no_traffic(tmp_path: Path) -> None:
    with local_stack(tmp_path, imageTag="1.14.2", progressDeadlineSeconds=15) as stack:
        stack.up()
        wait_for(lambda: get(service_url(stack, "/version.txt")) == "1.14.2", 10, "the Service to route")
        stack.set(imageTag=NEVER_READY)
        failed: dict[str, BaseException] = {}

        def roll() -> None:
            try:
                stack.up()
            except auto.CommandError as err:
                failed["up"] = err

        thread = threading.Thread(target=roll)
        thread.start()
        core = client.CoreV1Api(api_client())

        def running_unready() -> list[client.V1Pod]:
            pods = core.list_namespaced_pod(stack.namespace, label_selector=SELECTOR).items
            return [
                p
                for p in pods
                if p.spec.containers[0].image == image(NEVER_READY)
                and p.status.phase == "Running"
                and not any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            ]

        wait_for(lambda: bool(running_unready()), 60, "the new pod to run without being ready")
        answers = {get(service_url(stack, "/version.txt")) for _ in range(40)}
        assert answers == {"1.14.2"}, answers
        slices = client.DiscoveryV1Api(api_client()).list_namespaced_endpoint_slice(
            stack.namespace, label_selector=f"kubernetes.io/service-name={SERVICE}"
        )
        unready = {p.status.pod_ip for p in running_unready()}
        listed = [e for s in slices.items for e in s.endpoints or [] if set(e.addresses) & unready]
        assert listed, "the unready pod is one of the Service's endpoints, listed as not ready"
        assert all(endpoint.conditions.ready is False for endpoint in listed)
        thread.join(timeout=120)
        assert "up" in failed, "the rollout to a server that never gets ready must fail"


def test_pod_and_service_ranges_never_take_the_default_route() -> None:
    env = node.env()
    for cidr in (env["POD_CIDR"], env["SERVICE_CIDR"]):
        network = ipaddress.ip_network(cidr)
        for address in (network[1], network[network.num_addresses // 2], network[-2]):
            route = json.loads(
                subprocess.run(
                    ["ip", "-j", "route", "get", str(address)], capture_output=True, text=True, check=True
                ).stdout
            )[0]
            assert route.get("dev") == env["NODE_VETH"], route
            assert route.get("gateway") == env["NODE_ADDR"], route
    inside = subprocess.run(
        [str(ROOT / "cluster" / "node.sh"), "exec", "ip", "route"], capture_output=True, text=True, check=True
    ).stdout
    assert "default" not in inside, "the node must have no way out of the machine"


def machine_state(cluster: str) -> dict[str, object]:
    """What a node could change on the machine, read from the machine's own namespace."""

    def out(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout

    def listing(folder: str) -> list[str]:
        path = Path(folder)
        return sorted(str(p) for p in path.glob("*")) if path.is_dir() else []

    sysctls = [
        "vm/overcommit_memory",
        "vm/panic_on_oom",
        "kernel/panic",
        "kernel/panic_on_oops",
        "net/ipv4/ip_forward",
        "net/bridge/bridge-nf-call-iptables",
    ]
    return {
        "netns": out("ip", "netns", "list"),
        "links": sorted(line.split(":")[1].strip() for line in out("ip", "-o", "link").splitlines()),
        "routes": out("ip", "route"),
        "iptables": [line for line in out("iptables-save").splitlines() if not line.startswith(("#", ":"))],
        "mounts": Path("/proc/mounts").read_text(),
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/rolling-{cluster}")),
        "sysctls": {name: Path("/proc/sys", name).read_text() for name in sysctls},
        "files": {d: listing(d) for d in ("/var/lib", "/run", "/var/log", "/usr/libexec", "/etc/cni")},
        "kube": Path.home().joinpath(".kube").exists(),
        "processes": out("pgrep", "-af", f"/node/{cluster}|clusters/{cluster}"),
    }


def test_cluster_down_leaves_the_machine_as_it_found_it() -> None:
    cluster = f"{os.environ['ROLLING_CLUSTER']}-clean"  # beside the tier's own cluster, never a user's
    env = {**os.environ, "ROLLING_CLUSTER": cluster, "ROLLING_NODE": "real"}
    script = str(ROOT / "cluster" / "cluster.sh")
    subprocess.run([script, "down"], env=env, capture_output=True, check=False)
    before = machine_state(cluster)
    try:
        up = subprocess.run([script, "up"], env=env, capture_output=True, text=True, timeout=180, check=False)
        assert up.returncode == 0, up.stderr
        during = machine_state(cluster)
        assert during["cgroups"] and during["netns"] != before["netns"], "the node did not start"
    finally:
        down = subprocess.run([script, "down"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0, down.stderr
    after = machine_state(cluster)
    for key in before:
        assert after[key] == before[key], key


def node_processes(cluster: str) -> set[str]:
    """Every process in the node's cgroup tree (cluster/node.sh puts all it runs there)."""
    return {
        pid
        for procs in Path("/sys/fs/cgroup").glob(f"*/rolling-{cluster}/**/cgroup.procs")
        for pid in procs.read_text().split()
    }


def test_a_dead_daemon_stops_the_node_and_the_demo_survives_the_cluster_made_again(tmp_path: Path) -> None:
    # As a user lives it: `make demo`; a daemon of the node dies (here the kubelet, killed); `make
    # cluster-status` says which and fails; `make cluster-up` makes the cluster again; `make demo` again
    # works, though the local stack's state still lists the objects of the cluster that is gone.
    cluster = f"{os.environ['ROLLING_CLUSTER']}-life"
    env = {
        **os.environ,
        "ROLLING_CLUSTER": cluster,
        "ROLLING_NODE": "real",
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "rolling-local",
    }
    script = str(ROOT / "cluster" / "cluster.sh")
    project = copy_project(tmp_path / "project")
    shutil.copy2(ROOT / "Pulumi.local.yaml", project / "Pulumi.local.yaml")

    def cluster_sh(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)

    def demo() -> subprocess.CompletedProcess[str]:
        demo_sh = str(project / "scripts" / "demo.sh")
        return subprocess.run([demo_sh], env=env, capture_output=True, text=True, timeout=420, check=False)

    cluster_sh("down")
    try:
        up = cluster_sh("up")
        assert up.returncode == 0, up.stderr
        env["KUBECONFIG"] = cluster_sh("kubeconfig").stdout.strip()
        first = demo()
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert first.stdout.rstrip().endswith("-> 1.1.0"), first.stdout[-500:]

        state = Path(node.env(cluster)["NODE_STATE"])
        kubelet = int((state / "pids" / "kubelet").read_text())
        os.kill(kubelet, signal.SIGKILL)
        wait_for(lambda: cluster_sh("status").returncode != 0, 15, "cluster-status to see the node stopped")
        status = cluster_sh("status")
        assert "node: STOPPED" in status.stdout, status.stdout
        assert f"kubelet (pid {kubelet}) exited with status 137" in status.stdout, status.stdout
        assert "containerd NOT running" in status.stdout, "the supervisor stopped the rest of the node"
        wait_for(lambda: not node_processes(cluster), 15, "every process of the stopped node to end")

        again = cluster_sh("up")
        assert again.returncode == 0, again.stderr
        assert "making the cluster again" in again.stderr
        second = demo()
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert second.stdout.rstrip().endswith("-> 1.1.0"), second.stdout[-500:]

        # The README's recovery as written, after `make cluster-down` and `make cluster-up` (the scripts
        # those targets run): `pulumi up --refresh`, and nothing built again: the node's registry kept the
        # stack's image across the cluster's end.
        assert cluster_sh("down", timeout=120).returncode == 0
        made = cluster_sh("up")
        assert made.returncode == 0, made.stderr
        env["KUBECONFIG"] = cluster_sh("kubeconfig").stdout.strip()
        recovered = subprocess.run(
            ["pulumi", "up", "--refresh", "--yes", "--stack", "local"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert recovered.returncode == 0, recovered.stdout[-3000:] + recovered.stderr[-3000:]
        served = subprocess.run(
            [
                "kubectl",
                "-n",
                "rolling",
                "get",
                "deploy",
                "nginx-deployment",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image} {.status.readyReplicas}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert served.stdout.split() == ["localhost:5000/rolling-app:1.1.0", "3"], served.stdout
    finally:
        down = cluster_sh("down", timeout=120)
    assert down.returncode == 0, down.stderr
    # What the node logged is kept after it is removed (a start that fails cleans up after itself too).
    assert "kubelet" in (Path(node.env(cluster)["NODE_LAST_LOGS"]) / "kubelet.log").read_text()


def test_the_app_image_stops_nginx_gracefully() -> None:
    # The pod spec sets no stop signal (the runtime sends the image's): the app image itself declares
    # nginx's graceful one, whatever its base.
    ref = f"docker://{image('1.14.2')}"
    inspect = subprocess.run(
        [str(ROOT / "cluster" / "node.sh"), "exec", "skopeo", "inspect", "--config", "--tls-verify=false", ref],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(inspect.stdout)["config"]["StopSignal"] == "SIGQUIT"
