"""Traffic through a rollout: two clients at a fixed rate, every response recorded, and the checks that judge it.

`Load` runs `vegeta attack` (bounded by rate and duration, so it stops by itself) against one URL and
records each response: when it was sent, its status, its latency, its error and the version the page
named. `PlainLoad` does the same with a client that never re-sends a request, as most HTTP/1.1
clients do not (vegeta re-sends on a reused connection that turns out closed). `problems` says what went
wrong in a recording; it is plain Python, tested on recorded samples.
"""

from __future__ import annotations

import base64
import http.client
import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from infra.rollout.prober import VERSION_HEADER


@dataclass(frozen=True)
class Response:
    """One request of the load: sent at ``t`` (seconds since the epoch)."""

    t: float
    status: int
    latency_s: float
    error: str
    version: str

    @property
    def failed(self) -> bool:
        return bool(self.error) or not 200 <= self.status < 300


def parse(lines: list[str]) -> list[Response]:
    """vegeta's JSON results, one per line, oldest first."""
    responses = []
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        body = base64.b64decode(row.get("body") or b"").decode(errors="replace").strip()
        responses.append(
            Response(
                t=datetime.fromisoformat(row["timestamp"]).timestamp(),
                status=int(row.get("code") or 0),
                latency_s=int(row.get("latency") or 0) / 1e9,
                error=str(row.get("error") or ""),
                version=body,
            )
        )
    return sorted(responses, key=lambda r: r.t)


