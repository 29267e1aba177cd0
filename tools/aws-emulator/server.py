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

Run with the emulator's virtualenv (tools/aws-emulator/requirements.txt): python server.py -H HOST -p PORT.
"""

from __future__ import annotations

import sys
from typing import Any

from moto.ecr.responses import ECRResponse
from moto.iam.access_control import S3IAMRequest
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


ECRResponse._determine_resource = _ecr_resource  # type: ignore[attr-defined]

if __name__ == "__main__":
    main(sys.argv[1:])
