"""The deploy pipeline's decisions: first deploy, re-runs, tag conflicts, pending infrastructure, locks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from infra import pipeline
from infra.rollout.engine import EngineError
from infra.rollout.exits import Exit
from infra.rollout.report import Report

ECR = "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/rolling"
SHA = "12345e7" + "0" * 33


class FakeEngine:
    def __init__(self, outputs: dict[str, Any] | None, config: dict[str, str] | None = None) -> None:
        self._outputs = outputs
        self._config = config or {}
        self.commands: list[tuple[str, ...]] = []

    def outputs(self) -> dict[str, Any]:
        if self._outputs is None:
            raise EngineError(["stack", "output"], 255, "", "error: no stack named 'dev' found")
        return self._outputs

    def config(self) -> dict[str, str]:
        return {"rolling:target": "eks", "rolling:imageRepository": "nginxinc/nginx-unprivileged", **self._config}

    def run(self, *args: str) -> str:
        self.commands.append(args)
        return ""


class FakeRegistry:
    def __init__(self, images: dict[str, str]) -> None:
        self.images = dict(images)
        self.pushed: list[str] = []

    def revision(self, reference: str) -> str | None:
        return self.images.get(reference)

    def push(self, reference: str, version: str, revision: str) -> None:
        self.pushed.append(reference)
        self.images[reference] = revision

    def digest(self, reference: str) -> str | None:  # the deploy pipeline reads revisions, not digests
        raise AssertionError(f"the deploy asked for the digest of {reference}")

    def copy(self, source: str, destination: str) -> None:
        raise AssertionError(f"the deploy copied {source}")


DEPLOYED = {"image": "nginxinc/nginx-unprivileged:1.30.6-alpine", "repositoryUrl": ECR, "url": "http://alb"}


def printed(code: int, report: dict[str, Any]) -> tuple[int, Report]:
    """What the pipeline reads back from the command's last line of stdout: ``report``, printed as --json does."""
    return code, Report.from_json(json.dumps({"stack": "dev", "exitCode": int(code), **report}))


def deploy(
    outputs: dict[str, Any] | None = DEPLOYED,
    images: dict[str, str] | None = None,
    rollouts: list[tuple[int, dict[str, Any]]] | None = None,
    served: bool = True,
    tag: str = "12345e7",
    canary: int = 0,
    config: dict[str, str] | None = None,
) -> tuple[pipeline.Deploy, FakeRegistry, list[str]]:
    registry = FakeRegistry(images or {})
    answers = list(rollouts or [(0, {"outcome": "succeeded"})])
    shipped: list[str] = []

    def rollout(project: Path, stack: str, tag: str, canary: int) -> tuple[int, Report]:
        shipped.append(tag if not canary else f"{tag} canary {canary}")
        return printed(*answers.pop(0))

    run = pipeline.Deploy(
        stack="dev",
        tag=tag,
        revision=SHA,
        project=Path("."),
        url_timeout=5,
        lock_wait=60,
        engine=cast(Any, FakeEngine(outputs, config or {})),
        canary=canary,
        registry_for=lambda target: registry,
        rollout=rollout,
        wait_served=lambda url, tag, timeout: (served, f"{url} serves {tag}" if served else "never served"),
        sleep=lambda seconds: None,
    )
    return run, registry, shipped


def test_first_deploy_to_a_stack_never_deployed_stops_at_once_naming_the_workflow() -> None:
    run, registry, shipped = deploy(outputs={})
    assert run.run() == Exit.NOT_BOOTSTRAPPED
    assert "has not been deployed yet" in run.report.lines[0]
    assert "infrastructure workflow (.github/workflows/infrastructure.yml)" in run.report.lines[0]
    assert registry.pushed == [] and shipped == []


def test_a_stack_that_does_not_exist_says_how_to_make_it() -> None:
    run, registry, shipped = deploy(outputs=None)
    assert run.run() == Exit.NOT_BOOTSTRAPPED
    assert "no stack named 'dev' found" in run.report.lines[0]
    assert "pulumi stack init dev" in run.report.lines[0]
    assert registry.pushed == [] and shipped == []


def test_pushes_a_new_tag_and_ships_it() -> None:
    run, registry, shipped = deploy()
    assert run.run() == Exit.OK
    assert registry.pushed == [f"{ECR}:12345e7"]
    assert shipped == ["12345e7"]
    engine = cast(FakeEngine, run.engine)
    assert ("config", "set", "rolling:imageRepository", ECR) in engine.commands


