"""EKS Kubernetes versions: end of standard support, and the add-on builds pinned for each (no Pulumi here).

Standard support lasts 14 months from a version's release on EKS; extended support, 12 more months at a
higher cluster fee (https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html, and the
release calendar on that page). Add-on versions must be ones `aws eks describe-addon-versions
--addon-name NAME --kubernetes-version 1.NN` lists; they are pinned so that AWS publishing a new build
changes nothing until someone changes a setting (pulumi-eks 4.4.0 resolves an unset version with
`getAddonVersion({mostRecent: true})`, nodejs/eks/cluster/cluster.ts and addons/cni-addon.ts).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

# The version new stacks get: in standard support, with add-on builds known to exist for it.
DEFAULT = "1.35"
# A preview warns this many days before a stack's version leaves standard support.
WARN_DAYS = 60


@dataclass(frozen=True)
class Addons:
    """The EKS add-on builds pinned for one Kubernetes minor version."""

    coredns: str
    kube_proxy: str
    vpc_cni: str


# End of standard support on EKS, by minor version.
END_OF_STANDARD_SUPPORT = {
    "1.32": datetime.date(2026, 3, 23),
    "1.33": datetime.date(2026, 7, 29),
    "1.34": datetime.date(2026, 12, 2),
    "1.35": datetime.date(2027, 3, 27),
}

# The add-on builds a stack of that version gets unless its settings name others. Another version
# needs its three builds set (corednsVersion, kubeProxyVersion, vpcCniVersion).
ADDONS = {
    "1.35": Addons(coredns="v1.13.2-eksbuild.1", kube_proxy="v1.35.0-eksbuild.2", vpc_cni="v1.21.1-eksbuild.3"),
}


def support_warning(version: str, today: datetime.date) -> str | None:
    """What a preview should say about ``version``'s support on ``today``, or None when all is well."""
    end = END_OF_STANDARD_SUPPORT.get(version)
    if end is None:
        return (
            f"rolling:kubernetesVersion {version}: its end of standard support is not in this program's table "
            "(infra/eks_versions.py); check the EKS release calendar, since extended support costs more per hour"
        )
    days = (end - today).days
    if days < 0:
        return (
            f"rolling:kubernetesVersion {version} left EKS standard support on {end.isoformat()}: the cluster "
            "is billed at the extended-support rate (or upgraded by AWS under the standard upgrade policy); "
            "upgrade it one minor version at a time"
        )
    if days <= WARN_DAYS:
        return (
            f"rolling:kubernetesVersion {version} leaves EKS standard support on {end.isoformat()} "
            f"(in {days} days): plan the upgrade to the next minor version"
        )
    return None


def _minor(version: str) -> tuple[int, int] | None:
    """(1, 35) for "1.35" (or "1.35.2"); None for what is not a version."""
    parts = version.split(".")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]), int(parts[1])


# The words that tell the refusal below apart in a failed preview's output (the rollout command's exit 19).
AHEAD = "a newer Kubernetes version than rolling:kubernetesVersion"


def ahead_of_settings(configured: str, running: str | None, cluster: str) -> str | None:
    """Why an update must not run when ``cluster`` already runs a newer version than the settings name, or
    None. EKS upgrades a cluster's control plane itself once its version leaves standard support under
    `upgradePolicy: standard` (https://docs.aws.amazon.com/eks/latest/userguide/view-upgrade-policy.html),
    and it cannot be downgraded: an update planned from the older setting would fail at EKS."""
    ran, wanted = _minor(running or ""), _minor(configured)
    if ran is None or wanted is None or ran <= wanted:
        return None
    return (
        f"cluster {cluster} runs Kubernetes {running}, {AHEAD} ({configured}) (EKS upgrades a "
        "cluster itself when its version leaves standard support under upgradePolicy standard, and a cluster "
        f"cannot be downgraded). Set rolling:kubernetesVersion {running}, and corednsVersion, "
        "kubeProxyVersion and vpcCniVersion to builds for it (aws eks describe-addon-versions --addon-name "
        f"NAME --kubernetes-version {running}), then apply it through the infrastructure workflow"
    )
