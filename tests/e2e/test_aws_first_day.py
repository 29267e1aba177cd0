"""The first day on AWS, run: docs/aws.md's commands as written against an AWS emulator that enforces IAM
(rigs/aws_emulator.py), the S3 state backend at the documented URL, then each CI role's steps under that
role's own credentials. Where a step needs the AWS provider plugin, which cannot be built here, the local
target stands in (the same stacks, `dev` and `prod`, the same state paths and locks), and REPLACED says
which lines of the runbook were not run."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from infra.rollout.command.unfinished import JUDGING
from rigs import aws_emulator
from rigs.aws_emulator import ACCOUNT, REGION, Credentials, Emulator
from rigs.project import copy_project
from tests.e2e.harness import ROOT
from tests.e2e.images import REPOSITORY

BUCKET = "rolling-state-first-day"
ADMIN_ROLE = "platform-admin"
PLACEHOLDERS = {"<state-bucket>": BUCKET, "<account>": ACCOUNT, "<your-admin-role>": ADMIN_ROLE}
# Each stack's passphrase, as CI's environments hold them: dev's in the shell the runbook starts with (as the
# README's EKS commands export it), prod's in the file the runbook names (written by the test, not in git).
PASSPHRASES = {"dev": "first-day-dev", "prod": "first-day-prod"}
PROD_PASSPHRASE_FILE = "<prod-passphrase-file>"
IAM_PLACEHOLDERS = {"ACCOUNT_ID": ACCOUNT, "REGION": REGION, "OWNER/REPO": "octo/rolling", "STATE_BUCKET": BUCKET}
# Lines of the runbook that need the AWS provider plugin (pulumi-aws, pulumi-eks), which is not built here;
# the role steps below run the same stacks on the local target instead. Every `up` of the first day is a
# workflow's (the CI roles' steps below), none a line of the runbook.
REPLACED: tuple[str, ...] = ()
DOCUMENTED_BACKEND = re.compile(r"pulumi login (s3://\S+)")


def runbook() -> list[str]:
    """docs/aws.md's shell blocks, in order."""
    return re.findall(r"```sh\n(.*?)```", (ROOT / "docs" / "aws.md").read_text(), re.S)


