"""The local target: a Kubernetes provider for the cluster a kubeconfig names."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s


def provider(kubeconfig: str | None) -> k8s.Provider:
    """An explicit provider, so no resource depends on an ambient kubeconfig by accident.

    With ``kubeconfig`` unset the provider reads KUBECONFIG or ~/.kube/config, as kubectl does.
    """
    return k8s.Provider(
        "local",
        kubeconfig=pulumi.Output.secret(kubeconfig) if kubeconfig and "\n" in kubeconfig else kubeconfig,
    )
