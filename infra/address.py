"""A stack's url from the address the update gives its front door (the Service's IP on the local target,
the ALB's hostname on eks).

A preview that creates the Service or the Ingress gets no address from the provider: the object is only
planned, and its address comes with the update. Said as known ("http://None", "http://"), that guess goes
into a saved plan (`pulumi preview --save-plan`, which the infrastructure workflows apply), and the update
that then reads the real address differs from its plan in a stack output: the engine fails it after every
resource was made, with no message (exit 1 here; pulumi/pulumi#16670, open at 3.260). Said as unknown, the
plan takes whatever the update finds, as it does for any output computed later.
"""

from __future__ import annotations

from typing import Any

import pulumi


def url(scheme: str, host: str | None) -> Any:
    """`scheme://host`; while previewing, unknown when the provider has no address yet."""
    if not host and pulumi.runtime.is_dry_run():
        return pulumi.UNKNOWN
    return f"{scheme}://{host or ''}"
