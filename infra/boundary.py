"""The permissions boundary every IAM role of an eks stack carries (docs/iam/boundary-policy.json).

The infrastructure role may make and change the stack's roles (`rolling-*`, `alb-controller-*`) and the
policies on them, but only roles whose permissions boundary is this account's `rolling-boundary` policy
(docs/iam/infrastructure-policy.json): whatever policy it puts on such a role, the role can do no more than
the boundary allows, which is no IAM, no STS and no Organizations. So the infrastructure role cannot make
itself, or any role it can assume, an administrator.

The stack's roles are made partly by this program (the load balancer controller's, infra/alb.py) and partly
by pulumi-eks inside its component (the cluster's service role, the Fargate pod execution role): a stack
transform gives each of them the boundary, the component's children included (the engine runs a
registered transform on every resource of the stack, those a multi-language component registers too:
pulumi `sdk/python/lib/pulumi/runtime/stack.py` `register_resource_transform`). A role made before the
boundary existed gets it in place at the next infrastructure update (`PutRolePermissionsBoundary`), never
a replacement. The policy pack holds every role of a preview to it (policy/rules.py ``bounded_roles``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The boundary's name in the account; the first day on AWS makes it (docs/aws.md).
NAME = "rolling-boundary"
ROLE_TYPE = "aws:iam/role:Role"
PROPERTY = "permissionsBoundary"


def arn(account: str) -> str:
    return f"arn:aws:iam::{account}:policy/{NAME}"


def bounded_props(type_: str, props: dict[str, Any], boundary: str) -> dict[str, Any] | None:
    """``props`` of a resource of ``type_`` with ``boundary`` set, when it is a role without one; else None
    (a role that names a boundary of its own keeps it, and the policy pack says whether it is ours)."""
    if type_ != ROLE_TYPE or props.get(PROPERTY):
        return None
    return {**props, PROPERTY: boundary}


def transform(boundary: str) -> Callable[[Any], Any]:
    """A stack transform (pulumi.ResourceTransform) that gives every role ``boundary``."""
    import pulumi

    def bound(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        props = bounded_props(args.type_, dict(args.props), boundary)
        return None if props is None else pulumi.ResourceTransformResult(props=props, opts=args.opts)

    return bound
