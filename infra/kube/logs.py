"""Users' own requests, as the app's pods log them, read through the Kubernetes API while a release is judged.

The app writes one JSON line a request to its output (app/nginx.conf, the `rolling` log format: when, the
status, how long, the version that answered, the client's User-Agent). Each pod's log is followed by one
streaming request to the API server (`GET .../pods/NAME/log?follow=true`, what `kubectl logs -f` sends),
which the kubelet serves: on Fargate too, where nothing else of the node can be reached. The pods are found
by the app's label every LIST_EVERY_S, so the pods a rollout or a canary starts are followed as they come.

What it costs: while a judgement runs, one open stream a pod through the API server, and the bytes of its
log (about 150 bytes a request); the pods themselves do nothing new (their log is written anyway). So the
evidence grows with the users' traffic, not with the probe's rate, and a pod that serves more says more.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kubernetes import client

from infra.identity import CONTAINER, PODS_SELECTOR

LIST_EVERY_S = 1.0
# How soon a log that could not be read, or whose stream ended, is followed again.
RETRY_S = 1.0
# The name under which the list of pods itself is told unread.
LISTING = "(the pods)"
FOLLOW_READ_TIMEOUT_S = 24 * 3600
# A log line longer than this is not one of the app's: it is skipped, and its stream read on.
MOST_LINE_BYTES = 4096


@dataclass(frozen=True)
class Request:
    """One request a pod served: ``started`` (this machine's clock, epoch seconds), its ``status``, how many
    ``seconds`` it took, the ``version`` that answered, the client's ``agent`` and the ``pod`` that logged it."""

    started: float
    status: int
    seconds: float
    version: str
    agent: str
    pod: str = ""


def parse(line: bytes | str) -> Request | None:
    """The request an access-log line records, or None for any other line (an error log line, a partial one)."""
    try:
        record = json.loads(line)
        ended, seconds = float(record["t"]), float(record["seconds"])
        return Request(ended - seconds, int(record["status"]), seconds, str(record["version"]), str(record["agent"]))
    except (ValueError, KeyError, TypeError):
        return None


def lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The lines of a stream of ``chunks`` (the last one only when it ends with a newline)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
        if len(pending) > MOST_LINE_BYTES:
            pending = b""


def hang_up(stream: Any) -> None:
    """End a follow: its connection shut, so that the thread blocked reading it returns at once (closing the
    response alone does not wake a read under way), then closed."""
    sock = getattr(getattr(stream, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    stream.close()


class PodLogs:
    """Every request the app's pods in ``namespace`` log while the block runs (from when it was entered).

    A pod's log that cannot be read (its stream refused, such as a 403 on `pods/log`, or ended, such as when
    its container restarted) is followed again every ``retry_s`` for as long as the pod runs, from the last
    line read; how long each running pod has gone unread is told (``unread``), so that evidence that goes
    missing is a finding and never a silent pass."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        *,
        list_every_s: float = LIST_EVERY_S,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api, self.namespace, self.list_every_s, self.retry_s = api, namespace, list_every_s, retry_s
        self.clock = clock
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._streams: dict[str, Any] = {}
        self._threads: list[threading.Thread] = []
        self._entered = 0.0
        # The pods running at the last look, and since when (and why) each one's log, or the list of pods,
        # has not been read.
        self._running: set[str] = set()
        self._unread: dict[str, tuple[float, str]] = {}
        # Since when each pod of the app has been ready (epoch seconds, as the API server says), kept.
        self._ready: dict[str, float] = {}
        # Why the logs could not be read, the first time (said by the caller).
        self.problem: str | None = None

    def __enter__(self) -> PodLogs:
        # Entered once for each judged release (a canary's, then the rollout's): every running pod is
        # followed again from now.
        self._entered = self.clock()
        self._stop.clear()
        with self._lock:
            self._streams, self._threads, self._running, self._unread = {}, [], set(), {}
        finder = threading.Thread(target=self._find, daemon=True)
        finder.start()
        self._threads.append(finder)
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            if stream is not None:
                hang_up(stream)
        for thread in self._threads:
            thread.join(timeout=5)

    def requests(self, since: float = 0.0) -> list[Request]:
        """The requests logged so far that started at or after ``since`` (epoch seconds)."""
        with self._lock:
            return [r for r in self._requests if r.started >= since]

    def requests_from(self, index: int) -> list[Request]:
        """The requests logged after the first ``index`` of them, in the order they were read."""
        with self._lock:
            return self._requests[index:]

    def ready_since(self) -> dict[str, float]:
        """Since when (epoch seconds) each pod of the app seen ready so far has been ready."""
        with self._lock:
            return dict(self._ready)

    def unread(self, longer_than_s: float) -> list[str]:
        """Each running pod whose log has not been read for longer than ``longer_than_s``, and the list of pods
        when it could not be had that long: one line each, saying since when and why."""
        now = self.clock()
        with self._lock:
            found = [
                (name, since, why)
                for name, (since, why) in sorted(self._unread.items())
                if now - since > longer_than_s and (name == LISTING or name in self._running)
            ]
        return [
            f"{'the pods could not be listed' if name == LISTING else f'the log of pod {name} was not read'} "
            f"for {now - since:.0f}s ({why})"
            for name, since, why in found
        ]

    def _missing(self, name: str, why: str) -> None:
        with self._lock:
            self._unread.setdefault(name, (self.clock(), why))
        what = "the pods could not be listed" if name == LISTING else f"the log of pod {name} could not be read"
        self.problem = self.problem or f"{what}: {why}"

    def _read(self, name: str) -> None:
        with self._lock:
            self._unread.pop(name, None)

    def _find(self) -> None:
        core = client.CoreV1Api(self.api)
        while not self._stop.is_set():
            try:
                pods = core.list_namespaced_pod(self.namespace, label_selector=PODS_SELECTOR, _request_timeout=(5, 10))
            except Exception as err:
                self._missing(LISTING, err.__class__.__name__)
                pods = None
            if pods is not None:
                self._read(LISTING)
                running = {
                    pod.metadata.name
                    for pod in pods.items
                    if any(s.state and s.state.running for s in pod.status.container_statuses or [])
                }
                ready = {pod.metadata.name: since for pod in pods.items if (since := _ready_since(pod)) is not None}
                with self._lock:
                    self._running = running
                    self._ready.update(ready)
                    new = [name for name in sorted(running) if name not in self._streams]
                    for name in new:
                        self._streams[name] = None
                for name in new:
                    thread = threading.Thread(target=self._follow, args=(core, name), daemon=True)
                    thread.start()
                    self._threads.append(thread)
            self._stop.wait(self.list_every_s)

    def _follow(self, core: client.CoreV1Api, pod: str) -> None:
        """Follow ``pod``'s log while it runs and the block lasts, again whenever its stream fails or ends."""
        last = self._entered - 1  # the end of the last request read (its line's `t`)
        while not self._stop.is_set():
            with self._lock:
                running = pod in self._running
            if not running:
                break
            # From the last line read (or when the block was entered), whole seconds.
            since = max(1, int(self.clock() - max(last, self._entered)) + 1)
            try:
                stream = core.read_namespaced_pod_log(
                    pod,
                    self.namespace,
                    container=CONTAINER,
                    follow=True,
                    since_seconds=since,
                    _preload_content=False,
                    # Seconds to connect; a follow may sit idle as long as users send nothing (closed at the end).
                    _request_timeout=(5, FOLLOW_READ_TIMEOUT_S),
                )
            except Exception as err:
                self._missing(pod, _why(err))
                self._stop.wait(self.retry_s)
                continue
            with self._lock:
                if self._stop.is_set():
                    hang_up(stream)
                    return
                self._streams[pod] = stream
            self._read(pod)
            try:
                for line in lines(stream.stream(1024)):
                    request = parse(line)
                    if request is None:
                        continue
                    ended = request.started + request.seconds
                    if ended <= last or request.started < self._entered - 1:
                        continue  # read before the stream was followed again, or another judgement's
                    last = ended
                    with self._lock:
                        self._requests.append(dataclasses.replace(request, pod=pod))
            except Exception as err:  # the stream failed: the pod went, or the block ended, or the network
                if not self._stop.is_set():
                    self._missing(pod, _why(err))
            else:
                if not self._stop.is_set():
                    self._missing(pod, "its stream ended")
            self._stop.wait(self.retry_s)
        with self._lock:
            self._unread.pop(pod, None)
            if not self._stop.is_set():
                self._streams.pop(pod, None)  # should it run again (a container restarting), it is found again


def _ready_since(pod: Any) -> float | None:
    """When ``pod`` last became ready (its Ready condition's transition, epoch seconds), or None if not ready."""
    for condition in (pod.status and pod.status.conditions) or []:
        if condition.type == "Ready" and condition.status == "True" and condition.last_transition_time is not None:
            return float(condition.last_transition_time.timestamp())
    return None


def _why(err: Exception) -> str:
    """An API error in a few words: its status and reason (403 Forbidden), else its class."""
    status = getattr(err, "status", None)
    return f"{status} {getattr(err, 'reason', '')}".strip() if status else err.__class__.__name__
