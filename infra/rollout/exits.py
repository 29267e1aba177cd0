"""The exit codes of `rollout` and of the deploy pipeline: CI tells each outcome apart by its number."""

from __future__ import annotations

import enum


@enum.unique  # two outcomes with one number would be an alias, not a second outcome
class Exit(enum.IntEnum):
    OK = 0
    # The rollout failed and was left as it failed (--no-rollback), or was interrupted; or the run stopped before
    # any change (a preview or history that could not be read, a rollout already under way): --json's `changed`.
    FAILED = 1
    USAGE = 2  # bad arguments or tag: nothing changed
    ROLLED_BACK = 3  # the rollout failed; the last good tag was restored and is healthy
    ROLLBACK_FAILED = 4  # the rollout failed and so did the rollback: act by hand
    BUSY = 5  # another update holds the stack: nothing changed
    NOT_CONFIRMED = 6  # declined, or no terminal to ask on and no --yes: nothing changed
    INFRA_CHANGES = 7  # the preview changes more than the Deployment: nothing changed
    # The deploy pipeline's own outcomes (python -m infra.pipeline); it passes the ones above through.
    NOT_BOOTSTRAPPED = 8  # the stack was never deployed: its infrastructure comes first; nothing changed
    TAG_CONFLICT = 9  # the image tag exists, built from another commit: nothing changed
    NOT_SERVED = 10  # the rollout succeeded, but the stack's url did not serve the tag in time
    # The command itself broke (a bug, or its environment): the message and traceback say what; an
    # update it had started may still hold the stack (run `pulumi cancel` if it stays locked).
    CRASHED = 11
    # The cluster could not be read (not reached, or it refused the credentials): before the update,
    # nothing changed; after it, whether the new version runs is not confirmed (never a success).
    UNREADABLE = 12
    UNCONFIRMED = 13
    # The stack's state lists a Deployment the cluster does not have (a cluster made again): nothing
    # changed; `pulumi up --refresh` creates it again.
    DRIFTED = 14
    # The analysis found the new version serving errors, or slowly, during the rollout or its bake: it was
    # rolled back, and the old version serves (the evidence is in --json's `analysis`).
    ABORTED = 15
    # The analysis could not reach the stack's url from here before the update (or, with analysisSource
    # cloudwatch, read the ALB's metrics): nothing changed; run where the url is reachable, read the
    # metrics instead, or set rolling:analysis false to ship on readiness alone.
    NOT_PROBED = 16
    # `rollout promote --from A --to B` refused: A's last release did not ship, or has not run for B's
    # soakSeconds, or its image cannot be put in B's repository. Nothing changed.
    NOT_PROMOTABLE = 17
    # The cluster's watchdog over a judged release (rolling:watchdog) could not be started, or did not say it
    # watches, in time: the release was refused before any change. Nothing changed.
    UNGUARDED = 18
    # The stack's EKS cluster runs a newer Kubernetes version than rolling:kubernetesVersion: EKS upgraded it
    # itself (its standard upgrade policy). Every update is refused until the settings name that version and
    # its add-on builds, applied through the infrastructure workflow. Nothing changed.
    CLUSTER_AHEAD = 19
    # The analysis could not decide on a canary (too little evidence by analysisMaxSeconds, or evidence gone
    # missing) and rolling:analysisUndecided is pause: the canary was left serving its share, unjudged, for a
    # person to `rollout promote` or `rollout abort`. Never a success: nothing shipped.
    UNDECIDED = 20
