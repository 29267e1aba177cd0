"""A run's lease on its stack: a Kubernetes Lease (coordination.k8s.io/v1) in the app's namespace that a run of
the rollout command holds, and renews, for as long as it may change the stack.

A run can die at any moment (a CI runner lost, `kill -9`) and leave the stack's lock behind: the file and S3
backends' lock has no lease or expiry of its own (pulumi/pulumi#8973, #3600), so every later run would wait on
it until a person ran `pulumi cancel`. The next run removes such a lock itself, and only when its holder is
provably gone (``gone``): the run that held the stack stopped renewing its lease (or, on this machine, its
process has ended), and the lock was taken while that run held the stack. A lock nobody's lease explains (a
person's `pulumi up` on another machine) is never touched. The same Lease is what a watchdog in the cluster can
read to know that nobody judges a release any more.

The rule is pure (``gone``, ``LeaseRecord``), tested on a clock of its own; ``RunLease`` reads and writes the
Lease through the Kubernetes API (the `edit` role the deploy role has in the namespace covers leases).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from infra.kube.watchdog import ACTED

if TYPE_CHECKING:
    # The library is slow to import: the rollout command reads the rule below before it needs a cluster.
    from kubernetes import client

# How long a lease lasts unrenewed (the setting watchdogSeconds), and how often a live run renews it.
LEASE_SECONDS = 20
RENEW_EVERY_S = 5.0

# A lock taken this long before its run's lease was: clocks of two machines are not the same.
CLOCK_SLACK_S = 60.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: a process on a host, and what ran it (a CI run's address, or a person)."""

    host: str
    pid: int
    who: str = ""

    def identity(self) -> str:
        return f"{self.host}/{self.pid}/{self.who}"

    @classmethod
    def parse(cls, text: str | None) -> Holder | None:
        parts = (text or "").split("/", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "")

    @classmethod
    def this(cls, who: str) -> Holder:
        return cls(socket.gethostname(), os.getpid(), who)

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}" + (f" ({self.who})" if self.who else "")


@dataclass(frozen=True)
class LockOwner:
    """Who took a stack's lock, as the backend says: the `pulumi` process (its pid) on a host, and when."""

    user: str
    host: str
    pid: int
    taken: float  # epoch seconds


@dataclass(frozen=True)
class LeaseRecord:
    """A lease as it stood: its holder, when it was taken and last renewed (epoch seconds), for how long."""

    holder: Holder | None
    acquired: float
    renewed: float
    seconds: int
    # Its annotations: the watchdog's plan, its word that it watches, what it did (infra/kube/watchdog.py).
    annotations: dict[str, str] = field(default_factory=dict, compare=False)

    def expired(self, now: float) -> bool:
        return now > self.renewed + self.seconds

    def covers(self, owner: LockOwner) -> bool:
        """Whether ``owner``'s lock was taken while this lease was held (give or take the machines' clocks)."""
        return self.acquired - CLOCK_SLACK_S <= owner.taken <= self.renewed + self.seconds + CLOCK_SLACK_S


def alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one we may not signal runs too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_gone(lease: LeaseRecord, now: float, here: str, is_alive: Callable[[int], bool] = alive) -> str | None:
    """Why ``lease``'s holder is provably gone at ``now`` (seen from host ``here``), or None while it may live."""
    if lease.holder is None:
        return "the lease names no holder"
    if lease.holder.host == here and not is_alive(lease.holder.pid):
        return f"the run that held it ({lease.holder}) has ended"
    if lease.expired(now):
        ago = now - lease.renewed
        return f"the run that held it ({lease.holder}) stopped renewing its lease {ago:.0f}s ago"
    return None


def gone(
    owner: LockOwner,
    lease: LeaseRecord | None,
    now: float,
    here: str,
    is_alive: Callable[[int], bool] = alive,
) -> str | None:
    """Why the process that took the stack's lock (``owner``) is provably gone, or None while it may not be.

    Provably: the `pulumi` process that took it has ended on this machine; or the lock was taken while a run
    held the stack's lease (``lease``, the last one before this run's) and that run is gone. A lock taken by a
    process no lease explains, on another machine, is someone else's and may be live."""
    if owner.host == here and not is_alive(owner.pid):
        return f"the `pulumi` process that took it (pid {owner.pid} on this machine) has ended"
    if lease is None or not lease.covers(owner):
        return None
    return holder_gone(lease, now, here, is_alive)


# The engine's words for each lock (pkg/backend/diy/lock.go at v3.260.0, checkForLock):
#   <url>: created by <user>@<host> (pid <pid>) at <RFC 3339 time>
_OWNER_RE = re.compile(r"created by (\S*)@(\S+) \(pid (\d+)\) at (\S+)")


def lock_owners(text: str) -> list[LockOwner]:
    """Each lock the engine says holds the stack (a file or S3 backend), or none when it does not say."""
    found = []
    for user, host, pid, when in _OWNER_RE.findall(text):
        try:
            taken = datetime.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        found.append(LockOwner(user, host, int(pid), taken))
    return found


def lease_name(stack: str) -> str:
    """The Lease's name for ``stack``: a DNS-1123 name, stable for the stack."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-")[:50] or "stack"
    return f"rolling-run-{cleaned}"


def read_lease(api: client.ApiClient, namespace: str, stack: str) -> LeaseRecord | None:
    """``stack``'s lease as it stands (None when no run holds one), read only."""
    found = RunLease(api, namespace, stack, Holder("", 0)).read()
    return None if found is None else found[0]


