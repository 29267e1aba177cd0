"""moto's server, with S3 requests authorised by the IAM actions AWS checks for them.

moto authorises an S3 request by its API operation's name (`s3:HeadObject`, `s3:ListObjectsV2`), which
are not IAM actions: AWS checks `s3:GetObject` for HeadObject and `s3:ListBucket` for ListObjectsV2
(Amazon S3 API Reference, each operation's "Permissions"; Service Authorization Reference, "Actions
defined by Amazon S3"). A policy that is right for AWS would be refused here, and one that is wrong for
AWS allowed. This maps the operations the state backend makes to their actions before moto checks them;
every other operation keeps its name, which for S3 is most often the action's own.

moto also authorises every ECR request against the resource `*`, so a grant scoped to a repository's ARN (as
AWS evaluates it: Service Authorization Reference, "Resource types defined by Amazon ECR") never applies
here and one on `*` always does. A request that names its repository (`repositoryName`) or resource
(`resourceArn`) is authorised against that repository's ARN, as AWS does; one that names none (a
DescribeRepositories of the whole registry, GetAuthorizationToken) against `*`.

moto evaluates no condition of an identity policy (it passes the request's condition values to trust
policies alone, and a condition whose key the request lacks is taken as met), so a grant that holds only
under a condition would hold always. The infrastructure role's grants on the stack's roles hold only for a
role whose permissions boundary is `rolling-boundary` (`iam:PermissionsBoundary`: on CreateRole and
PutRolePermissionsBoundary the boundary the request sets, on the actions on an existing role its
boundary: AWS's Service Authorization Reference, "Condition keys for IAM"); and a CreateRole is authorised
against the ARN the role will have, as AWS does (moto: against `*`). Here each request's policies
are evaluated with that key's value (empty when there is none), with the rest of moto's own evaluation.
Of the conditions, moto evaluates `StringEquals` alone; the policies here use no other on IAM's actions.
And moto takes an Allow whose condition is not met for a Deny (AWS: for no Allow); for these policies that
changes no answer, since the conditional Allow is the only grant of the actions it names.

Run with the emulator's virtualenv (tools/aws-emulator/requirements.txt): python server.py -H HOST -p PORT.
"""

from __future__ import annotations

import sys
from typing import Any

from moto.ecr.responses import ECRResponse
from moto.iam.access_control import IAMPolicy, IAMRequestBase, PermissionResult, S3IAMRequest
from moto.iam.responses import IamResponse
from moto.iam.utils import format_incoming_conditional_values
from moto.server import main

AS_AWS_CHECKS = {
    "HeadObject": "GetObject",
    "HeadBucket": "ListBucket",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "CopyObject": "PutObject",
    "DeleteObjects": "DeleteObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListParts": "ListMultipartUploadParts",
}

_init = S3IAMRequest.__init__


def _init_as_aws(self: S3IAMRequest, *args: Any, action: Any, **kwargs: Any) -> None:
    # Only the authorisation request: moto still routes and parses the request by its operation.
    name = action[0] if isinstance(action, list) else action
    _init(self, *args, action=AS_AWS_CHECKS.get(name, name), **kwargs)


S3IAMRequest.__init__ = _init_as_aws


def _ecr_resource(self: ECRResponse) -> str:
    arn = self._get_param("resourceArn")
    if arn:
        return str(arn)
    name = self._get_param("repositoryName")
    if name:
        account = self._get_param("registryId") or self.current_account
        return f"arn:aws:ecr:{self.region}:{account}:repository/{name}"
    return "*"


ECRResponse._determine_resource = _ecr_resource

_resolve_role = IamResponse._resolve_resource_arn


def _role_arn(self: IamResponse, role_name: str) -> str:
    # moto authorises a request on a role that does not exist yet (CreateRole) against `*`; AWS against the
    # ARN the role will have.
    found = _resolve_role(self, role_name)
    if found != "*":
        return str(found)
    path = str(self._get_param("Path") or "/")
    return f"arn:aws:iam::{self.current_account}:role{path}{role_name}"


IamResponse._resolve_resource_arn = _role_arn

# The IAM actions whose request context holds iam:PermissionsBoundary: those that set a role's boundary (its
# value is the one they set), and those on a role that has one (its value is that role's).
SETS_BOUNDARY = {"iam:CreateRole", "iam:PutRolePermissionsBoundary"}


def _condition_values(self: IAMRequestBase) -> dict[str, str]:
    values: dict[str, str] = dict(format_incoming_conditional_values(self._data))
    if not self._action.startswith("iam:"):
        return values
    if self._action in SETS_BOUNDARY:
        given = self._data.get("PermissionsBoundary") or [""]
        values["iam:PermissionsBoundary"] = given[0] if isinstance(given, list) else str(given)
    elif "RoleName" in self._data:
        name = self._data["RoleName"]
        try:
            role = self.backend.get_role(name[0] if isinstance(name, list) else str(name))
        except Exception:  # no such role: the action fails on its own
            return values
        values["iam:PermissionsBoundary"] = role.permissions_boundary_arn or ""
    return values


def _check_action_permitted(self: IAMRequestBase, resource: str) -> None:
    # moto's own (IAMRequestBase.check_action_permitted), with the request's condition values.
    if self._action == "sts:GetCallerIdentity":
        return
    values = _condition_values(self)
    permitted = False
    for policy in self._access_key.collect_policies():
        result = IAMPolicy(policy).is_action_permitted(self._action, resource, None, values)
        if result == PermissionResult.DENIED:
            self._raise_access_denied()
        elif result == PermissionResult.PERMITTED:
            permitted = True
    if self._is_assuming_role_operation(resource):
        permitted = permitted and self._check_role_trust_relationship(resource)
    if not permitted:
        self._raise_access_denied()


IAMRequestBase.check_action_permitted = _check_action_permitted

if __name__ == "__main__":
    main(sys.argv[1:])
