"""The analysis's source of evidence: requests to the stack's url at a modest, fixed rate, as users send them.

Each request opens a new connection, so the Service (or the load balancer) spreads them over the pods
as it spreads users' new connections, and none is ever sent again: a request that fails is recorded as
failed, as a client that does not retry meets it. The version that answered is the app's
`X-App-Version` header. Bounded: it stops when its block ends, or after ``most_s`` seconds by itself.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import math
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit

from infra.rollout.analysis import Sample

VERSION_HEADER = "X-App-Version"
# A request unanswered after this long counts as no response (an error to users, too).
TIMEOUT_S = 5.0
# Workers enough to keep the rate while each waits up to TIMEOUT_S, and no more than this.
MOST_WORKERS = 64


def leaves_by(url: str, ip: Callable[..., str | None] | None = None) -> str | None:
    """How requests to ``url`` would leave this machine (its default route's gateway or interface), or None
    when they stay on it: loopback, or a link of its own such as a local cluster's node. ``ip`` runs
    `ip -j ARGS` and returns its output (None where `ip` is absent: then nothing can be told)."""
    host = urlsplit(url).hostname or ""
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        try:
            address = str(socket.getaddrinfo(host, None)[0][4][0])
        except OSError:
            return None  # the prober will say it cannot resolve the name
    run = ip or _ip
    route, default = run("route", "get", address), run("route", "show", "default")
    if not route or not default:
        return None
    found, defaults = json.loads(route), json.loads(default)
    if not found or not defaults:
        return None
    out = found[0].get("dev")
    for way in defaults:
        if way.get("dev") == out:
            return str(way.get("gateway") or out)
    return None


def _ip(*args: str) -> str | None:
    if shutil.which("ip") is None:
        return None
    done = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else None


# What the prober's requests say they are: the pods' logs name it, and the analysis tells them from users'.
USER_AGENT = "rolling-analysis"


class Prober:
    """GET ``url`` ``rate`` times a second, from when the block starts until it ends (at most ``most_s``)."""

    def __init__(
        self,
        url: str,
        rate: float,
        *,
        most_s: float,
        timeout_s: float = TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"cannot probe {url!r}: an http:// or https:// URL is needed")
        self.url, self.rate, self.most_s, self.timeout_s, self.clock = url, rate, most_s, timeout_s, clock
        self._secure = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Prober:
        start = self.clock()
        workers = max(1, min(MOST_WORKERS, math.ceil(self.rate * self.timeout_s)))
        for worker in range(workers):
            thread = threading.Thread(target=self._work, args=(worker, workers, start), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 1)

    def samples(self, since: float | None = None) -> list[Sample]:
        """The responses recorded so far (sent at or after ``since``), oldest first."""
        with self._lock:
            found = [s for s in self._samples if since is None or s.t >= since]
        return sorted(found, key=lambda s: s.t)

    def recorded_from(self, index: int) -> list[Sample]:
        """The responses recorded after the first ``index`` of them, in the order they were recorded: a reader
        that keeps its place reads each once, however many there are."""
        with self._lock:
            return self._samples[index:]

    def wait_answers(self, count: int, within_s: float) -> list[Sample]:
        """Wait until ``count`` requests were answered, at most ``within_s`` seconds; the answered ones."""
        end = self.clock() + within_s
        while True:
            answered = [s for s in self.samples() if s.answered]
            if len(answered) >= count or self.clock() >= end:
                return answered
            self._stop.wait(0.1)

    def _work(self, worker: int, workers: int, start: float) -> None:
        # The workers take turns: together they send at the rate, evenly spread.
        interval = workers / self.rate
        due = start + worker / self.rate
        end = start + self.most_s
        while not self._stop.is_set() and due < end:
            self._stop.wait(max(0.0, due - self.clock()))
            if self._stop.is_set():
                break
            due += interval
            sample = self.once()
            with self._lock:
                self._samples.append(sample)

    def once(self) -> Sample:
        """One request on a new connection, never sent again."""
        kind = http.client.HTTPSConnection if self._secure else http.client.HTTPConnection
        connection = kind(self._host, self._port, timeout=self.timeout_s)
        sent = self.clock()
        try:
            connection.request("GET", self._path, headers={"Connection": "close", "User-Agent": USER_AGENT})
            answer = connection.getresponse()
            answer.read()
            return Sample(sent, answer.status, self.clock() - sent, answer.getheader(VERSION_HEADER))
        except (OSError, http.client.HTTPException) as failed:
            return Sample(sent, 0, self.clock() - sent, None, f"{failed.__class__.__name__}: {failed}")
        finally:
            connection.close()