def fetch_version(url: str, timeout_s: float = 2.0) -> str | None:
    """One GET of a version page (such as /version.txt): the version it names, or None when it fails."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return str(response.read().decode()).strip()
    except OSError:
        return None


def problems(responses: list[Response], versions: set[str], only_after: tuple[str, float] | None = None) -> list[str]:
    """What a zero-failure rollout must not show: failed requests, pages naming another version, and
    (``only_after=(version, t)``) any other version served after ``t``. Empty when all is well."""
    found = []
    if not responses:
        return ["no request was sent"]
    for r in responses:
        if r.failed:
            found.append(f"request at {r.t:.3f} failed: status {r.status}, error {r.error or '-'}")
        elif r.version not in versions:
            found.append(f"request at {r.t:.3f} was answered by version {r.version!r}, not one of {sorted(versions)}")
    if only_after is not None:
        version, after = only_after
        late = [r for r in responses if r.t > after and not r.failed and r.version != version]
        if late:
            found.append(f"{len(late)} request(s) after {after:.3f} answered by {sorted({r.version for r in late})}")
    return found


def summary(responses: list[Response]) -> dict[str, object]:
    """Counts and latency percentiles, for reports."""
    latencies = sorted(r.latency_s for r in responses if not r.failed)

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else 0.0

    by_version: dict[str, int] = {}
    for r in responses:
        if not r.failed:
            by_version[r.version] = by_version.get(r.version, 0) + 1
    return {
        "requests": len(responses),
        "failed": sum(r.failed for r in responses),
        "by_version": by_version,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


class Load:
    """``vegeta attack`` at ``rate`` requests a second for at most ``duration_s``, in the background.

    ``keepalive`` False opens a new connection for every request. Leaving the block stops the attack
    (vegeta flushes what it sent); it also stops by itself when the duration runs out.
    """

    def __init__(
        self,
        url: str,
        rate: int,
        duration_s: float,
        out: Path,
        *,
        keepalive: bool,
        timeout_s: float = 5.0,
        vegeta: str = "vegeta",
    ) -> None:
        self.url, self.rate, self.duration_s, self.out = url, rate, duration_s, out
        self.keepalive, self.timeout_s, self.vegeta = keepalive, timeout_s, vegeta
        self._attack: subprocess.Popen[bytes] | None = None
        self._encode: subprocess.Popen[bytes] | None = None
        self.responses: list[Response] = []

    def __enter__(self) -> Load:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._attack = subprocess.Popen(
            [
                self.vegeta, "attack", f"-rate={self.rate}/s", f"-duration={self.duration_s}s",
                f"-timeout={self.timeout_s}s", f"-keepalive={str(self.keepalive).lower()}",
                # Enough workers that a slow response never lowers the rate.
                "-workers=20", "-max-workers=200",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert self._attack.stdin is not None
        self._attack.stdin.write(f"GET {self.url}\n".encode())
        self._attack.stdin.close()
        with self.out.open("wb") as sink:
            self._encode = subprocess.Popen(
                [self.vegeta, "encode", "--to", "json"], stdin=self._attack.stdout, stdout=sink
            )
        assert self._attack.stdout is not None
        self._attack.stdout.close()  # encode's copy alone: it sees the end when the attack stops
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        assert self._attack is not None and self._encode is not None
        if self._attack.poll() is None:
            self._attack.send_signal(signal.SIGINT)
        try:
            self._attack.wait(timeout=self.timeout_s + 10)
        finally:
            if self._attack.poll() is None:
                self._attack.kill()
            self._encode.wait(timeout=30)
        self.responses = parse(self.out.read_text().splitlines())


class PlainLoad:
    """A client that does not retry, at ``rate`` requests a second for at most ``duration_s``, in threads.

    What many HTTP/1.1 clients do (Python's http.client, Node's http.Agent, many SDKs): ``keepalive``
    True sends over ``connections`` persistent connections, each reused until the server closes it
    (`Connection: close`) or a request on it fails; False opens a new connection for every request. A
    request that fails is recorded as failed and never sent again, unlike vegeta's client, which re-sends
    an idempotent request when a reused connection turns out closed and so hides exactly the failure
    such clients meet. Leaving the block stops it; so does the duration running out.
    """

    def __init__(
        self,
        url: str,
        rate: int,
        duration_s: float,
        out: Path,
        *,
        keepalive: bool,
        timeout_s: float = 5.0,
        connections: int = 5,
    ) -> None:
        self.url, self.rate, self.duration_s, self.out = url, rate, duration_s, out
        self.keepalive, self.timeout_s, self.connections = keepalive, timeout_s, connections
        self.responses: list[Response] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> PlainLoad:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        start = time.time()
        for worker in range(self.connections):
            thread = threading.Thread(target=self._work, args=(worker, start), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 5)
        self.responses.sort(key=lambda r: r.t)
        with self.out.open("w") as sink:
            sink.writelines(json.dumps(r.__dict__) + "\n" for r in self.responses)

    def wait(self, within_s: float) -> bool:
        """Wait at most ``within_s`` for the load to end by itself (its duration run out); whether it has."""
        end = time.monotonic() + within_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, end - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _work(self, worker: int, start: float) -> None:
        parts = urlsplit(self.url)
        host, port, path = parts.hostname or "", parts.port or 80, parts.path or "/"
        interval = self.connections / self.rate
        # The workers take turns: together they send at ``rate``, evenly spread.
        due = start + worker * interval / self.connections
        end = start + self.duration_s
        connection: http.client.HTTPConnection | None = None
        while not self._stop.is_set() and due < end:
            self._stop.wait(max(0.0, due - time.time()))
            if self._stop.is_set():
                break
            due += interval
            if connection is None or not self.keepalive:
                connection = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
            sent = time.time()
            try:
                connection.request("GET", path)
                answer = connection.getresponse()
                body = answer.read().decode(errors="replace").strip()
                # The version that answered: the app names it on every response, errors too (the page
                # alone names it only when it is served).
                version = answer.getheader(VERSION_HEADER) or body
                result = Response(sent, answer.status, time.time() - sent, "", version)
            except (OSError, http.client.HTTPException) as failed:
                # Not sent again: the caller sees the failure, and the next request opens a new connection.
                result = Response(sent, 0, time.time() - sent, f"{failed.__class__.__name__}: {failed}", "")
                connection.close()
                connection = None
            if connection is not None and not self.keepalive:
                connection.close()
            with self._lock:
                self.responses.append(result)
        if connection is not None:
            connection.close()