def fill(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rolling" / "aws-emulator"
    pidfile = cache / f"{os.environ.get('ROLLING_CLUSTER', 'rolling')}-{uuid.uuid4().hex[:6]}.pid"
    with aws_emulator.running(tmp_path / "moto.log", pidfile) as running:
        yield running


def team_repository(tmp_path: Path) -> Path:
    """The project as a team has it in git on the first day: the program, the stack files, docs/iam."""
    repo = copy_project(tmp_path / "repo")
    for name in ("Pulumi.dev.yaml", "Pulumi.prod.yaml"):
        shutil.copy2(ROOT / name, repo / name)
    shutil.copytree(ROOT / "docs" / "iam", repo / "docs" / "iam")
    # As the runbook asks: the placeholders of the policies replaced first.
    for policy in (repo / "docs" / "iam").glob("*.json"):
        policy.write_text(fill(policy.read_text(), IAM_PLACEHOLDERS))
    (repo / ".gitignore").write_text(".venv\napp\ncluster\nscripts\ntools\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the project")
    return repo


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def pulumi_home(tmp_path: Path) -> Path:
    """A home of its own (`pulumi login` writes there), with the built plugins of the tier's home."""
    home = tmp_path / "pulumi-home"
    home.mkdir()
    shared = Path(os.environ["PULUMI_HOME"]) / "plugins"
    (home / "plugins").symlink_to(shared)
    return home


def engine_env(emulator: Emulator, who: Credentials, home: Path) -> dict[str, str]:
    env = emulator.env(who)
    env.pop("PULUMI_BACKEND_URL", None)
    return env | {
        "PULUMI_HOME": str(home),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASES["dev"],
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }


def run_runbook(repo: Path, emulator: Emulator, env: dict[str, str]) -> list[str]:
    """Every shell block of docs/aws.md in order, as the administrator, placeholders filled, the backend URL
    given the emulator's endpoint; returns the lines it did not run (REPLACED)."""
    skipped: list[str] = []
    prod_passphrase = repo.parent / "prod.passphrase"
    prod_passphrase.write_text(PASSPHRASES["prod"] + "\n")
    for block in runbook():
        lines = []
        for line in fill(block, PLACEHOLDERS | {PROD_PASSPHRASE_FILE: str(prod_passphrase)}).splitlines():
            command = line.split("#", 1)[0].strip()
            if command in REPLACED:
                skipped.append(command)
                continue
            login = DOCUMENTED_BACKEND.search(line)
            documented = login.group(1) if login else None
            if documented:  # the URL as written, plus the emulator's endpoint
                line = line.replace(documented, shlex.quote(emulator.backend_url(documented)))  # noqa: PLW2901
            lines.append(line)
        script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
        done = subprocess.run(
            ["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, f"docs/aws.md block failed:\n{script}\n{done.stdout}\n{done.stderr}"
    return skipped


def local_stand_in(repo: Path, stack: str, namespace: str) -> None:
    """The stack file in the work tree (not committed) turned to the local target: same stack, same state."""
    path = repo / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text())
    values = {"target": "local", "namespace": namespace, "imageRepository": REPOSITORY, "imageTag": "1.14.2"}
    values |= {"replicas": "1", "minReadySeconds": "1", "cpu": "100m", "memory": "64Mi"}
    document["config"] = {f"rolling:{k}": v for k, v in values.items()}
    path.write_text(yaml.safe_dump(document))


def pulumi(
    repo: Path, env: dict[str, str], *args: str, passphrase: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`pulumi ARGS` as ``env``, with the passphrase of the stack it names (as that stack's CI environment has
    it), or ``passphrase``."""
    stack = args[args.index("--stack") + 1] if "--stack" in args else "dev"
    env = env | {"PULUMI_CONFIG_PASSPHRASE": passphrase or PASSPHRASES[stack]}
    return subprocess.run(
        ["pulumi", *args, "--non-interactive", "--color", "never"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def allowed(done: subprocess.CompletedProcess[str], what: str) -> None:
    assert done.returncode == 0, f"{what} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def refused(done: subprocess.CompletedProcess[str], what: str) -> None:
    assert done.returncode != 0, f"{what} was not refused:\n{done.stdout[-2000:]}"
    # S3 says AccessDenied, or a bare 403 to a HEAD (no body), which the backend reports as PermissionDenied.
    said = done.stdout + done.stderr
    assert "AccessDenied" in said or "code=PermissionDenied" in said, f"{what}: not refused by IAM:\n{said[-2000:]}"


def assert_no_way_to_administrator(emulator: Emulator, infrastructure: Credentials) -> None:
    boundary = f"arn:aws:iam::{ACCOUNT}:policy/rolling-boundary"
    admin_policy = "arn:aws:iam::aws:policy/AdministratorAccess"
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )
    inline = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})

    def may(*args: str) -> bool:
        done = emulator.aws(infrastructure, "iam", *args, check=False)
        assert done.returncode == 0 or "AccessDenied" in done.stderr, f"iam {args[0]}: {done.stderr}"
        return done.returncode == 0

    probe, by_hand = "rolling-tier-probe", "rolling-by-hand"
    made = ["create-role", "--role-name", probe, "--assume-role-policy-document", trust]
    assert not may(*made), "a role of the stack's made without the boundary"
    assert may(*made, "--permissions-boundary", boundary), "a role of the stack's, with the boundary"
    # Whatever it is given, the bounded role can do no more than the boundary (no IAM, no STS).
    assert may("put-role-policy", "--role-name", probe, "--policy-name", "all", "--policy-document", inline)
    assert may("attach-role-policy", "--role-name", probe, "--policy-arn", admin_policy)
    assert not may("delete-role-permissions-boundary", "--role-name", probe), "the boundary taken off"
    # The boundary itself stays as the account's administrator made it.
    boundary_document = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    )
    assert not may(
        "create-policy-version", "--policy-arn", boundary, "--policy-document", boundary_document, "--set-as-default"
    )
    # A role of that name made by hand without it: no policy may go on it until it carries the boundary (as
    # the next infrastructure update gives it to a role made before the boundary existed).
    emulator.aws(emulator.admin, "iam", "create-role", "--role-name", by_hand, "--assume-role-policy-document", trust)
    assert not may("put-role-policy", "--role-name", by_hand, "--policy-name", "all", "--policy-document", inline)
    other = f"arn:aws:iam::{ACCOUNT}:policy/rolling-not-the-boundary"
    assert not may("put-role-permissions-boundary", "--role-name", by_hand, "--permissions-boundary", other)
    assert may("put-role-permissions-boundary", "--role-name", by_hand, "--permissions-boundary", boundary)
    # Never the CI roles (they carry no boundary, and the role's Deny names them).
    for ci in ("rolling-ci-deploy", "rolling-ci-infrastructure"):
        assert not may("put-role-policy", "--role-name", ci, "--policy-name", "all", "--policy-document", inline), ci
        assert not may("attach-role-policy", "--role-name", ci, "--policy-arn", admin_policy), ci
    for role in (probe, by_hand):
        for name in json.loads(emulator.aws(emulator.admin, "iam", "list-role-policies", "--role-name", role).stdout)[
            "PolicyNames"
        ]:
            emulator.aws(emulator.admin, "iam", "delete-role-policy", "--role-name", role, "--policy-name", name)
        emulator.aws(
            emulator.admin, "iam", "detach-role-policy", "--role-name", role, "--policy-arn", admin_policy, check=False
        )
        emulator.aws(emulator.admin, "iam", "delete-role", "--role-name", role)


def prod_stack_found(repo: Path, env: dict[str, str], tmp_path: Path) -> bool:
    """Prod's infrastructure workflow's first step (`id: stack`), its script as written, run as ``env``."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "infrastructure-prod.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["preview"]["steps"] if s.get("id") == "stack"]
    output = tmp_path / "github-output"
    output.unlink(missing_ok=True)
    summary = tmp_path / "github-summary"
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]],
        cwd=repo, env=env | {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"the workflow's stack check failed:\n{done.stdout}\n{done.stderr}"
    return output.read_text() == "exists=true\n"


def test_the_first_day_as_written_then_each_ci_role_at_its_own_steps_and_no_others(
    tmp_path: Path, emulator: Emulator
) -> None:
    repo = team_repository(tmp_path)
    home = pulumi_home(tmp_path)
    admin = engine_env(emulator, emulator.admin, home)

    # The runbook, as written: bucket, backend, stacks, roles, access settings, commits.
    assert run_runbook(repo, emulator, admin) == list(REPLACED)

    # Prod's stack has its own passphrase though the runbook's shell held dev's: dev's cannot encrypt a secret
    # of prod's (the engine checks a passphrase against the stack's encryptionsalt), prod's can.
    backend_env = admin | {"PULUMI_BACKEND_URL": emulator.backend_url(f"s3://{BUCKET}/rolling")}
    probe = ("config", "set", "--secret", "rolling:passphraseProbe", "x", "--stack", "prod")
    wrong = pulumi(repo, backend_env, *probe, passphrase=PASSPHRASES["dev"])
    assert wrong.returncode != 0 and "incorrect passphrase" in wrong.stderr, wrong.stdout + wrong.stderr
    allowed(pulumi(repo, backend_env, *probe), "a secret of prod's with prod's passphrase")
    allowed(pulumi(repo, backend_env, "config", "rm", "rolling:passphraseProbe", "--stack", "prod"), "its removal")

    # A clean checkout of git holds every setting the workflows read: the promote job and CI's first
    # infrastructure `up` read the stack files from git, not from the admin's work tree.
    clean = tmp_path / "clean"
    subprocess.run(["git", "clone", "-q", str(repo), str(clean)], check=True)
    dev = yaml.safe_load((clean / "Pulumi.dev.yaml").read_text())
    prod = yaml.safe_load((clean / "Pulumi.prod.yaml").read_text())
    assert "encryptionsalt" in dev and "encryptionsalt" in prod
    assert dev["config"]["rolling:deployRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/rolling-ci-deploy"
    assert dev["config"]["rolling:previewRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/rolling-ci-preview"
    assert dev["config"]["rolling:clusterAdmins"] == f"arn:aws:iam::{ACCOUNT}:role/{ADMIN_ROLE}"
    assert prod["config"]["rolling:deployRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/rolling-ci-promote"
    assert prod["config"]["rolling:previewRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/rolling-ci-preview"
    assert prod["config"]["rolling:clusterAdmins"] == f"arn:aws:iam::{ACCOUNT}:role/{ADMIN_ROLE}"
    # Nobody listed as an admin is the role that runs the infrastructure `up`s (EKS's creator entry).
    for stack in (dev, prod):
        assert "rolling-ci-infrastructure" not in stack["config"]["rolling:clusterAdmins"]

    # Each CI role as documented: trusted by GitHub's OIDC provider for its workflow's subject alone. The
    # emulator cannot run that exchange, so each role's trust is then replaced by one naming the emulator's
    # administrator, who takes the sessions; the permission policies stay as the runbook put them.
    subjects = {
        "deploy": "repo:octo/rolling:environment:dev",
        "preview": [
            "repo:octo/rolling:pull_request",
            "repo:octo/rolling:ref:refs/heads/main",
            "repo:octo/rolling:environment:prod-preview",
        ],
        "infrastructure": [
            "repo:octo/rolling:environment:dev-infrastructure",
            "repo:octo/rolling:environment:prod-infrastructure",
        ],
        "promote": "repo:octo/rolling:environment:prod",
    }
    for role, subject in subjects.items():
        found = json.loads(emulator.aws(emulator.admin, "iam", "get-role", "--role-name", f"rolling-ci-{role}").stdout)
        (statement,) = found["Role"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {
            "Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
        }
        assert statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == subject
        emulator.trust_administrator(f"rolling-ci-{role}")
    providers = json.loads(emulator.aws(emulator.admin, "iam", "list-open-id-connect-providers").stdout)
    assert [p["Arn"].rsplit("/", 1)[1] for p in providers["OpenIDConnectProviderList"]] == [
        "token.actions.githubusercontent.com"
    ]

    # The CI roles' steps, as the workflows run them: PULUMI_BACKEND_URL set, the role's session keys.
    name = f"aws-{uuid.uuid4().hex[:6]}"
    local_stand_in(repo, "dev", f"{name}-dev")
    local_stand_in(repo, "prod", f"{name}-prod")
    backend = emulator.backend_url(f"s3://{BUCKET}/rolling")

    def as_role(role: str) -> dict[str, str]:
        return engine_env(emulator, emulator.assume(f"rolling-ci-{role}"), home) | {"PULUMI_BACKEND_URL": backend}

    owner = admin | {"PULUMI_BACKEND_URL": backend}
    infrastructure, preview, deploy = as_role("infrastructure"), as_role("preview"), as_role("deploy")
    infrastructure_keys, preview_keys = (
        emulator.assume("rolling-ci-infrastructure"),
        emulator.assume("rolling-ci-preview"),
    )
    deploy_keys = emulator.assume("rolling-ci-deploy")
    promote = as_role("promote")
    try:
        allowed(pulumi(repo, infrastructure, "up", "--stack", "dev", "--yes"), "the infrastructure role's up")
        # Prod's first `up` is its infrastructure workflow's: the preview role finds the stack (the step as
        # written in the workflow) and saves the plan, which the infrastructure role applies.
        assert prod_stack_found(repo, preview, tmp_path), "prod's workflow did not find the stack the runbook made"
        plan = str(tmp_path / "prod-plan.json")
        allowed(pulumi(repo, preview, "preview", "--stack", "prod", "--save-plan", plan), "prod's reviewed preview")
        applied = pulumi(repo, infrastructure, "up", "--stack", "prod", "--plan", plan, "--yes", "--skip-preview")
        allowed(applied, "prod's first up, by the infrastructure role, held to that plan")

        # A stack that keeps its repository on destroy lists the account's repositories at every preview and
        # update (infra/registry.py `adopts`): each role that previews may.
        for role in ("preview", "deploy", "promote"):
            listed = emulator.aws(emulator.assume(f"rolling-ci-{role}"), "ecr", "describe-repositories", check=False)
            assert listed.returncode == 0, f"{role}: {listed.stdout}{listed.stderr}"
        # Such a stack made again imports the repository the destroy left, and the provider reads its tags
        # (ListTagsForResource, terraform-provider-aws internal/service/ecr/repository.go): the preview role's
        # preview of that import may; the deploy role, which never imports, may not.
        for name in ("rolling", "rolling-prod"):
            emulator.aws(emulator.admin, "ecr", "create-repository", "--repository-name", name)
            arn = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}"
            read = emulator.aws(preview_keys, "ecr", "list-tags-for-resource", "--resource-arn", arn, check=False)
            assert read.returncode == 0, f"the preview role reading {name}'s tags: {read.stderr}"
            denied = emulator.aws(deploy_keys, "ecr", "list-tags-for-resource", "--resource-arn", arn, check=False)
            assert "AccessDenied" in denied.stderr, f"the deploy role read {name}'s tags: {denied.stdout}"
        # Grants scoped to a repository hold there (tools/aws-emulator/server.py authorises ECR requests
        # against the repository they name): the deploy role reads dev's images, not prod's; and no longer
        # describes them (DescribeImages: nothing it runs calls it).
        images = ["ecr", "batch-get-image", "--image-ids", "imageTag=1.0.0", "--repository-name"]
        assert emulator.aws(deploy_keys, *images, "rolling", check=False).returncode == 0
        assert "AccessDenied" in emulator.aws(deploy_keys, *images, "rolling-prod", check=False).stderr
        described = emulator.aws(deploy_keys, "ecr", "describe-images", "--repository-name", "rolling", check=False)
        assert "AccessDenied" in described.stderr, described.stdout

        # The infrastructure role makes and changes the stack's own roles (rolling-*) only with the account's
        # permissions boundary (docs/iam/infrastructure-policy.json; tools/aws-emulator/server.py evaluates its
        # condition), and never the CI roles (its Deny: the emulator authorises role actions against the role).
        assert_no_way_to_administrator(emulator, infrastructure_keys)

        # Previews read and write nothing; the preview role may not update.
        allowed(pulumi(repo, preview, "preview", "--stack", "dev"), "the preview role's preview")
        refused(pulumi(repo, preview, "up", "--stack", "dev", "--yes"), "an up by the preview role")

        # The deploy role ships to dev and cannot touch prod's state.
        allowed(pulumi(repo, deploy, "config", "set", "--stack", "dev", "rolling:imageTag", "1.15.0"), "config")
        allowed(pulumi(repo, deploy, "up", "--stack", "dev", "--yes"), "the deploy role's up on dev")
        refused(pulumi(repo, deploy, "up", "--stack", "prod", "--yes"), "an up of prod by the deploy role")
        # The record of a release under judgement, in the stack's tags (infra/rollout/command/unfinished.py).
        for step in (["set", JUDGING, "{}"], ["ls", "--json"], ["rm", JUDGING]):
            allowed(pulumi(repo, deploy, "stack", "tag", *step, "--stack", "dev"), f"the deploy role's tag {step[0]}")
        refused(pulumi(repo, deploy, "stack", "tag", "set", JUDGING, "{}", "--stack", "prod"), "a tag on prod")

        # The promote role reads dev's history, writes prod (stack file, history, backups, lock: the
        # paths under the backend URL's own path), and cannot write dev.
        allowed(pulumi(repo, promote, "stack", "history", "--stack", "dev", "--json"), "dev's history")
        allowed(pulumi(repo, promote, "config", "set", "--stack", "prod", "rolling:imageTag", "1.15.0"), "config")
        allowed(pulumi(repo, promote, "up", "--stack", "prod", "--yes"), "the promote role's up on prod")
        refused(pulumi(repo, promote, "up", "--stack", "dev", "--yes"), "an up of dev by the promote role")
        # It reads dev's record (a release unjudged there is not promoted) and writes prod's own.
        allowed(pulumi(repo, promote, "stack", "tag", "ls", "--json", "--stack", "dev"), "dev's tags")
        for step in (["set", JUDGING, "{}"], ["rm", JUDGING]):
            allowed(pulumi(repo, promote, "stack", "tag", *step, "--stack", "prod"), f"promote role: tag {step[0]}")
        refused(pulumi(repo, promote, "stack", "tag", "set", JUDGING, "{}", "--stack", "dev"), "a tag on dev")

        # The infrastructure workflow: the preview role's preview saves its plan, which the infrastructure
        # role applies, and nothing beyond it.
        plan = str(tmp_path / "plan.json")
        allowed(pulumi(repo, preview, "preview", "--stack", "dev", "--save-plan", plan), "the reviewed preview")
        applied = pulumi(repo, infrastructure, "up", "--stack", "dev", "--plan", plan, "--yes", "--skip-preview")
        allowed(applied, "the infrastructure role's apply of that plan")
    finally:
        for stack in ("prod", "dev"):
            pulumi(repo, owner, "cancel", "--stack", stack, "--yes")
            pulumi(repo, owner, "destroy", "--stack", stack, "--yes")