class LeaseHeldError(Exception):
    """Another run holds the stack's lease and renews it: this run changed nothing."""


def _epoch(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _micro(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RunLease:
    """Hold ``stack``'s lease in ``namespace`` for the block, renewed every RENEW_EVERY_S. On entering, a lease
    another live run renews makes it wait until that lease runs out or is renewed (then LeaseHeldError); one
    whose holder is gone is taken over, and ``lost`` says who that was (the run that died)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        stack: str,
        holder: Holder,
        *,
        seconds: int = LEASE_SECONDS,
        renew_every_s: float | None = None,
        clock: Callable[[], float] = time.time,
        is_alive: Callable[[int], bool] = alive,
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api, self.namespace, self.name, self.holder = api, namespace, lease_name(stack), holder
        self.seconds, self.renew_every_s, self.clock, self.is_alive, self.wait = (
            seconds,
            renew_every_s if renew_every_s is not None else seconds / (LEASE_SECONDS / RENEW_EVERY_S),
            clock,
            is_alive,
            wait,
        )
        self.lost: LeaseRecord | None = None
        self.lost_why: str | None = None
        # When this run took the lease (epoch seconds), and what the cluster's watchdog did should it have
        # found this run lost while it still ran (its renewals not getting through): the ACTED annotation.
        self.since = 0.0
        self.overtaken: str | None = None
        self._kept = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        from kubernetes import client

        self._coordination = client.CoordinationV1Api(api)

    def read(self) -> tuple[LeaseRecord, str] | None:
        """The lease as it stands and its resourceVersion, or None when there is none."""
        from kubernetes.client.rest import ApiException

        try:
            lease = self._coordination.read_namespaced_lease(self.name, self.namespace, _request_timeout=10)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        spec = lease.spec
        record = LeaseRecord(
            Holder.parse(spec.holder_identity),
            _epoch(spec.acquire_time),
            _epoch(spec.renew_time),
            int(spec.lease_duration_seconds or self.seconds),
            dict(lease.metadata.annotations or {}),
        )
        return record, str(lease.metadata.resource_version or "")

    def __enter__(self) -> RunLease:
        watched: LeaseRecord | None = None
        while True:
            found = self.read()
            if found is None:
                if self._write(None):
                    break
                continue  # another run made it first: look again
            record, version = found
            why = holder_gone(record, self.clock(), self.holder.host, self.is_alive)
            if why is not None:
                if self._write(version):
                    self.lost, self.lost_why = record, why
                    break
                continue
            if watched is not None and record.holder == watched.holder and record.renewed > watched.renewed:
                raise LeaseHeldError(
                    f"another run holds the stack ({record.holder}) and renews its lease (Lease {self.namespace}/"
                    f"{self.name})"
                )
            watched = record
            left = record.renewed + record.seconds - self.clock()
            self.wait(max(0.5, min(2.0, left + 0.5)))
        self._thread = threading.Thread(target=self._renew, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._kept:
            return
        # An undeleted lease runs out by itself.
        with contextlib.suppress(Exception):
            self._coordination.delete_namespaced_lease(self.name, self.namespace, _request_timeout=10)

    def keep(self) -> None:
        """Renew the lease no more and leave it when the run ends, as a lost run does: the cluster's watchdog
        then acts on it, and the next run takes it over once it has run out (at once on this machine, where
        this process will have ended)."""
        self._kept = True
        self._stop.set()

    def annotate(self, key: str, value: str | None) -> None:
        """Set annotation ``key`` on the lease (None: remove it), as the watchdog's plan is written."""
        patch = {"metadata": {"annotations": {key: value}}}
        self._coordination.patch_namespaced_lease(self.name, self.namespace, patch, _request_timeout=10)

    def annotations(self) -> dict[str, str]:
        """The lease's annotations as they stand (none when it is gone)."""
        found = self.read()
        return {} if found is None else found[0].annotations

    def _write(self, version: str | None) -> bool:
        """Take the lease: make it (``version`` None) or replace the one at ``version``; False when another run
        changed it first (then look again)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        now = self.clock()
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace, resource_version=version),
            spec=client.V1LeaseSpec(
                holder_identity=self.holder.identity(),
                lease_duration_seconds=self.seconds,
                acquire_time=_micro(now),
                renew_time=_micro(now),
            ),
        )
        try:
            if version is None:
                self._coordination.create_namespaced_lease(self.namespace, body, _request_timeout=10)
            else:
                self._coordination.replace_namespaced_lease(self.name, self.namespace, body, _request_timeout=10)
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        self.since = now
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_every_s):
            patch = {"spec": {"renewTime": _micro(self.clock())}}
            try:
                lease = self._coordination.patch_namespaced_lease(self.name, self.namespace, patch, _request_timeout=10)
            except Exception:  # the next renewal tries again; an expired lease is the safe side
                continue
            acted = (getattr(lease.metadata, "annotations", None) or {}).get(ACTED)
            if acted and self.overtaken is None:
                # The watchdog found this run lost (its renewals did not get through in time) and undid the
                # release's stage: this run must not go on as if it had not.
                self.overtaken = acted
