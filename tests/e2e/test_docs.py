"""The commands the docs give for looking at the local cluster, run as written against a deployed stack.

Every line of a shell block in README.md and docs/*.md that reads the cluster (a `kubectl` that only
reads, `cluster/node.sh`, a `curl` of the Service) runs here, so a wrong name, a missing namespace or a
flag that changed fails `make test`. The stack lives in a namespace of its own, so `-n rolling` (the
app's namespace, as the docs say) is the one word rewritten.
"""

from __future__ import annotations

import re
import subprocess
import time

from tests.e2e.harness import ROOT, LocalStack

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# kubectl verbs that change nothing; an interactive `exec -it` needs a terminal and is left out.
READING = re.compile(r"^kubectl (-n \S+ )?(get|describe|logs|rollout (status|history)|top|explain)\b")
NODE = re.compile(r"^cluster/node\.sh (status|env|exec iptables-save)\b")


def reads_the_cluster(command: str) -> bool:
    return bool(READING.match(command) or NODE.match(command) or (command.startswith("curl ") and "kubectl" in command))


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for each cluster-reading line of the docs' shell blocks, comments dropped."""
    found = []
    for doc in DOCS:
        fenced = False
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            text = line.strip()
            if text.startswith("```"):
                fenced = text in ("```sh", "```bash") if not fenced else False
                continue
            command = re.sub(r"\s{2,}#.*$", "", text)
            if fenced and reads_the_cluster(command):
                found.append((f"{doc.relative_to(ROOT)}:{number}", command))
    return found


def test_the_docs_commands_for_looking_inside_run_as_written(deployed: LocalStack) -> None:
    commands = documented_commands()
    # The test reads what it should: the commands docs/local-cluster.md gives, at the least.
    assert {c for _, c in commands} >= {
        "kubectl -n rolling get pods -o wide",
        "kubectl -n rolling logs deploy/nginx-deployment",
        "cluster/node.sh status",
        "curl \"http://$(kubectl -n rolling get svc nginx -o jsonpath='{.spec.clusterIP}')/version.txt\"",
    }, commands
    failed = []
    for where, command in commands:
        run = command.replace("-n rolling ", f"-n {deployed.namespace} ")
        deadline = time.monotonic() + 10  # a Service's rules reach kube-proxy within a second or so
        while True:
            result = subprocess.run(
                ["bash", "-o", "pipefail", "-c", run], check=False, cwd=ROOT, capture_output=True, text=True, timeout=30
            )
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        if result.returncode != 0:
            failed.append(f"{where}: `{command}` exited {result.returncode}: {result.stderr.strip()[-300:]}")
        elif command.startswith("curl") and "version.txt" in command:
            assert result.stdout.strip() == "1.14.2", (where, result.stdout)
    assert not failed, "\n".join(failed)
