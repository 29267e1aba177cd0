"""A run's lease on its stack (infra/kube/lease.py): when the holder of a stack's lock is provably gone, on a
clock of the tests' own; the lock's owners as the engine says them; the Lease itself against an API server on
loopback."""

from __future__ import annotations

import datetime
import http.server
import json
import threading
import time
from typing import Any, ClassVar

import pytest
from kubernetes import client

from infra.kube import watchdog
from infra.kube.lease import Holder, LeaseHeldError, LeaseRecord, LockOwner, RunLease, gone, lease_name, lock_owners
from tests.unit import loopback

T0 = 1_765_000_000.0
HERE = "runner-7"


def record(holder: Holder | None, acquired: float = T0, renewed: float = T0 + 30, seconds: int = 20) -> LeaseRecord:
    return LeaseRecord(holder, acquired, renewed, seconds)


def nobody_alive(pid: int) -> bool:
    return False


def everyone_alive(pid: int) -> bool:
    return True


ELSEWHERE = Holder("runner-3", 4242, "https://github.com/o/r/actions/runs/9")
LOCK = LockOwner("runner", "runner-3", 4300, T0 + 10)  # the `pulumi` the lost run started, on its machine


def test_a_lock_taken_while_a_run_held_the_lease_is_gone_once_that_lease_runs_out() -> None:
    lease = record(ELSEWHERE)
    assert gone(LOCK, lease, T0 + 45, HERE, everyone_alive) is None, "renewed 15 s ago: it may live"
    assert gone(LOCK, lease, T0 + 50, HERE, everyone_alive) is None, "at its very end: still its own"
    why = gone(LOCK, lease, T0 + 50.5, HERE, everyone_alive)
    assert why == f"the run that held it ({ELSEWHERE}) stopped renewing its lease 20s ago"


def test_a_lock_no_lease_explains_is_never_taken_however_old() -> None:
    # A person's `pulumi up` on another machine, no lease at all, or a lock taken long after the lease ran out.
    assert gone(LOCK, None, T0 + 10_000, HERE, nobody_alive) is None
    later = LockOwner("ana", "laptop", 99, T0 + 3600)
    assert gone(later, record(ELSEWHERE), T0 + 10_000, HERE, nobody_alive) is None
    earlier = LockOwner("ana", "laptop", 99, T0 - 3600)
    assert gone(earlier, record(ELSEWHERE), T0 + 10_000, HERE, nobody_alive) is None


def test_on_this_machine_an_ended_process_is_gone_at_once() -> None:
    mine = LockOwner("root", HERE, 4300, T0 + 10)
    assert gone(mine, None, T0 + 11, HERE, nobody_alive) == (
        "the `pulumi` process that took it (pid 4300 on this machine) has ended"
    )
    assert gone(mine, None, T0 + 11, HERE, everyone_alive) is None
    # The lost run on this machine: its process ended, its lease not yet run out.
    run_here = Holder(HERE, 4000, "ana")
    lock = LockOwner("root", "runner-3", 4300, T0 + 10)
    assert gone(lock, record(run_here), T0 + 31, HERE, lambda pid: pid != 4000) == (
        f"the run that held it ({run_here}) has ended"
    )
    assert gone(lock, record(run_here), T0 + 31, HERE, everyone_alive) is None


def test_the_engines_words_for_each_lock_are_read_once() -> None:
    text = (
        "error: the stack is currently locked by 2 lock(s). Either wait for the other process(es) to end or delete "
        "the lock file with `pulumi cancel`.\n"
        "  file:///s/.pulumi/locks/organization/rolling/dev/a.json: created by runner@runner-3 (pid 4300) at "
        "2026-12-07T08:00:00Z\n"
        "  s3://b/.pulumi/locks/organization/rolling/dev/b.json: created by @host-b (pid 12) at "
        "2026-12-07T09:30:15+01:00\n"
    )
    first, second = lock_owners(text)
    assert first == LockOwner(
        "runner", "runner-3", 4300, datetime.datetime(2026, 12, 7, 8, tzinfo=datetime.UTC).timestamp()
    )
    assert (second.user, second.host, second.pid) == ("", "host-b", 12)
    assert second.taken == datetime.datetime(2026, 12, 7, 8, 30, 15, tzinfo=datetime.UTC).timestamp()
    assert lock_owners("error: [409] Conflict: Another update is currently in progress.") == []


def test_a_holder_and_a_lease_name_are_what_the_cluster_takes() -> None:
    holder = Holder("runner-3", 4242, "https://github.com/o/r/actions/runs/9")
    assert Holder.parse(holder.identity()) == holder
    assert Holder.parse("not a holder") is None and Holder.parse(None) is None
    assert lease_name("Org/Dev_stack.1") == "rolling-run-org-dev-stack-1"


