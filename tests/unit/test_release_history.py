"""Releases read back from a stack's update history and its Deployment's ReplicaSets (infra/rollout/history.py),
and the cause each release writes (infra/release.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from infra import release
from infra.kube import revisions as kube_revisions
from infra.rollout import history
from tests.unit.samples.releases import HISTORY, REPLICA_SETS, REPO, T0, entry, rollback, ship


def rows() -> list[history.Release]:
    return history.releases(history.updates(HISTORY), kube_revisions.revisions(REPLICA_SETS))


def test_releases_newest_first_with_outcomes_and_revisions() -> None:
    found = rows()
    assert [(r.revision, r.image, r.verb, r.outcome) for r in found] == [
        (4, f"{REPO}:1.1.0", "rollback", "restored"),
        (3, f"{REPO}:1.2.0", "ship", "rolled back"),
        (2, f"{REPO}:1.1.0", "ship", "shipped"),
        (1, f"{REPO}:1.0.0", "up", "shipped"),
    ]
    assert found[2].who == "alice" and found[2].run_url == "https://ci/runs/7"
    assert found[1].restored_after == pytest.approx(60 + 30)  # from 1.2.0's start to the rollback's end
    assert history.current(found) is found[0]


def test_every_revision_kubectl_lists_is_a_release_with_the_same_image_and_cause() -> None:
    by_revision = {r.revision: r for r in rows()}
    for rs in kube_revisions.revisions(REPLICA_SETS):
        assert (by_revision[rs.number].image, by_revision[rs.number].cause) == (rs.image, rs.cause)


def test_an_analysis_abort_is_told_from_a_rollback() -> None:
    aborted = [entry(3, "1.0.0", rollback("1.0.0", "1.1.0", "aborted"), minutes=15), *HISTORY[-2:]]
    assert [r.outcome for r in history.releases(history.updates(aborted))] == ["restored", "aborted", "shipped"]


def test_a_failure_left_as_it_failed_is_failed() -> None:
    left = [entry(2, "1.1.0", ship("1.1.0"), result="failed", minutes=5), HISTORY[-1]]
    assert [r.outcome for r in history.releases(history.updates(left))] == ["failed", "shipped"]
    assert history.current(history.releases(history.updates(left))).image == f"{REPO}:1.0.0"  # type: ignore[union-attr]


def test_a_stale_cause_is_not_blamed_for_a_plain_up_of_another_image() -> None:
    # `pulumi up` after editing imageTag by hand: the config still holds the last release's cause.
    later = [entry(4, "1.3.0", ship("1.1.0"), minutes=30), *HISTORY]
    newest = history.releases(history.updates(later))[0]
    assert (newest.verb, newest.image, newest.who, newest.cause) == ("up", f"{REPO}:1.3.0", "", f"up {REPO}:1.3.0")


def test_a_digest_release_keeps_its_tag() -> None:
    digest = "sha256:" + "a" * 64
    promoted = release.Cause("promote", f"{REPO}@{digest}", "bob", "from dev").text()
    found = history.releases(history.updates([entry(1, "1.1.0", promoted, digest=digest)]))[0]
    assert (found.image, found.tag, found.digest, found.verb, found.note) == (
        f"{REPO}@{digest}",
        "1.1.0",
        digest,
        "promote",
        "from dev",
    )
    assert found.as_json()["tag"] == "1.1.0" and found.as_json()["digest"] == digest


def test_undo_goes_to_the_release_before_the_one_that_runs() -> None:
    chosen = history.undo_target(rows(), None)
    assert not isinstance(chosen, str)
    assert (chosen.image, chosen.revision) == (f"{REPO}:1.0.0", 1)


def test_undo_to_a_revision() -> None:
    chosen = history.undo_target(rows(), 1)
    assert not isinstance(chosen, str) and chosen.image == f"{REPO}:1.0.0"
    assert history.undo_target(rows(), 9) == "there is no revision 9; the Deployment has 1, 2, 3, 4"
    assert history.undo_target(rows(), 3) == f"revision 3 ({REPO}:1.2.0) never served: it was rolled back"


def test_a_stack_that_shipped_and_soaked_is_promotable() -> None:
    shipped = history.releases(history.updates(HISTORY[-3:]))  # 1.0.0, then 1.1.0 shipped at 10:00:30
    ended = T0 + timedelta(minutes=10, seconds=30)
    chosen = history.promotable(shipped, 600, ended + timedelta(seconds=600))
    assert not isinstance(chosen, str) and chosen.image == f"{REPO}:1.1.0"
    young = history.promotable(shipped, 600, ended + timedelta(seconds=100))
    assert isinstance(young, str) and "has run 100s" in young and "try again in 500s" in young


def test_a_rolled_back_stack_is_not_promotable() -> None:
    why = history.promotable(rows(), 0, T0 + timedelta(days=1))
    assert why == (
        f"its last release was {REPO}:1.2.0, which was rolled back ({REPO}:1.1.0 serves again): "
        "promote once a release ships there"
    )


def test_the_table_marks_what_runs() -> None:
    text = history.table(rows(), T0 + timedelta(hours=2))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["REVISION", "IMAGE", "OUTCOME"]
    assert lines[1].split()[:4] == ["4", f"{REPO}:1.1.0", "restored", "*"]
    assert "ship by alice" in lines[3] and "2h ago" in lines[3]


@pytest.mark.parametrize(
    "cause",
    [
        release.Cause("ship", f"{REPO}:1.1.0", "alice"),
        release.Cause("rollback", f"{REPO}:1.0.0", "bob (run https://github.com/o/r/actions/runs/1)", "x; y"),
        release.Cause("up", f"{REPO}@sha256:" + "b" * 64),
    ],
)
def test_a_cause_reads_back_as_written(cause: release.Cause) -> None:
    assert release.parse(cause.text()) == cause


def test_a_cause_is_one_line_of_bounded_length() -> None:
    text = release.Cause("rollback", f"{REPO}:1", "alice", "line one\nline two " + "x" * 900).text()
    assert "\n" not in text and len(text) == release.MAX_CAUSE
    with pytest.raises(ValueError, match="one line"):
        release.check("a\nb")


def test_who_is_the_workflow_run_in_github_actions() -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_RUN_ID": "42",
        "GITHUB_ACTOR": "octocat",
        "GITHUB_REPOSITORY": "acme/rolling",
        "GITHUB_SERVER_URL": "https://github.com",
    }
    assert release.who(env) == "octocat (run https://github.com/acme/rolling/actions/runs/42)"
    assert release.who({}) != ""
