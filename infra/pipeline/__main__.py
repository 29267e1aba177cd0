"""`python -m infra.pipeline`: the deploy (its options), `promote` or `settle` (their own)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from infra.pipeline.deploy import Deploy
from infra.pipeline.promote import Promote
from infra.pipeline.settle import Settle
from infra.pipeline.summary import write_summary
from infra.rollout.engine import Engine, EngineError, interruptible_children
from infra.rollout.exits import Exit
from infra.rollout.registry import RegistryError

# How long a deploy or a promotion waits for another update's lock: longer than the longest update that holds
# it, an infrastructure apply (the first one makes the VPC, the cluster, its add-ons and the load balancer
# controller: about 20 minutes, docs/aws.md; a control plane version update "should finish within a few
# minutes", the EKS API reference's UpdateClusterVersion), with room to spare.
LOCK_WAIT_S = 45 * 60


def promote_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="promote", description="Ship the release one stack runs to another (rollout promote), check the url."
    )
    parser.add_argument("--from", dest="source", required=True, help="the stack whose release to promote, such as dev")
    parser.add_argument("--to", dest="stack", required=True, help="the stack to promote it to, such as prod")
    parser.add_argument("--cwd", default=".", help="the Pulumi project folder (default: the current one)")
    parser.add_argument("--url-timeout", type=int, default=300, help="seconds the url has to serve the release")
    parser.add_argument("--lock-wait", type=int, default=LOCK_WAIT_S, help="seconds to wait for another update's lock")
    parser.add_argument("--summary", help="append the summary (Markdown) here (default: $GITHUB_STEP_SUMMARY)")
    args = parser.parse_args(argv)
    project = Path(args.cwd).resolve()
    promote = Promote(args.source, args.stack, project, args.url_timeout, args.lock_wait, Engine(project, args.stack))
    try:
        code = promote.run()
    except (RuntimeError, EngineError, OSError, subprocess.SubprocessError) as err:
        promote.report.add(f"failed: {err.__class__.__name__}: {err}")
        code = Exit.FAILED
    write_summary(args.summary, promote.report.markdown(code))
    return int(code)


def settle_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="settle",
        description="Abort the release a failed or cancelled deploy left unjudged on a stack (rollout abort).",
    )
    parser.add_argument("--stack", required=True, help="the stack to settle, such as dev")
    parser.add_argument("--cwd", default=".", help="the Pulumi project folder (default: the current one)")
    parser.add_argument("--summary", help="append the summary (Markdown) here (default: $GITHUB_STEP_SUMMARY)")
    args = parser.parse_args(argv)
    settle = Settle(args.stack, Path(args.cwd).resolve())
    try:
        code = settle.run()
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        settle.report.add(f"failed: {err.__class__.__name__}: {err}")
        code = Exit.FAILED
    write_summary(args.summary, settle.report.markdown(code))
    return int(code)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deploy", description="Build and push the app image if absent, ship it with rollout, check the url."
    )
    parser.add_argument("--stack", required=True, help="the stack to deploy to, such as dev")
    parser.add_argument("--tag", required=True, help="the image tag, such as the short commit SHA")
    parser.add_argument("--revision", required=True, help="the full commit SHA the image is built from")
    parser.add_argument("--cwd", default=".", help="the Pulumi project folder (default: the current one)")
    parser.add_argument("--url-timeout", type=int, default=300, help="seconds the url has to serve the tag")
    parser.add_argument("--lock-wait", type=int, default=LOCK_WAIT_S, help="seconds to wait for another update's lock")
    parser.add_argument(
        "--canary", type=int, default=0, metavar="N", help="run N canary pods first and analyse them (rollout --canary)"
    )
    parser.add_argument("--summary", help="append the summary (Markdown) here (default: $GITHUB_STEP_SUMMARY)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    interruptible_children()
    if given[:1] == ["promote"]:
        return promote_main(given[1:])
    if given[:1] == ["settle"]:
        return settle_main(given[1:])
    args = parse_args(given)
    project = Path(args.cwd).resolve()
    deploy = Deploy(
        stack=args.stack,
        tag=args.tag,
        revision=args.revision,
        project=project,
        url_timeout=args.url_timeout,
        lock_wait=args.lock_wait,
        engine=Engine(project, args.stack),
        canary=args.canary,
    )
    try:
        code = deploy.run()
    except (RegistryError, RuntimeError, EngineError, OSError, subprocess.SubprocessError) as err:
        deploy.report.add(f"failed: {err.__class__.__name__}: {err}")
        code = Exit.FAILED
    write_summary(args.summary, deploy.report.markdown(code))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