def test_a_rerun_of_the_same_commit_reuses_its_image() -> None:
    # The registry's tags are immutable: pushing the same tag again would fail the re-run.
    run, registry, shipped = deploy(images={f"{ECR}:12345e7": SHA})
    assert run.run() == Exit.OK
    assert registry.pushed == []
    assert shipped == ["12345e7"]
    assert any("not built again" in line for line in run.report.lines)


def test_a_tag_built_from_another_commit_is_refused_loudly() -> None:
    run, registry, shipped = deploy(images={f"{ECR}:12345e7": "f" * 40})
    assert run.run() == Exit.TAG_CONFLICT
    assert registry.pushed == [] and shipped == []
    assert f"already exists built from {'f' * 40}, not from {SHA}" in run.report.lines[-1]


def test_pending_infrastructure_is_named_with_its_own_exit_code() -> None:
    pending = "the preview changes more than the Deployment's image; nothing was changed:\n  update aws:eks/addon:Addon"
    run, _, _ = deploy(rollouts=[(int(Exit.INFRA_CHANGES), {"outcome": "refused", "error": pending})])
    assert run.run() == Exit.INFRA_CHANGES
    text = run.report.markdown(Exit.INFRA_CHANGES)
    assert "infra changes" in text.splitlines()[0]
    assert "aws:eks/addon:Addon" in text
    assert "applied by the infrastructure workflow (.github/workflows/infrastructure.yml)" in text


def test_a_cluster_eks_upgraded_itself_is_named_with_its_own_exit_code() -> None:
    said = "preview refused: cluster rolling runs Kubernetes 1.36, a newer Kubernetes version than ...; nothing changed"
    run, _, _ = deploy(rollouts=[(int(Exit.CLUSTER_AHEAD), {"outcome": "refused", "error": said})])
    assert run.run() == Exit.CLUSTER_AHEAD
    text = run.report.markdown(Exit.CLUSTER_AHEAD)
    assert "cluster ahead" in text.splitlines()[0] and "runs Kubernetes 1.36" in text
    assert "EKS upgraded dev's cluster itself" in text
    assert "through the infrastructure workflow (.github/workflows/infrastructure.yml)" in text


def test_a_canary_left_paused_undecided_fails_the_deploy_and_says_how_to_go_on() -> None:
    said = (
        "the analysis could not decide on the canary of app:abc123 (...); paused there: `rollout promote --stack dev`"
    )
    run, _, _ = deploy(rollouts=[(int(Exit.UNDECIDED), {"outcome": "paused undecided", "error": said})])
    assert run.run() == Exit.UNDECIDED
    text = run.report.markdown(Exit.UNDECIDED)
    assert "undecided" in text.splitlines()[0]
    assert "rollout: paused undecided: the analysis could not decide" in text and "rollout promote" in text


def test_waits_for_another_updates_lock_a_bounded_time() -> None:
    busy = (int(Exit.BUSY), {"outcome": "busy"})
    run, _, shipped = deploy(rollouts=[busy, busy, (0, {"outcome": "succeeded"})])
    assert run.run() == Exit.OK
    assert shipped == ["12345e7"] * 3
    run, _, shipped = deploy(rollouts=[busy] * 100)
    run.lock_wait = 0
    assert run.run() == Exit.BUSY
    assert shipped == ["12345e7"]


def test_the_url_must_serve_the_tag() -> None:
    run, _, _ = deploy(served=False)
    assert run.run() == Exit.NOT_SERVED
    assert run.report.lines[-1] == "never served"


def test_a_runner_that_reads_the_albs_metrics_does_not_ask_the_alb_itself() -> None:
    # analysisSource cloudwatch says this runner does not reach the ALB: asking it would fail a release
    # the rollout confirmed and the metrics judged.
    run, _, shipped = deploy(served=False, config={"rolling:analysisSource": "cloudwatch"})
    assert run.run() == Exit.OK
    assert shipped == ["12345e7"]
    assert "the url was not asked for 12345e7" in run.report.lines[-1]
    assert "rolling:analysisSource cloudwatch" in run.report.lines[-1]


def test_a_bad_tag_changes_nothing() -> None:
    run, registry, shipped = deploy(tag="latest")
    assert run.run() == Exit.USAGE
    assert registry.pushed == [] and shipped == []


ANALYSIS = {
    "state": "pass",
    "version": "12345e7",
    "requests": 120,
    "errors": 1,
    "p99Ms": 8.5,
    "reason": "within maxErrorRatio and maxP99Ms",
    "windowSeconds": 30.2,
    "responses": {"1.0.0": {"200": 80}, "12345e7": {"200": 119, "502": 1}, "-": {"0": 2}},
}


