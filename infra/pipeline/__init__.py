"""deploy --stack STACK --tag TAG --revision SHA: the deploy workflow's steps, the same on every target;
`promote --from A --to B`: the promote workflow's; `settle --stack S`: what both run when their job failed or was
cancelled (the release it left unjudged aborted).

1. the stack must exist (its infrastructure comes first, from the infrastructure workflow);
2. the image: pushed if its tag is absent; an earlier push of the same commit is reused (a re-run);
   a tag that names another build is refused, since the registry's tags are immutable;
3. the rollout command ships the tag (preview, plan, rollout, rollback), waiting a bounded time for
   another update's lock to go;
4. the stack's url must serve the tag;
5. a summary for people (GitHub's step summary when there is one), and an exit code per outcome.

On eks the registry is ECR (scripts/registry.sh); on local it is the node's (cluster/images.sh).
"""

from infra.pipeline.deploy import REVISION_LABEL, Deploy
from infra.pipeline.promote import Promote
from infra.pipeline.settle import Settle
from infra.pipeline.steps import INFRASTRUCTURE_WORKFLOW, infrastructure_workflow, until_unlocked
from infra.pipeline.summary import Summary

__all__ = [
    "INFRASTRUCTURE_WORKFLOW",
    "REVISION_LABEL",
    "Deploy",
    "Promote",
    "Settle",
    "Summary",
    "infrastructure_workflow",
    "until_unlocked",
]
