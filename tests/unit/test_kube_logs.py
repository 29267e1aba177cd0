"""Users' own requests from the app's pods' logs (infra/kube/logs.py): the lines the app writes, and the pods
followed through the Kubernetes API as the client really sends it, against a server on loopback."""

from __future__ import annotations

import datetime
import http.server
import json
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from infra.kube.logs import PodLogs, Request, lines, parse
from infra.rollout.analysis import Sample, State, Thresholds
from infra.rollout.evidence import Probe, Warmup, user_samples
from tests.unit import loopback

ROOT = Path(__file__).resolve().parents[2]


def line(
    ended: float, status: int = 200, seconds: float = 0.002, version: str = "1.16.1", agent: str = "curl/8"
) -> str:
    return json.dumps({"t": ended, "status": status, "seconds": seconds, "version": version, "agent": agent})


def test_the_apps_log_format_is_the_one_read() -> None:
    # The line app/nginx.conf's `rolling` format writes, its variables filled in as nginx would.
    conf = (ROOT / "app" / "nginx.conf").read_text()
    (template,) = re.findall(r"log_format rolling escape=json '(.*)';", conf)
    assert re.search(r"access_log /dev/stdout rolling;", conf)
    filled = (
        template.replace("$msec", "1733400000.125")
        .replace("$status", "500")
        .replace("$request_time", "0.250")
        .replace("@VERSION@", "1.16.1")
        .replace("$http_user_agent", "Mozilla/5.0")
    )
    assert parse(filled) == Request(1733399999.875, 500, 0.25, "1.16.1", "Mozilla/5.0")


def test_other_lines_are_not_requests() -> None:
    for other in ("2026/12/05 10:00:00 [warn] 1#1: an error log line", "", '{"t": 1}', "[1, 2]", '{"t": "x"'):
        assert parse(other) is None


def test_lines_are_whole_lines_however_the_stream_cuts_them() -> None:
    chunks = [b'{"a":', b'1}\n{"b"', b":2}\n\n", b"partial"]
    assert list(lines(iter(chunks))) == [b'{"a":1}', b'{"b":2}', b""]


def test_users_are_told_from_the_prober_and_the_kubelet_on_the_monotonic_clock() -> None:
    now = time.time()
    requests = [
        Request(now - 1.0, 500, 0.01, "1.16.1", "Mozilla/5.0"),
        Request(now - 1.0, 200, 0.01, "1.16.1", "rolling-analysis"),
        Request(now - 1.0, 200, 0.01, "1.16.1", "kube-probe/1.35"),
        Request(now - 100.0, 500, 0.01, "1.16.1", "Mozilla/5.0"),  # before the judgement began
    ]
    user, probe = user_samples(requests, since=time.monotonic() - 10)
    assert (user.status, user.version, user.latency_s, user.server, user.counted) == (500, "1.16.1", 0.01, True, True)
    assert abs(user.t - (time.monotonic() - 1.0)) < 0.5
    # The prober's own request is there for the server's time alone: the prober counted it already.
    assert (probe.status, probe.server, probe.counted) == (200, True, False)


# p1's Ready condition: ready since then.
READY = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-07T10:00:00Z"}


class Api(http.server.BaseHTTPRequestHandler):
    """The API server as the client meets it: the app's pods (p1 running, p2 pending), and p1's log, followed:
    a line at once, another a moment later, the stream kept open (chunked, as the kubelet's is)."""

    protocol_version = "HTTP/1.1"
    asked: list[str] = []  # noqa: RUF012 (one test's record)

    def do_GET(self) -> None:
        self.asked.append(self.path)
        if self.path.startswith("/api/v1/namespaces/rolling/pods?"):
            running = {
                "containerStatuses": [
                    {
                        "name": "nginx",
                        "ready": True,
                        "restartCount": 0,
                        "image": "x",
                        "imageID": "",
                        "state": {"running": {}},
                    }
                ]
            }
            pods = {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {},
                "items": [
                    {"metadata": {"name": "p1"}, "status": {**running, "conditions": [READY]}},
                    {"metadata": {"name": "p2"}, "status": {"phase": "Pending"}},
                ],
            }
            loopback.send_json(self, pods)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        started = time.time()
        for text in (line(started, 500, agent="Mozilla/5.0"), "an error log line", line(started + 0.1, 200)):
            data = (text + "\n").encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            time.sleep(0.1)
        threading.Event().wait(2)  # kept open, as a follow is, until the client closes it

    def log_message(self, *args: Any) -> None:
        pass


