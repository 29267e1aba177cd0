"""Registry (eks): the ECR repository the deploy workflow pushes the app's images to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class RegistryArgs:
    """Plain inputs of the registry."""

    repository_name: str
    keep_images: int
    # True: `pulumi destroy` deletes the repository with its images (ECR refuses to delete a repository
    # that holds images unless asked to: force_delete). False: destroy leaves it, images and all.
    delete_images_on_destroy: bool
    # The repository is in ECR already and the stack is to keep it (a stack made again after a destroy
    # that left it): the stack takes it over (`import`) instead of failing to create it
    # (RepositoryAlreadyExistsException).
    adopt_existing: bool = False


def adopts(repository_name: str, delete_images_on_destroy: bool) -> bool:
    """Whether the stack takes over an ECR repository of that name that exists already: only one it keeps
    on destroy (`ecrOnDestroy: retain`), the one a destroy of this stack left. One it would delete with its
    images is never taken over, whoever made it: creating it fails instead, naming it.

    The engine imports a resource whose `import` ID it does not hold yet, then diffs it as any other, and
    treats one it holds under that ID as any other (pulumi pkg/resource/deploy/step_generator.go at
    v3.260.0, `isImport`; developer-docs/architecture/import.md), so the option stays set on every
    update. An ECR repository's import ID is its name. Listing the account's repositories needs
    `ecr:DescribeRepositories` (docs/iam)."""
    if delete_images_on_destroy:
        return False
    return repository_name in (aws.ecr.get_repositories().names or [])


def lifecycle_policy(keep: int) -> dict[str, Any]:
    """ECR's lifecycle document that expires all but the ``keep`` newest images."""
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"keep the {keep} newest images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep},
                "action": {"type": "expire"},
            }
        ]
    }


class Registry(pulumi.ComponentResource):
    """An ECR repository: immutable tags (a tag names one image for good), scanned on push."""

    repository_url: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rolling:index:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        repository = aws.ecr.Repository(
            f"{name}-repository",
            name=args.repository_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            force_delete=args.delete_images_on_destroy,
            opts=pulumi.ResourceOptions(
                parent=self,
                retain_on_delete=not args.delete_images_on_destroy,
                import_=args.repository_name if args.adopt_existing else None,
            ),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repository.name,
            policy=json.dumps(lifecycle_policy(args.keep_images)),
            opts=child,
        )
        self.repository_url = repository.repository_url
        self.register_outputs({"repositoryUrl": self.repository_url})
