"""Who may reach the cluster's API: EKS access entries from settings (no Pulumi here).

With `authentication_mode: API` the cluster trusts only its access entries; pulumi-eks adds one for the
principal that created the cluster (`bootstrapClusterCreatorAdminPermissions`, on by default), so without
the entries below nobody else, CI included, could reach the API server. The access policies are EKS's
managed ones (https://docs.aws.amazon.com/eks/latest/userguide/access-policy-permissions.html):
AmazonEKSClusterAdminPolicy is cluster-admin; AmazonEKSEditPolicy is Kubernetes' `edit` role (change most
objects in a namespace, not RBAC); AmazonEKSViewPolicy is `view` (read most objects, not Secrets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ADMIN = "AmazonEKSClusterAdminPolicy"
EDIT = "AmazonEKSEditPolicy"
VIEW = "AmazonEKSViewPolicy"


@dataclass(frozen=True)
class Grant:
    """One access policy of an entry: the policy's name and the namespaces it covers (empty: the cluster)."""

    policy: str
    namespaces: tuple[str, ...] = ()

    def policy_arn(self, partition: str) -> str:
        return f"arn:{partition}:eks::aws:cluster-access-policy/{self.policy}"


@dataclass(frozen=True)
class Entry:
    """One access entry: a stable name for the resource, the IAM principal and what it may do."""

    name: str
    principal_arn: str
    grants: tuple[Grant, ...]

    @property
    def partition(self) -> str:
        return self.principal_arn.split(":", 2)[1]


def _principal_key(arn: str) -> tuple[str, str, str, str] | None:
    """(partition, account, kind, name) of an IAM role or user ARN or of an assumed-role session; None for
    anything else. A session ARN (`arn:aws:sts::1:assumed-role/NAME/SESSION`) drops the role's path, and a
    role's name is unique in its account whatever its path, so the name is what identifies it
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    _, partition, service, _, account, resource = parts
    if service == "sts" and resource.startswith("assumed-role/"):
        return (partition, account, "role", resource.split("/")[1])
    if service == "iam" and resource.split("/", 1)[0] in ("role", "user"):
        return (partition, account, resource.split("/", 1)[0], resource.rsplit("/", 1)[-1])
    return None


def listed_caller(caller_arn: str, admins: tuple[str, ...]) -> str | None:
    """The entry of ``admins`` that names the principal behind ``caller_arn`` (what `sts
    get-caller-identity` answers), if any. EKS gives the principal that creates a cluster an access entry
    of its own (pulumi-eks sets `bootstrapClusterCreatorAdminPermissions` in nodejs/eks/cluster/cluster.ts,
    with no input to turn it off, and does not skip it among `accessEntries`: pulumi/pulumi-eks#2373), and
    a second entry for one principal fails with ResourceInUseException."""
    caller = _principal_key(caller_arn)
    if caller is None:
        return None
    return next((arn for arn in admins if _principal_key(arn) == caller), None)


# The tag on every access entry the stack makes: its project and stack. An entry for a principal that
# lacks it was made by someone else: EKS for the cluster's creator, or a person.
OWNER_TAG = "rolling:stack"


def caller_entry_refusal(
    listed: str, caller_arn: str, cluster_exists: bool, entry_tags: dict[str, str] | None, owner: str
) -> str | None:
    """Why an update by ``caller_arn``, whom clusterAdmins lists as ``listed``, must not run, or None when it
    may: EKS allows one access entry a principal. A cluster made by this update gives its creator one by
    itself (pulumi-eks sets `bootstrapClusterCreatorAdminPermissions` in nodejs/eks/cluster/cluster.ts, with
    no input to turn it off, and does not skip it among `accessEntries`: pulumi/pulumi-eks#2373), so a
    listed caller's entry would be the second. On a cluster that exists, ``entry_tags`` are the tags of the
    entry EKS has for the principal (None: it has none): one this stack made (tagged ``owner``) is the
    stack's own, any other (the creator's, or one made by hand) makes the stack's fail with
    ResourceInUseException."""
    said = f"rolling:clusterAdmins names {listed}, the IAM principal running this update ({caller_arn})"
    if not cluster_exists:
        return (
            f"{said}, and this update creates the cluster: EKS makes the principal that creates a cluster an "
            "admin by an access entry of its own, and a second entry for it fails with ResourceInUseException. "
            "Remove it from clusterAdmins (the role that creates the cluster, and runs its infrastructure "
            "updates, needs no entry), or create the cluster as another principal (docs/aws.md, the first day)"
        )
    if entry_tags is None or entry_tags.get(OWNER_TAG) == owner:
        return None
    return (
        f"{said}, and EKS already has an access entry for it that this stack did not make (the one EKS gave "
        "the cluster's creator, or one made by hand): a second fails with ResourceInUseException. Remove it "
        "from clusterAdmins if it created the cluster (it is an admin already), or delete the other entry "
        "(`aws eks delete-access-entry`) for the stack to make its own"
    )


def _short(arn: str) -> str:
    """The principal's name, as a resource name part: `arn:aws:iam::1:role/ci/Deploy` -> `deploy`."""
    return re.sub(r"[^a-z0-9-]+", "-", arn.rsplit("/", 1)[-1].lower()).strip("-") or "principal"


def entries(admins: tuple[str, ...], deploy_role: str | None, preview_role: str | None, namespace: str) -> list[Entry]:
    """The cluster's access entries. The deploy role rolls the app: edit in its namespace, and read-only
    elsewhere, which the Kubernetes provider needs to preview the stack's other objects (the Namespace,
    the load balancer controller's). The preview role reads only. A principal named twice gets one
    entry (EKS allows one per principal) with the widest grants."""
    wanted: dict[str, tuple[str, tuple[Grant, ...]]] = {}
    for arn in admins:
        wanted.setdefault(arn, ("admin", (Grant(ADMIN),)))
    if deploy_role and deploy_role not in wanted:
        wanted[deploy_role] = ("deploy", (Grant(EDIT, (namespace,)), Grant(VIEW)))
    if preview_role and preview_role not in wanted:
        wanted[preview_role] = ("preview", (Grant(VIEW),))
    result: list[Entry] = []
    taken: set[str] = set()
    for arn, (kind, grants) in wanted.items():
        name = f"{kind}-{_short(arn)}"
        suffix = 2
        while name in taken:
            name = f"{kind}-{_short(arn)}-{suffix}"
            suffix += 1
        taken.add(name)
        result.append(Entry(name, arn, grants))
    return result
