"""The local target: a Kubernetes provider for the cluster a kubeconfig names."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.kube import access as kube_access


def provider(kubeconfig: str | None) -> k8s.Provider:
    """An explicit provider, so no resource depends on an ambient kubeconfig by accident.

    With ``kubeconfig`` unset the provider reads KUBECONFIG or ~/.kube/config, as kubectl does.
    The file's text, when given instead of a path, holds credentials: it stays a secret.
    """
    if kubeconfig and kube_access.is_text(kubeconfig):
        return k8s.Provider("local", kubeconfig=pulumi.Output.secret(kubeconfig))
    return k8s.Provider("local", kubeconfig=kubeconfig)