class Leases(http.server.BaseHTTPRequestHandler):
    """The API server's Lease resource, one object: get, create (409 when it exists), replace (409 when its
    resourceVersion is not the current one), patch and delete, as the client sends them."""

    protocol_version = "HTTP/1.1"
    stored: ClassVar[dict[str, Any] | None] = None
    version: ClassVar[int] = 0
    calls: ClassVar[list[str]] = []
    lock = threading.Lock()

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _missing(self) -> None:
        self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def _conflict(self) -> None:
        self._send(409, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409})

    def _body(self) -> dict[str, Any]:
        return dict(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    def _store(self, body: dict[str, Any]) -> None:
        cls = type(self)
        cls.version += 1
        body.setdefault("metadata", {})["resourceVersion"] = str(cls.version)
        cls.stored = body
        self._send(200, body)

    def do_GET(self) -> None:
        with self.lock:
            self.calls.append("get")
            self._send(200, self.stored) if self.stored else self._missing()

    def do_POST(self) -> None:
        with self.lock:
            self.calls.append("create")
            body = self._body()
            self._conflict() if self.stored else self._store(body)

    def do_PUT(self) -> None:
        with self.lock:
            self.calls.append("replace")
            body = self._body()
            current = (self.stored or {}).get("metadata", {}).get("resourceVersion")
            if body.get("metadata", {}).get("resourceVersion") != current:
                self._conflict()
            else:
                self._store(body)

    def do_PATCH(self) -> None:
        with self.lock:
            self.calls.append("patch")
            patch = self._body()
            if self.stored is None:
                self._missing()
                return
            self.stored["spec"].update(patch.get("spec", {}))
            notes = self.stored["metadata"].setdefault("annotations", {})
            for key, value in patch.get("metadata", {}).get("annotations", {}).items():
                if value is None:
                    notes.pop(key, None)  # a merge patch's null removes the key
                else:
                    notes[key] = value
            self._store(self.stored)

    def do_DELETE(self) -> None:
        with self.lock:
            self.calls.append("delete")
            type(self).stored = None
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def log_message(self, *args: Any) -> None:
        pass


def stored_lease(holder: Holder, renewed: float) -> dict[str, Any]:
    when = datetime.datetime.fromtimestamp(renewed, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": lease_name("dev"), "namespace": "rolling", "resourceVersion": "1"},
        "spec": {
            "holderIdentity": holder.identity(),
            "leaseDurationSeconds": 20,
            "acquireTime": when,
            "renewTime": when,
        },
    }


@pytest.fixture
def api() -> Any:
    Leases.stored, Leases.version, Leases.calls = None, 1, []
    with loopback.serving(Leases) as url:
        yield client.ApiClient(client.Configuration(host=url))


def test_a_run_takes_a_free_lease_renews_it_and_gives_it_back(api: client.ApiClient) -> None:
    me = Holder(HERE, 100, "ana")
    with RunLease(api, "rolling", "dev", me, renew_every_s=0.05) as held:
        assert held.lost is None
        assert Leases.stored is not None and Leases.stored["spec"]["holderIdentity"] == me.identity()
        time.sleep(0.3)
    assert Leases.calls.count("patch") >= 2, Leases.calls
    assert Leases.stored is None, "given back at the end"


def test_a_lease_whose_holder_is_gone_is_taken_over_and_says_who_was_lost(api: client.ApiClient) -> None:
    Leases.stored = stored_lease(ELSEWHERE, time.time() - 60)
    with RunLease(api, "rolling", "dev", Holder(HERE, 100)) as held:
        assert held.lost is not None and held.lost.holder == ELSEWHERE
        assert held.lost_why is not None and "stopped renewing its lease" in held.lost_why


def test_a_lease_another_run_renews_stops_this_run_and_changes_nothing(api: client.ApiClient) -> None:
    Leases.stored = stored_lease(ELSEWHERE, time.time())

    def renewed_meanwhile(seconds: float) -> None:
        assert Leases.stored is not None
        later = stored_lease(ELSEWHERE, time.time() + 5)
        Leases.stored["spec"] = later["spec"]

    with pytest.raises(LeaseHeldError, match=r"another run holds the stack \(pid 4242 on runner-3"):
        RunLease(api, "rolling", "dev", Holder(HERE, 100), wait=renewed_meanwhile).__enter__()
    assert Leases.stored is not None and Leases.stored["spec"]["holderIdentity"] == ELSEWHERE.identity()


def test_a_lease_that_runs_out_while_this_run_waits_is_taken_over(api: client.ApiClient) -> None:
    Leases.stored = stored_lease(ELSEWHERE, time.time())
    now = [time.time()]

    def later(seconds: float) -> None:
        now[0] += seconds

    with RunLease(api, "rolling", "dev", Holder(HERE, 100), clock=lambda: now[0], wait=later) as held:
        assert held.lost is not None and held.lost.holder == ELSEWHERE
    assert now[0] - time.time() <= 22, "waited no longer than the lease's 20 s, give or take a look"


def test_the_watchdogs_plan_is_written_on_the_lease_read_back_and_cleared(api: client.ApiClient) -> None:
    with RunLease(api, "rolling", "dev", Holder(HERE, 100), renew_every_s=60) as held:
        held.annotate(watchdog.PLAN, watchdog.pods_canary("app:2").text())
        assert watchdog.Plan.parse(held.annotations()[watchdog.PLAN]) == watchdog.pods_canary("app:2")
        found = held.read()
        assert found is not None and watchdog.PLAN in found[0].annotations
        held.annotate(watchdog.PLAN, None)
        assert watchdog.PLAN not in held.annotations()


def test_a_run_whose_lease_the_watchdog_marked_knows_it_was_found_lost(api: client.ApiClient) -> None:
    # The watchdog saw no renewal for the lease's duration (this run's did not get through) and acted: the
    # run's next renewal that does get through reads its mark.
    with RunLease(api, "rolling", "dev", Holder(HERE, 100), renew_every_s=0.05) as held:
        assert held.overtaken is None
        assert Leases.stored is not None
        Leases.stored["metadata"]["annotations"] = {watchdog.ACTED: '{"at": "2026-12-07T10:00:00Z"}'}
        deadline = time.monotonic() + 5
        while held.overtaken is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert held.overtaken is not None and "2026-12-07T10:00:00Z" in held.overtaken


def test_a_lease_is_renewed_every_quarter_of_its_duration(api: client.ApiClient) -> None:
    assert RunLease(api, "rolling", "dev", Holder(HERE, 1), seconds=12).renew_every_s == 3.0
    assert RunLease(api, "rolling", "dev", Holder(HERE, 1)).seconds == 20
