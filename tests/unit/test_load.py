"""The load checker, on responses vegeta really recorded: it passes clean traffic and names every failure."""

from __future__ import annotations

import dataclasses
import http.server
from pathlib import Path

from rigs import load
from tests.unit.loopback import serving

SAMPLES = Path(__file__).parent / "samples"


def recorded(name: str) -> list[load.Response]:
    return load.parse((SAMPLES / f"vegeta-{name}.jsonl").read_text().splitlines())


def test_clean_traffic_passes() -> None:
    responses = recorded("ok")
    assert len(responses) == 5
    assert {r.version for r in responses} == {"1.14.2"}
    assert load.problems(responses, {"1.14.2", "1.16.1"}) == []
    assert load.summary(responses)["failed"] == 0


def test_refused_connections_are_failures() -> None:
    found = load.problems(recorded("ok") + recorded("refused"), {"1.14.2"})
    assert len(found) == 3
    assert all("connection refused" in line for line in found)


def test_non_2xx_is_a_failure() -> None:
    found = load.problems(recorded("404"), {"1.14.2"})
    assert len(found) == 2 and all("status 404" in line for line in found)


def test_a_version_nobody_deployed_is_a_failure() -> None:
    found = load.problems(recorded("ok"), {"1.16.1"})
    assert len(found) == 5 and "answered by version '1.14.2'" in found[0]


def test_the_old_version_after_the_rollout_completed_is_a_failure() -> None:
    responses = recorded("ok")
    cut = responses[2].t
    newer = [r if r.t <= cut else dataclasses.replace(r, version="1.16.1") for r in responses]
    assert load.problems(newer, {"1.14.2", "1.16.1"}, only_after=("1.16.1", cut)) == []
    (late,) = load.problems(responses, {"1.14.2", "1.16.1"}, only_after=("1.16.1", cut))
    assert "2 request(s) after" in late and "'1.14.2'" in late


def test_no_traffic_at_all_is_a_failure() -> None:
    assert load.problems([], {"1.14.2"}) == ["no request was sent"]


def test_a_rollout_without_a_drain_is_caught() -> None:
    """Recorded on the real node: a 3/1/0 rollout with drainSeconds 0, at 60 new connections a second."""
    responses = recorded("rollout-without-drain")
    found = load.problems(responses, {"1.14.2", "1.16.1"})
    failed = sum(r.failed for r in responses)
    assert failed and len(found) == failed
    assert all("connection refused" in line for line in found)
    assert load.summary(responses)["failed"] == failed


class _Server(http.server.BaseHTTPRequestHandler):
    """Answers "1.0" over HTTP/1.1 keep-alive; every third request on a connection ends it: with
    `Connection: close` on the answer (clean), or, when ``abrupt``, by closing it without an answer (what a
    server that stops with idle keep-alive connections open does to the request sent at that moment)."""

    protocol_version = "HTTP/1.1"
    abrupt = False

    def do_GET(self) -> None:
        self.served = getattr(self, "served", 0) + 1
        if self.served % 3 == 0 and self.abrupt:
            self.close_connection = True
            return
        body = b"1.0\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if self.served % 3 == 0:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _plain_load(tmp_path: Path, abrupt: bool, keepalive: bool) -> list[load.Response]:
    handler = type("Handler", (_Server,), {"abrupt": abrupt})
    out = tmp_path / "plain.jsonl"
    # 60 requests in 0.4 s, then the load stops by itself.
    with serving(handler) as url, load.PlainLoad(url, 150, 0.4, out, keepalive=keepalive, connections=3) as sent:
        assert sent.wait(5), "the load did not stop by itself at its duration"
    return sent.responses


def test_the_plain_client_ends_connections_the_clean_way(tmp_path: Path) -> None:
    clean = _plain_load(tmp_path, abrupt=False, keepalive=True)
    assert 50 <= len(clean) <= 61 and load.problems(clean, {"1.0"}) == []


def test_the_plain_client_never_resends_a_request_its_connection_lost(tmp_path: Path) -> None:
    # A connection closed without an answer fails the request sent on it, which is not sent again.
    abrupt = _plain_load(tmp_path, abrupt=True, keepalive=True)
    failed = [r for r in abrupt if r.failed]
    assert len(failed) >= 10 and all(r.status == 0 and "RemoteDisconnected" in r.error for r in failed), failed[:3]
    assert 50 <= len(abrupt) <= 61, "a failed request is recorded once, never re-sent"


def test_a_new_connection_for_each_request_never_meets_a_closed_one(tmp_path: Path) -> None:
    assert load.problems(_plain_load(tmp_path, abrupt=True, keepalive=False), {"1.0"}) == []