def test_the_canary_is_asked_of_the_rollout_and_its_analysis_is_in_the_summary() -> None:
    run, _, shipped = deploy(canary=1, rollouts=[(0, {"outcome": "succeeded", "analysis": ANALYSIS})])
    assert run.run() == Exit.OK
    assert shipped == ["12345e7 canary 1"]
    text = run.report.markdown(Exit.OK)
    assert "### Analysis: pass" in text
    assert "12345e7: 120 responses, 1 errors, p99 8.5 ms over 30.2 s: within maxErrorRatio and maxP99Ms" in text
    assert "| 12345e7 | 502 | 1 |" in text and "| - | no response | 2 |" in text


def test_an_analysis_of_the_albs_metrics_shows_its_minutes_in_the_summary() -> None:
    from infra.rollout.analysis import Thresholds
    from infra.rollout.cloudwatch import Baseline, Minute, judge_minutes

    start = 1_800_000_000 - 1_800_000_000 % 60
    minutes = [Minute(start, 600, 6, 130.0), Minute(start + 60, 610, 80, 180.0)]
    verdict = judge_minutes(minutes, Baseline(6000, 60, 120.0), "12345e7", Thresholds(0.02, 1000, 50), alone_since=None)
    run, _, _ = deploy(rollouts=[(int(Exit.ABORTED), {"outcome": "aborted", "analysis": verdict.as_json()})])
    assert run.run() == Exit.ABORTED
    text = run.report.markdown(Exit.ABORTED)
    assert "### Analysis: breach" in text
    assert "| minute (UTC) | requests | errors | p99 ms |" in text
    assert "| 2027-01-15T08:01:00Z | 610 | 80 | 180.0 |" in text


def test_no_canary_where_the_stack_ships_on_readiness_alone() -> None:
    run, _, shipped = deploy(canary=1, config={"rolling:analysis": "false"})
    assert run.run() == Exit.OK
    assert shipped == ["12345e7"]
    assert "no canary: the stack ships on readiness alone (rolling:analysis false)" in run.report.lines


PROD_ECR = "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/rolling-prod"
DIGEST = "sha256:" + "e" * 64


def promote(
    rollouts: list[tuple[int, dict[str, Any]]], served: bool = True, config: dict[str, str] | None = None
) -> tuple[pipeline.Promote, list[tuple[str, str]], list[tuple[str, str]]]:
    answers = list(rollouts)
    asked: list[tuple[str, str]] = []
    checked: list[tuple[str, str]] = []

    def rollout(project: Path, source: str, stack: str) -> tuple[int, Report]:
        asked.append((source, stack))
        return printed(*answers.pop(0))

    def wait_served(url: str, tag: str, timeout: int) -> tuple[bool, str]:
        checked.append((url, tag))
        return served, f"{url} serves {tag}" if served else "never served"

    engine = FakeEngine({**DEPLOYED, "url": "http://prod-alb"}, {"rolling:imageTag": "12345e7", **(config or {})})
    run = pipeline.Promote(
        "dev",
        "prod",
        Path("."),
        5,
        60,
        cast(Any, engine),
        rollout=rollout,
        wait_served=wait_served,
        sleep=lambda s: None,
    )
    return run, asked, checked


def test_a_promotion_names_the_digest_and_checks_prods_url() -> None:
    shipped = {"outcome": "succeeded", "newImage": f"{PROD_ECR}@{DIGEST}"}
    run, asked, checked = promote([(Exit.BUSY, {"outcome": "busy"}), (0, shipped)])
    assert run.run() == Exit.OK
    assert asked == [("dev", "prod"), ("dev", "prod")], "a lock held by another update is waited for"
    assert checked == [("http://prod-alb", "12345e7")]
    summary = run.report.markdown(Exit.OK)
    assert summary.startswith("## Promotion of dev's release to prod: ok")
    assert f"prod runs {PROD_ECR}@{DIGEST} (tag 12345e7), the image dev runs, byte for byte" in summary


def test_a_promotion_to_a_stack_judged_by_the_albs_metrics_does_not_ask_its_alb() -> None:
    shipped = {"outcome": "succeeded", "newImage": f"{PROD_ECR}@{DIGEST}"}
    run, _, checked = promote([(0, shipped)], served=False, config={"rolling:analysisSource": "cloudwatch"})
    assert run.run() == Exit.OK
    assert checked == [] and "the url was not asked for 12345e7" in run.report.lines[-1]


def test_a_refused_promotion_passes_the_reason_and_code_through() -> None:
    refused = {"outcome": "refused", "error": "not promoting dev to prod: stack dev: its last release ..."}
    run, _, checked = promote([(Exit.NOT_PROMOTABLE, refused)])
    assert run.run() == Exit.NOT_PROMOTABLE
    assert checked == [] and "not promoting dev to prod" in run.report.lines[-1]


