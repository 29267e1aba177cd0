"""The watchdog's plans, Role and Job (infra/kube/watchdog.py): what each canary way and the bake undo, as the
breach's own mitigation does; rights to exactly those objects; a pod the restricted Pod Security Standard
admits. The Go side (watchdog/main.go) reads the same fields (watchdog/main_test.go; tests/e2e/test_watchdog.py
runs it in the cluster)."""

from __future__ import annotations

import json

import pytest

from infra.identity import CANARY_DEPLOYMENT, CONTAINER, DEPLOYMENT, INGRESS, WATCHDOG
from infra.kube import watchdog
from infra.kube.lease import lease_name
from infra.weights import ACTION_ANNOTATION, forward_action

ZERO = {ACTION_ANNOTATION: forward_action(0)}


def test_each_way_undoes_what_its_breach_undoes() -> None:
    pods = watchdog.pods_canary("app:2")
    assert [(s.do, getattr(s, "deployment", None)) for s in pods.steps] == [("scale", CANARY_DEPLOYMENT)]
    weighted = watchdog.weighted_canary("app:2", ZERO)
    assert [s.do for s in weighted.steps] == ["annotate", "wait", "scale"]
    annotate = weighted.steps[0]
    assert isinstance(annotate, watchdog.Annotate) and annotate.ingress == INGRESS and annotate.annotations == ZERO
    bake = watchdog.in_place("app:2", "app:1")
    assert [s.do for s in bake.steps] == ["image", "scale", "retire"]
    image, _, retire = bake.steps
    assert isinstance(image, watchdog.SetImage)
    assert (image.deployment, image.container, image.image) == (DEPLOYMENT, CONTAINER, "app:1")
    # The release's own pods out once the template is put back (the breach's undo_in_cluster retires too).
    assert isinstance(retire, watchdog.Retire) and (retire.deployment, retire.image) == (DEPLOYMENT, "app:2")
    assert bake.stage == "bake" and pods.stage == weighted.stage == "canary"
    assert "put back to app:1" in bake.line() and "given time" not in weighted.line()


@pytest.mark.parametrize(
    "plan",
    [
        watchdog.pods_canary("app:2"),
        watchdog.weighted_canary("app:2", ZERO),
        watchdog.in_place("app:2", "r.example/app@sha256:" + "c" * 64),
        watchdog.Plan("bake", "app:2"),
    ],
)
def test_a_plan_reads_back_as_written(plan: watchdog.Plan) -> None:
    assert watchdog.Plan.parse(plan.text()) == plan
    # What the Go side reads: each step's kind in `do`, its fields by these names, a text to say.
    for raw in json.loads(plan.text())["steps"]:
        assert raw["do"] in ("scale", "annotate", "image", "retire", "wait") and raw["says"]


@pytest.mark.parametrize("text", ["", "{}", '{"stage": "canary", "release": "x", "steps": [{"do": "delete"}]}', "[1]"])
def test_text_that_is_not_a_plan_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a watchdog plan"):
        watchdog.Plan.parse(text)


def test_the_role_names_each_object_it_touches_and_nothing_more() -> None:
    lease = lease_name("dev")
    rules = watchdog.role_rules(lease, ingress=False)
    for rule in rules:
        assert "*" not in json.dumps(rule), rule
        assert set(rule["verbs"]) <= {"get", "list", "patch", "create"}, rule
        assert "delete" not in rule["verbs"] and "update" not in rule["verbs"]
    # What RBAC cannot name in advance: Events it creates, the ReplicaSets a Deployment names by its template's
    # hash (listed, and scaled down by a retirement). Every other rule names its objects.
    unnamed = [(r["resources"], r["verbs"]) for r in rules if not r.get("resourceNames")]
    assert unnamed == [(["replicasets"], ["list"]), (["replicasets/scale"], ["patch"]), (["events"], ["create"])]
    by_resource = {res: r for r in rules for res in r["resources"]}
    assert by_resource["leases"]["resourceNames"] == [lease]
    assert set(by_resource["deployments/scale"]["resourceNames"]) == {DEPLOYMENT, CANARY_DEPLOYMENT}
    assert by_resource["deployments"]["verbs"] == ["get", "patch"]
    assert "ingresses" not in by_resource
    weighted = {res: r for r in watchdog.role_rules(lease, ingress=True) for res in r["resources"]}
    assert weighted["ingresses"]["resourceNames"] == [INGRESS] and weighted["ingresses"]["verbs"] == ["patch"]


def test_the_job_runs_one_restricted_pod_under_its_account_and_ends_by_itself() -> None:
    job = watchdog.job(
        "web", "img@sha256:" + "d" * 64, lease="rolling-run-dev", holder="h/7/ci", since=5.0, stack="dev"
    )
    spec = job["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == WATCHDOG
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "--lease=rolling-run-dev" in container["args"] and "--holder=h/7/ci" in container["args"]
    assert f"--job={job['metadata']['name']}" in container["args"]
    # Nothing of it outlives a run for long: a deadline, and the cluster removes it once finished.
    assert 0 < spec["activeDeadlineSeconds"] <= 6 * 3600 and spec["ttlSecondsAfterFinished"] > 0
    # One Job per run: another run (or the same process later) gets another name.
    assert watchdog.job_name("h/7/ci", 5.0) == job["metadata"]["name"]
    assert watchdog.job_name("h/7/ci", 6.0) != job["metadata"]["name"]
    assert len(job["metadata"]["name"]) <= 63


def test_what_a_watchdog_did_reads_back() -> None:
    text = json.dumps(
        {"at": "2026-12-07T10:00:00Z", "run": "h/1/ci", "why": "lost", "stage": "bake", "release": "a:2", "did": ["x"]}
    )
    acted = watchdog.Acted.parse(text)
    assert acted is not None and acted.did == ("x",) and acted.failed is None
    assert "a:2 at its bake: x" in acted.line()
    assert watchdog.Acted.parse("not json") is None and watchdog.Acted.parse(None) is None