def test_the_running_pods_logs_are_followed_from_when_the_judgement_began() -> None:
    Api.asked = []
    with loopback.serving(Api) as url:
        api = client.ApiClient(client.Configuration(host=url))
        logs = PodLogs(api, "rolling", list_every_s=0.1)
        with logs:
            deadline = time.monotonic() + 5
            while len(logs.requests()) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            found = logs.requests()
            ending = time.monotonic()
        assert time.monotonic() - ending < 1, "the follows end with the block, though their streams stay open"
        # Entered again (the rollout after its canary): its pods are followed again.
        with logs:
            deadline = time.monotonic() + 5
            while len([p for p in Api.asked if "/log?" in p]) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
    assert [(r.status, r.agent, r.pod) for r in found] == [(500, "Mozilla/5.0", "p1"), (200, "curl/8", "p1")]
    assert logs.problem is None
    # Since when each pod is ready, for a warm-up (p2 pending: never ready).
    assert logs.ready_since() == {"p1": datetime.datetime(2026, 12, 7, 10, tzinfo=datetime.UTC).timestamp()}
    follows = [p for p in Api.asked if "/log?" in p]
    assert len(follows) == 2 and follows[0].startswith("/api/v1/namespaces/rolling/pods/p1/log?"), Api.asked
    assert "follow=true" in follows[0] and "container=nginx" in follows[0] and "sinceSeconds=" in follows[0]
    # Every pod of the app, a weighted canary's too (its pods carry an app label of their own).
    listed = [parse_qs(urlsplit(p).query)["labelSelector"] for p in Api.asked if "/log?" not in p]
    assert listed and all(selector == ["app in (nginx,nginx-canary)"] for selector in listed)


class Users:
    """Users' requests as a pod log reader would give them: ``errors`` 500s of 1.16.1 since now; ``unread``,
    what it says of logs it could not read."""

    def __init__(
        self,
        errors: int,
        problem: str | None = None,
        unread: tuple[str, ...] = (),
        *,
        pod: str = "p1",
        ready: dict[str, float] | None = None,
    ) -> None:
        now = time.time()
        self.found = [Request(now + i * 0.01, 500, 0.003, "1.16.1", "Mozilla/5.0", pod) for i in range(errors)]
        self.problem, self._unread, self.ready = problem, unread, ready or {}
        self.entered = False

    def ready_since(self) -> dict[str, float]:
        return dict(self.ready)

    def __enter__(self) -> Users:
        self.entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.entered = False

    def requests(self, since: float = 0.0) -> list[Request]:
        return self.found

    def requests_from(self, index: int) -> list[Request]:
        return self.found[index:]

    def unread(self, longer_than_s: float) -> list[str]:
        return list(self._unread)


class Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("X-App-Version", "1.16.1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_probe_judges_users_requests_beside_its_own() -> None:
    # The probe's own requests all pass; users met errors: the verdict is the users'.
    said: list[str] = []
    users = Users(errors=12)
    with loopback.serving(Healthy) as url:
        probe = Probe(f"{url}/", 20, most_s=5, users=users, say=said.append)  # type: ignore[arg-type]
        with probe:
            assert users.entered
            time.sleep(0.3)
            judgement = probe.judgement("1.16.1", Thresholds(0.02, 1000, 50), final=False)
    assert not users.entered
    assert judgement.state is State.BREACH, judgement
    assert judgement.errors >= 10 and said == []  # all but those a judging tick had not reached
    # Logs that cannot be read are said once; once a running pod's log has gone unread past the bound, the
    # evidence is missing and the release stops, undecided, whatever the probe's own requests say.
    gap = "the log of pod p1 was not read for 11s (403 Forbidden)"
    with (
        loopback.serving(Healthy) as url,
        Probe(f"{url}/", 20, most_s=5, users=Users(0, "403 Forbidden", (gap,)), say=said.append) as probe,
    ):
        time.sleep(0.2)
        probe.samples()
        judgement = probe.judgement("1.16.1", Thresholds(0.02, 1000, 1), final=False)
    assert said == [
        "analysis: users' requests cannot be read from the pods' logs (403 Forbidden); following again, and "
        "stopping the release should it last 10s"
    ]
    assert judgement.state is State.UNDECIDED and gap in judgement.reason and judgement.gaps == (gap,)


def send_pods(handler: http.server.BaseHTTPRequestHandler) -> None:
    """The app's one pod, p1, running."""
    running = {
        "containerStatuses": [
            {"name": "nginx", "ready": True, "restartCount": 0, "image": "x", "imageID": "", "state": {"running": {}}}
        ]
    }
    items = [{"metadata": {"name": "p1"}, "status": running}]
    loopback.send_json(handler, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})


class Refused(http.server.BaseHTTPRequestHandler):
    """An API server that lists the pods but refuses their logs (no `pods/log` in the role)."""

    protocol_version = "HTTP/1.1"
    follows = 0

    def do_GET(self) -> None:
        if "/log?" not in self.path:
            send_pods(self)
            return
        type(self).follows += 1
        body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_log_that_is_refused_is_asked_for_again_and_told_unread_past_the_bound() -> None:
    Refused.follows = 0
    with loopback.serving(Refused) as url:
        logs = PodLogs(client.ApiClient(client.Configuration(host=url)), "rolling", list_every_s=0.1, retry_s=0.05)
        with logs:
            deadline = time.monotonic() + 5
            while not logs.unread(0.3) and time.monotonic() < deadline:
                time.sleep(0.05)
            unread = logs.unread(0.3)
            assert logs.unread(60) == [], "not past a bound it has not reached"
    assert len(unread) == 1 and unread[0].startswith("the log of pod p1 was not read for "), unread
    assert unread[0].endswith("(403 Forbidden)")
    assert Refused.follows >= 3, "asked for again while it stays refused"
    assert logs.problem == "the log of pod p1 could not be read: 403 Forbidden"


