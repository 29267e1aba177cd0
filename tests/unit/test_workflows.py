"""The CI workflows users run: the steps that keep a deploy safe are there and pinned."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.loopback import serving

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
SHA_PIN = re.compile(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}")


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return dict(document)


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def step_using(job: dict[str, Any], action: str) -> dict[str, Any]:
    """The step that uses ``action`` with inputs (a bare `uses` only installs a tool)."""
    (found,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith(action + "@") and s.get("with")]
    return dict(found)


NAMES = ["pull-request.yml", "deploy.yml", "infrastructure.yml", "infrastructure-prod.yml", "promote.yml"]
ROOT = WORKFLOWS.parents[1]
# The role each job assumes, and the environment it runs in (whose name is the OIDC subject the role
# trusts; None: the event's): the deploy role rolls dev's app, the promote role prod's, the preview role
# only reads, and the infrastructure role (behind each stack's infrastructure environment's reviewers)
# changes the rest. Prod's preview runs in prod-preview for prod's passphrase, not for reviewers.
ROLES = {
    ("deploy.yml", "deploy"): ("AWS_ROLE_ARN", "dev"),
    ("deploy.yml", "settle"): ("AWS_ROLE_ARN", "dev"),
    ("promote.yml", "promote"): ("AWS_ROLE_ARN", "prod"),
    ("promote.yml", "settle"): ("AWS_ROLE_ARN", "prod"),
    ("pull-request.yml", "preview"): ("AWS_PREVIEW_ROLE_ARN", None),
    ("infrastructure.yml", "preview"): ("AWS_PREVIEW_ROLE_ARN", None),
    ("infrastructure.yml", "apply"): ("AWS_INFRA_ROLE_ARN", "dev-infrastructure"),
    ("infrastructure-prod.yml", "preview"): ("AWS_PREVIEW_ROLE_ARN", "prod-preview"),
    ("infrastructure-prod.yml", "apply"): ("AWS_INFRA_ROLE_ARN", "prod-infrastructure"),
}


@pytest.mark.parametrize("name", NAMES)
def test_every_action_pinned_by_commit(name: str) -> None:
    for step in steps(load(name)):
        if "uses" in step:
            assert SHA_PIN.fullmatch(step["uses"]), f"{step['uses']} is not pinned by a commit SHA"


@pytest.mark.parametrize("name", NAMES)
def test_least_permissions_and_no_stored_keys(name: str) -> None:
    workflow = load(name)
    assert workflow["permissions"] == {"contents": "read"}
    text = (WORKFLOWS / name).read_text()
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    for job_name, job in workflow["jobs"].items():
        uses_aws = any(
            str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@") for s in job["steps"]
        )
        if uses_aws:
            assert job["permissions"]["id-token"] == "write", "AWS credentials come by OIDC"
            variable, environment = ROLES[(name, job_name)]
            assert job.get("environment") == environment
            aws = step_using(job, "aws-actions/configure-aws-credentials")
            assert aws["with"]["role-to-assume"] == "${{ vars." + variable + " }}"
        else:
            assert "id-token" not in job.get("permissions", {})


@pytest.mark.parametrize("name", NAMES)
def test_the_pulumi_cli_is_the_engine_version_requirements_pin(name: str) -> None:
    pinned = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned is not None
    for job in load(name)["jobs"].values():
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("pulumi/actions@"):
                assert step["with"]["pulumi-version"] == pinned.group(1)


def test_pull_requests_are_tested_and_previewed_read_only_with_policy() -> None:
    workflow = load("pull-request.yml")
    assert workflow["on"] == {"pull_request": {"branches": ["main"]}}
    test_job = workflow["jobs"]["test"]
    assert any("make lint lint-workflows test-unit" in s.get("run", "") for s in test_job["steps"])
    preview = workflow["jobs"]["preview"]
    assert preview["needs"] == "test"
    # A fork's pull request gets no OIDC token for the repository's roles: it skips, not fails.
    assert preview["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    pulumi = step_using(preview, "pulumi/actions")["with"]
    assert pulumi["command"] == "preview"
    assert pulumi["stack-name"] == "dev"
    assert pulumi["diff"] is True
    assert pulumi["policyPacks"] == "policy"
    assert pulumi["comment-on-pr"] is True
    assert "refresh" not in pulumi, "the read-only role cannot read the Helm release's Secret back"
    assert preview["permissions"]["pull-requests"] == "write"


def test_merges_run_the_pipeline_one_at_a_time() -> None:
    workflow = load("deploy.yml")
    assert workflow["on"] == {"push": {"branches": ["main"]}, "workflow_dispatch": {}}
    assert workflow["concurrency"] == {"group": "deploy-dev", "cancel-in-progress": False}
    assert list(workflow["jobs"]) == ["deploy", "settle"]
    job = workflow["jobs"]["deploy"]
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    # The steps are the project's own, which the end-to-end tier runs on the local target.
    pipeline_step = '.venv/bin/python -m infra.pipeline --stack dev --tag "$(git rev-parse --short=7 HEAD)"'
    assert pipeline_step + ' --revision "$GITHUB_SHA" --canary 1' in runs
    names = [str(s.get("uses", "")).split("@")[0] for s in job["steps"]]
    assert names.index("aws-actions/configure-aws-credentials") < names.index("aws-actions/amazon-ecr-login")
    assert "docker push" not in runs and "rollout --stack" not in runs, "no step outside the pipeline"


def test_promotion_is_by_hand_behind_prods_reviewers_one_at_a_time() -> None:
    workflow = load("promote.yml")
    assert list(workflow["on"]) == ["workflow_dispatch"]
    assert workflow["on"]["workflow_dispatch"]["inputs"]["from"]["default"] == "dev"
    assert workflow["concurrency"] == {"group": "deploy-prod", "cancel-in-progress": False}
    assert list(workflow["jobs"]) == ["promote", "settle"]
    job = workflow["jobs"]["promote"]
    assert job["environment"] == "prod", "the prod environment's required reviewers are the human yes"
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    # The project's own step, which the end-to-end tier runs on the local target; the input goes through
    # the environment, never into the script's text.
    assert '.venv/bin/python -m infra.pipeline promote --from "$SOURCE_STACK" --to prod' in runs
    assert job["env"]["SOURCE_STACK"] == "${{ inputs.from }}" and "${{" not in runs
    names = [str(s.get("uses", "")).split("@")[0] for s in job["steps"]]
    assert names.index("aws-actions/configure-aws-credentials") < names.index("aws-actions/amazon-ecr-login")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_infrastructure_is_previewed_then_applied_after_review(stack: str) -> None:
    from infra import pipeline

    # Each stack's own workflow, the one the pipeline names when it finds that stack's changes pending.
    workflow = load(Path(pipeline.infrastructure_workflow(stack)).name)
    assert workflow["concurrency"] == {"group": f"infrastructure-{stack}", "cancel-in-progress": False}
    paths = workflow["on"]["push"]["paths"]
    assert "infra/**" in paths and f"Pulumi.{stack}.yaml" in paths
    assert not any(p.startswith("Pulumi.") and p not in ("Pulumi.yaml", f"Pulumi.{stack}.yaml") for p in paths)
    assert "workflow_dispatch" in workflow["on"]
    preview, apply = workflow["jobs"]["preview"], workflow["jobs"]["apply"]
    assert apply["needs"] == "preview"
    assert apply["environment"] == f"{stack}-infrastructure"
    # The apply is held to the plan of the preview its reviewer saw: saved, carried as an artifact, applied.
    (previewing,) = [s for s in preview["steps"] if "pulumi preview" in s.get("run", "")]
    assert previewing["shell"] == "bash", "the default shell would let tee hide the preview's failure"
    for flag in (f"--stack {stack}", "--policy-pack policy", "--save-plan plan.json"):
        assert flag in previewing["run"], flag
    upload, download = step_using(preview, "actions/upload-artifact"), step_using(apply, "actions/download-artifact")
    assert upload["with"]["name"] == download["with"]["name"] and upload["with"]["path"] == "plan.json"
    (applying,) = [s for s in apply["steps"] if "pulumi up" in s.get("run", "")]
    for flag in (f"--stack {stack}", "--plan plan.json", "--policy-pack policy", "--yes"):
        assert flag in applying["run"], flag
    steps = apply["steps"]
    assert steps.index(download) < steps.index(applying)
    if stack == "prod":
        # Prod's app changes by promotion alone, behind prod's reviewers: nothing starts it.
        assert "actions" not in apply["permissions"]
        assert "gh workflow run" not in yaml.safe_dump(workflow)
        return
    # Once applied, the deploy runs again: one stopped by this change pending (exit 7) or by a stack not
    # made yet (exit 8) would never run again by itself. Its token may start a workflow_dispatch, no more.
    assert apply["permissions"]["actions"] == "write"
    last = apply["steps"][-1]
    assert last["run"].startswith("gh workflow run deploy.yml --ref main")
    assert last["env"]["GH_TOKEN"] == "${{ github.token }}"
    assert "workflow_dispatch" in load("deploy.yml")["on"]
    assert all("actions" not in job.get("permissions", {}) for job in load("deploy.yml")["jobs"].values())
    assert pipeline.infrastructure_workflow("dev") == pipeline.INFRASTRUCTURE_WORKFLOW


@pytest.fixture
def version_server() -> Iterator[str]:
    """A server on loopback whose /version.txt answers 'abc1234'."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"abc1234\n" if self.path == "/version.txt" else b""
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url