def test_a_promotion_stopped_by_pending_infrastructure_names_prods_own_workflow() -> None:
    pending = "the preview changes more than the Deployment's image; nothing was changed:\n  update aws:eks/addon:Addon"
    run, _, checked = promote([(int(Exit.INFRA_CHANGES), {"outcome": "refused", "error": pending})])
    assert run.run() == Exit.INFRA_CHANGES
    assert checked == []
    text = run.report.markdown(Exit.INFRA_CHANGES)
    assert "aws:eks/addon:Addon" in text
    # Prod's changes are applied by prod's workflow (its own environment and reviewers), not dev's.
    assert "prod's infrastructure workflow (.github/workflows/infrastructure-prod.yml)" in text
    assert "run this promotion again once they are" in text


def test_a_stack_whose_settings_do_not_hold_is_refused_before_anything_is_built() -> None:
    # The pipeline reads the stack's settings as the program does (Settings), never a key by hand: a value
    # the program would refuse stops the deploy here, naming the key, with nothing pushed or shipped.
    run, registry, shipped = deploy(config={"rolling:analysis": "maybe"})
    assert run.run() == Exit.USAGE
    assert registry.pushed == [] and shipped == []
    assert "rolling:analysis" in run.report.lines[-1] and "nothing was changed" in run.report.lines[-1]


def test_a_release_an_earlier_run_left_unjudged_is_said_first() -> None:
    left = {"stage": "bake", "image": "r:1234567", "since": "2026-12-05T10:00:00Z", "by": "ci (run 7)"}
    run, _, _ = deploy(rollouts=[(0, {"outcome": "succeeded", "unfinished": left})])
    assert run.run() == Exit.OK
    assert "first, r:1234567 was aborted: an earlier run left it unjudged in its bake" in "\n".join(run.report.lines)


def settle(answers: list[tuple[int, dict[str, Any]]]) -> tuple[pipeline.Settle, list[tuple[str, ...]]]:
    asked: list[tuple[str, ...]] = []

    def command(project: Path, *args: str, asks: bool = True) -> tuple[int, Report]:
        asked.append((*args, *(("--yes",) if asks else ())))
        return printed(*answers.pop(0))

    return pipeline.Settle("dev", Path("."), command), asked


def test_a_failed_or_cancelled_deploy_has_the_release_it_left_unjudged_aborted_and_said() -> None:
    left = {
        "stage": "canary",
        "image": "r:1234567",
        "previous": "r:7654321",
        "since": "2026-12-07T10:00:00Z",
        "by": "ci",
    }
    lost = {"locks": [{"user": "runner", "host": "fv-az12", "pid": 4300, "taken": "2026-12-07T10:01:00Z"}],
            "why": "the run that held it (pid 4242 on fv-az12) stopped renewing its lease 31s ago",
            "run": "pid 4242 on fv-az12"}  # fmt: skip
    run, asked = settle(
        [(0, {"outcome": "listed", "unfinished": left}), (0, {"outcome": "unfinished aborted", "lostRun": lost})]
    )
    assert run.run() == Exit.OK
    assert asked == [("status", "--stack", "dev"), ("abort", "--stack", "dev", "--yes")]
    said = "\n".join(run.report.lines)
    assert "a release was lost: r:1234567, in its canary since 2026-12-07T10:00:00Z (by ci)" in said
    assert "the stack's lock, left by a lost run (pid 4242 on fv-az12), was removed" in said
    assert "settled: r:1234567 aborted; r:7654321 serves" in said
    assert run.report.markdown(Exit.OK).startswith("## Settle of r:1234567 to dev: ok")


def test_a_stack_with_nothing_unjudged_is_left_alone() -> None:
    run, asked = settle([(0, {"outcome": "listed", "unfinished": None})])
    assert run.run() == Exit.OK
    assert asked == [("status", "--stack", "dev")], "no abort: a paused canary or a settled release is not this step's"
    assert "nothing to settle" in run.report.lines[-1]


def test_a_settle_that_fails_says_so_and_fails() -> None:
    left = {"stage": "bake", "image": "r:1234567", "previous": "", "since": "t", "by": "ci"}
    run, _ = settle(
        [(0, {"outcome": "listed", "unfinished": left}), (4, {"outcome": "rollback failed", "error": "boom"})]
    )
    assert run.run() == Exit.ROLLBACK_FAILED
    assert run.report.lines[-1] == "settling failed (rollback failed): boom"