class Restarting(http.server.BaseHTTPRequestHandler):
    """An API server whose pod's log stream ends after two lines (its container restarted), then, followed
    again, gives the same two (the same seconds asked for again) and a third."""

    protocol_version = "HTTP/1.1"
    follows = 0
    started = 0.0

    def do_GET(self) -> None:
        if "/log?" not in self.path:
            send_pods(self)
            return
        type(self).follows += 1
        t0 = type(self).started
        texts = [line(t0 + 0.1, 500), line(t0 + 0.2)] + ([line(t0 + 0.3, 503)] if self.follows > 1 else [])
        body = "".join(text + "\n" for text in texts).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_stream_that_ends_is_followed_again_and_no_line_is_read_twice() -> None:
    Restarting.follows, Restarting.started = 0, time.time()
    with loopback.serving(Restarting) as url:
        logs = PodLogs(client.ApiClient(client.Configuration(host=url)), "rolling", list_every_s=0.1, retry_s=0.05)
        with logs:
            deadline = time.monotonic() + 5
            while Restarting.follows < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            found = logs.requests()
    assert [r.status for r in found] == [500, 200, 503]


def test_a_warm_up_leaves_out_a_new_pods_answers_until_it_has_been_ready_that_long() -> None:
    now = time.time()
    warmup = Warmup(30, {"old": now - 100, "new": now - 10})
    assert warmup.counts_pod("old", now) and not warmup.counts_pod("new", now) and warmup.counts_pod("new", now + 21)
    assert not warmup.counts_pod("unseen", now)  # never seen ready: its warm-up cannot be told
    # Answers that name no pod count only while no pod warms up.
    assert not warmup.counts_any(now) and warmup.counts_any(now + 21) and warmup.counts_any(now - 11)
    assert Warmup(0, {}).counts_pod("unseen", now) and Warmup(0, {"new": now}).counts_any(now)
    requests = [
        Request(now - 1, 500, 0.003, "1.16.1", "Mozilla/5.0", "new"),
        Request(now - 1, 200, 0.003, "1.16.1", "Mozilla/5.0", "old"),
    ]
    (sample,) = user_samples(requests, since=time.monotonic() - 10, warmup=warmup)
    assert sample.status == 200
    assert len(user_samples(requests, since=time.monotonic() - 10)) == 2


@pytest.mark.parametrize(("warmup_s", "state"), [(30, State.PENDING), (0, State.BREACH)])
def test_the_probe_judges_a_warming_pod_only_once_its_warm_up_ended(warmup_s: float, state: State) -> None:
    # A pod ready 5 s ago fails its users while it warms up; the prober's answers meanwhile cannot be told
    # from it. With a 30-s warm-up none of it is judged yet; without one it is a breach.
    users = Users(errors=12, pod="new", ready={"new": time.time() - 5, "old": time.time() - 500})
    with loopback.serving(Healthy) as url:
        probe = Probe(f"{url}/", 20, most_s=5, users=users, warmup_s=warmup_s)  # type: ignore[arg-type]
        with probe:
            time.sleep(0.3)
            judgement = probe.judgement("1.16.1", Thresholds(0.02, 1000, 50), final=False)
    assert judgement.state is state, judgement
    if warmup_s:
        assert judgement.requests == 0, judgement


def test_the_probers_answers_wait_to_be_told_from_a_warming_pod() -> None:
    # Sent 5 s ago while a pod warmed up: left out; 40 s ago, before it was ready: counted; just now: held
    # until the pods' list can tell, then judged.
    now, mono = time.time(), time.monotonic()
    probe = Probe("http://127.0.0.1:9/", 1, most_s=1, warmup_s=30)
    warmup = Warmup(30, {"new": now - 10})
    sent = [
        Sample(mono - 5, 200, 0.01, "1.16.1"),
        Sample(mono - 40, 200, 0.01, "1.16.1"),
        Sample(mono, 200, 0.01, "1.16.1"),
    ]
    assert probe._warmed(sent, warmup) == [sent[1]]
    assert probe._held == [sent[2]]


def test_once_the_new_version_serves_alone_the_probes_tally_knows_from_when() -> None:
    probe = Probe("http://127.0.0.1:9/", 1, most_s=1)
    probe.judgement("1.16.1", Thresholds(0.02, 1000, 50), final=False)
    assert probe._tally is not None and probe._tally.alone_from is None
    before = time.monotonic()
    probe.alone()
    probe.judgement("1.16.1", Thresholds(0.02, 1000, 50), final=False)
    assert probe._tally.alone_from is not None and probe._tally.alone_from >= before