SCRIPT = WORKFLOWS.parents[1] / "scripts" / "wait-for-version.sh"


def test_wait_for_version_returns_once_served(version_server: str) -> None:
    done = subprocess.run(
        [str(SCRIPT), version_server, "abc1234", "10"], check=False, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    assert "serves abc1234 (after 1 request(s))" in done.stdout


def test_wait_for_version_fails_when_never_served(version_server: str) -> None:
    env = {**os.environ, "WAIT_INTERVAL_S": "2"}
    done = subprocess.run(
        [str(SCRIPT), version_server, "def5678", "1"], check=False, capture_output=True, text=True, timeout=20, env=env
    )
    assert done.returncode == 1
    assert "did not serve def5678 within 1s" in done.stderr and "last: 'abc1234'" in done.stderr
    refused = subprocess.run([str(SCRIPT), "example.com", "x"], check=False, capture_output=True, text=True, timeout=20)
    assert refused.returncode == 2 and "is not an http(s) URL" in refused.stderr


IAM = ROOT / "docs" / "iam"
SUBJECTS = {
    "deploy": ["repo:OWNER/REPO:environment:dev"],
    "preview": [
        "repo:OWNER/REPO:pull_request",
        "repo:OWNER/REPO:ref:refs/heads/main",
        "repo:OWNER/REPO:environment:prod-preview",
    ],
    "infrastructure": [
        "repo:OWNER/REPO:environment:dev-infrastructure",
        "repo:OWNER/REPO:environment:prod-infrastructure",
    ],
    "promote": ["repo:OWNER/REPO:environment:prod"],
}


@pytest.mark.parametrize("role", sorted(SUBJECTS))
def test_each_role_trusts_only_its_workflow_job(role: str) -> None:
    import json

    (statement,) = json.loads((IAM / f"{role}-trust.json").read_text())["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    condition = statement["Condition"]["StringEquals"]
    assert condition["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    subjects = condition["token.actions.githubusercontent.com:sub"]
    assert (subjects if isinstance(subjects, list) else [subjects]) == SUBJECTS[role]


def test_ci_roles_hold_no_more_than_a_deploy_or_a_preview_needs() -> None:
    import json

    def actions(role: str) -> set[str]:
        statements = json.loads((IAM / f"{role}-policy.json").read_text())["Statement"]
        found: set[str] = set()
        for statement in statements:
            assert statement["Effect"] == "Allow"
            listed = statement["Action"]
            found |= set(listed if isinstance(listed, list) else [listed])
        return found

    deploy, preview = actions("deploy"), actions("preview")
    for action in deploy | preview:
        assert "*" not in action, f"{action}: name each action"
        assert not action.startswith("iam:"), f"{action}: CI's roles change no IAM"
    assert "ecr:PutImage" in deploy
    promote = json.loads((IAM / "promote-policy.json").read_text())["Statement"]
    by_sid = {s["Sid"]: s for s in promote}
    # Promotion reads dev's repository and writes prod's; it writes prod's state alone (dev's is read).
    assert "ecr:PutImage" not in by_sid["EcrReadDevRepository"]["Action"]
    assert by_sid["EcrCopyIntoProdRepository"]["Resource"].endswith(":repository/rolling-prod")
    for statement in promote:
        listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any("*" in a or a.startswith("iam:") for a in listed)
        if "s3:PutObject" in listed:
            resources = statement["Resource"]
            assert all("/prod" in r for r in resources), resources
    assert all(a.split(":")[1].startswith(("Get", "Describe", "List")) for a in preview), "read only"


@pytest.mark.parametrize("role", ["preview", "deploy", "promote"])
def test_every_role_that_previews_may_list_the_repositories_a_kept_repository_is_found_by(role: str) -> None:
    # A stack that keeps its repository on destroy looks for it at every preview and update
    # (infra/registry.py `adopts`: aws.ecr.get_repositories, one DescribeRepositories without names, which
    # asks for every repository of the account: "*"); a role without it fails the preview.
    import json

    statements = json.loads((IAM / f"{role}-policy.json").read_text())["Statement"]
    (listing,) = [s for s in statements if s["Sid"] == "ProgramListsRepositories"]
    assert listing["Action"] == "ecr:DescribeRepositories"
    assert listing["Resource"] == "*"


@pytest.mark.parametrize("role", ["deploy", "promote"])
def test_the_roles_that_ship_may_read_the_alb_metrics_the_analysis_judges_by_and_nothing_more(role: str) -> None:
    import json

    from infra.rollout import cloudwatch

    statements = json.loads((IAM / f"{role}-policy.json").read_text())["Statement"]
    (analysis,) = [s for s in statements if s["Sid"] == "AnalysisReadsTheAlbMetrics"]
    # The calls infra/rollout/cloudwatch.py makes through the AWS CLI, each an IAM action of its own.
    made: set[tuple[str, str]] = set()
    arn = "arn:aws:elasticloadbalancing:us-east-1:1:"

    def record(args: Any) -> Any:
        made.add((args[0], args[1]))
        return {
            "LoadBalancers": [{"DNSName": "alb.example", "LoadBalancerArn": arn + "loadbalancer/app/a/1"}],
            "TargetGroups": [{"TargetGroupArn": arn + "targetgroup/t/2"}],
        }

    metrics = cloudwatch.Metrics(record, "http://alb.example")
    metrics.check()
    metrics.__enter__()
    metrics.minutes()
    service = {"cloudwatch": "cloudwatch", "elbv2": "elasticloadbalancing"}
    needed = {f"{service[cli]}:{''.join(part.title() for part in op.split('-'))}" for cli, op in made}
    assert set(analysis["Action"]) == needed
    # None of these actions takes a resource narrower than "*" (the Service Authorization Reference lists
    # no resource type for them); each only reads.
    assert analysis["Resource"] == "*"
    assert all(a.split(":")[1].startswith(("Get", "Describe")) for a in analysis["Action"])


def test_state_objects_the_roles_name_are_under_the_documented_backend_path() -> None:
    # The diy backend prefixes every key with the backend URL's path (pulumi pkg/backend/diy/backend.go:
    # blob.PrefixedBucket): with `s3://<state-bucket>/rolling` the lock of prod is
    # rolling/.pulumi/locks/organization/rolling/prod/<id>.json. A grant without the prefix lets a preview
    # through (it takes no lock) and denies the `up` after it.
    import json

    docs = (ROOT / "docs" / "aws.md").read_text()
    (prefix,) = set(re.findall(r"pulumi login s3://<state-bucket>/([\w-]+)", docs))
    for role in ("deploy", "preview", "promote"):
        for statement in json.loads((IAM / f"{role}-policy.json").read_text())["Statement"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for resource in resources:
                if resource.startswith("arn:aws:s3:::STATE_BUCKET/"):
                    assert resource.startswith(f"arn:aws:s3:::STATE_BUCKET/{prefix}/.pulumi/"), (role, resource)


def test_the_deploy_role_writes_devs_state_alone_and_the_infrastructure_role_never_the_ci_roles() -> None:
    import json

    deploy = json.loads((IAM / "deploy-policy.json").read_text())["Statement"]
    for statement in deploy:
        if "s3:PutObject" in statement["Action"]:
            assert all("/dev" in r for r in statement["Resource"]), statement["Resource"]
    infrastructure = json.loads((IAM / "infrastructure-policy.json").read_text())["Statement"]
    (deny,) = [s for s in infrastructure if s["Effect"] == "Deny" and s["Resource"].endswith(":role/rolling-ci-*")]
    for needed in ("iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:PassRole"):
        assert needed in deny["Action"]


def test_the_infrastructure_role_grants_rights_only_to_roles_bounded_by_the_accounts_boundary() -> None:
    import json

    def actions(statement: dict[str, Any]) -> list[str]:
        given = statement.get("Action", [])
        return [given] if isinstance(given, str) else list(given)

    boundary = "arn:aws:iam::ACCOUNT_ID:policy/rolling-boundary"
    infrastructure = json.loads((IAM / "infrastructure-policy.json").read_text())["Statement"]
    grants = ("iam:CreateRole", "iam:AttachRolePolicy", "iam:PutRolePolicy", "iam:PutRolePermissionsBoundary")
    for statement in infrastructure:
        if statement["Effect"] == "Allow" and set(grants) & set(actions(statement)):
            # Every Allow of an action that gives a role rights holds only for a role bounded by the boundary.
            assert statement["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": boundary}}, statement
    denied = {a: s["Resource"] for s in infrastructure if s["Effect"] == "Deny" for a in actions(s)}
    assert denied["iam:DeleteRolePermissionsBoundary"] == "*"
    for change in ("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy"):
        assert denied[change] == boundary, change
    # The boundary allows no identity work (no IAM beyond what the cluster and the controller use, no STS).
    allowed = json.loads((IAM / "boundary-policy.json").read_text())["Statement"]
    (rest,) = [s for s in allowed if "NotAction" in s]
    assert {"iam:*", "sts:*", "organizations:*", "account:*"} <= set(rest["NotAction"])
    iam = [a for s in allowed if "Action" in s for a in actions(s)]
    assert set(iam) == {"iam:CreateServiceLinkedRole", "iam:GetServerCertificate", "iam:ListServerCertificates"}


def test_prods_passphrase_reaches_prods_environments_alone() -> None:
    # Prod's passphrase is a secret of prod's environments (docs/aws.md: prod, prod-preview,
    # prod-infrastructure, each limited to main): only a job in one of them gets it, every job that works on
    # prod is in one, and no workflow a pull request runs works on prod.
    documented = set(re.findall(r"^\| `(prod[\w-]*)` \|", (ROOT / "docs" / "aws.md").read_text(), re.M))
    assert documented == {"prod", "prod-preview", "prod-infrastructure"}
    for name in NAMES:
        for job_name, job in load(name)["jobs"].items():
            text = yaml.safe_dump(job)
            if "--to prod" in text or "--stack prod" in text or "stack-name: prod" in text:
                assert job.get("environment") in documented, (name, job_name)
    assert "prod" not in (WORKFLOWS / "pull-request.yml").read_text()


@pytest.mark.parametrize("role", ["deploy", "promote"])
def test_the_roles_that_ship_may_read_the_weights_a_weighted_canary_is_judged_at_and_nothing_more(role: str) -> None:
    import json

    from infra.rollout import listener

    statements = json.loads((IAM / f"{role}-policy.json").read_text())["Statement"]
    (weights,) = [s for s in statements if s["Sid"] == "CanaryReadsTheAlbWeights"]
    # The calls infra/rollout/listener.py makes through the AWS CLI to read a canary's share back.
    made: set[tuple[str, str]] = set()

    def record(args: Any) -> Any:
        made.add((args[0], args[1]))
        return {
            "LoadBalancers": [{"DNSName": "alb.example", "LoadBalancerArn": "arn:lb"}],
            "TargetGroups": [{"TargetGroupArn": "arn:tg", "TargetGroupName": "k8s-rolling-nginx-0123456789"}],
            "Listeners": [{"ListenerArn": "arn:listener", "Port": 80}],
            "Rules": [{"IsDefault": True, "Actions": [{"Type": "forward", "TargetGroupArn": "arn:tg"}]}],
        }

    assert listener.read(record, "http://alb.example") != []
    needed = {f"elasticloadbalancing:{''.join(part.title() for part in op.split('-'))}" for _, op in made}
    assert set(weights["Action"]) == needed
    assert weights["Resource"] == "*"
    assert all(a.split(":")[1].startswith("Describe") for a in weights["Action"])


def stack_check_script() -> str:
    (step,) = [s for s in load("infrastructure-prod.yml")["jobs"]["preview"]["steps"] if s.get("id") == "stack"]
    assert step["shell"] == "bash"
    return str(step["run"])


@pytest.mark.parametrize(
    ("listed", "exists"),
    [
        ('[{"name": "dev", "current": false}]', "false"),
        ('[{"name": "dev"}, {"name": "prod"}]', "true"),
        ('[{"name": "organization/rolling/prod"}]', "true"),
        ('[{"name": "production"}]', "false"),
        ("[]", "false"),
    ],
)
def test_prods_infrastructure_workflow_waits_for_a_prod_stack(tmp_path: Path, listed: str, exists: str) -> None:
    # A team running dev alone has no prod stack: prod's workflow says so and applies nothing, not a red run
    # on every merge. The step's script as written, with `pulumi stack ls --json` answering ``listed``.
    fake = tmp_path / "bin" / "pulumi"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n[ \"$1 $2 $3\" = 'stack ls --json' ] || exit 9\necho '{listed}'\n")
    fake.chmod(0o755)
    output, summary = tmp_path / "output", tmp_path / "summary"
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    env |= {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", stack_check_script()],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert output.read_text() == f"exists={exists}\n"
    said = summary.read_text() if summary.exists() else ""
    assert ("No prod stack yet" in said) == (exists == "false")


def test_prods_infrastructure_workflow_fails_when_the_backend_cannot_be_read(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "pulumi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'error: AccessDenied' >&2\nexit 255\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "GITHUB_OUTPUT": str(tmp_path / "out")}
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", stack_check_script()],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert done.returncode != 0, "an unreadable backend is not 'no prod stack'"
    assert not (tmp_path / "out").exists()
    # The apply runs only after a preview saved a plan.
    workflow = load("infrastructure-prod.yml")
    assert workflow["jobs"]["apply"]["if"] == "needs.preview.outputs.planned == 'true'"
    assert workflow["jobs"]["preview"]["outputs"]["planned"] == "${{ steps.stack.outputs.exists }}"


@pytest.mark.parametrize(
    ("name", "job", "stack"), [("deploy.yml", "deploy", "dev"), ("promote.yml", "promote", "prod")]
)
def test_a_release_a_failed_or_cancelled_run_left_is_settled_by_a_job_of_its_own(
    name: str, job: str, stack: str
) -> None:
    jobs = load(name)["jobs"]
    settle = jobs["settle"]
    assert settle["needs"] == job
    condition = settle["if"]
    assert f"needs.{job}.result == 'failure'" in condition and f"needs.{job}.result == 'cancelled'" in condition
    assert condition.startswith("${{ always() && "), "a cancelled run still settles"
    # The same environment (the same OIDC subject, so the same role) as the job it settles for.
    assert settle["environment"] == jobs[job]["environment"]
    assert settle["permissions"] == jobs[job]["permissions"]
    assert settle["env"].items() <= jobs[job]["env"].items()
    runs = "\n".join(s.get("run", "") for s in settle["steps"])
    assert f".venv/bin/python -m infra.pipeline settle --stack {stack}" in runs


@pytest.mark.parametrize("name", ["deploy.yml", "promote.yml", "infrastructure.yml", "infrastructure-prod.yml"])
def test_every_job_that_changes_a_stack_has_a_time_limit(name: str) -> None:
    jobs = load(name)["jobs"]
    changing = [j for j in jobs if j != "preview"]
    assert changing
    for job in changing:
        assert 0 < jobs[job]["timeout-minutes"] <= 120, (name, job)
